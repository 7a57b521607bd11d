import { createHash } from 'node:crypto'
import type { Socket } from 'node:net'
import type { PeerCertificate as NodePeerCertificate, TLSSocket } from 'node:tls'
import type { ClientCertificate } from '../types.js'

/*
 * What the TLS layer says about the caller's certificate. A certificate becomes an identity only when
 * OpenSSL verified its chain against the listener's client CA (expiry included) and it is meant for
 * client authentication; anything else is "untrusted", whatever it claims. Read once per connection.
 */

export type PeerCertificate =
  | { state: 'none' }
  | { state: 'untrusted', reason: string }
  | { state: 'verified', certificate: ClientCertificate }

const CLIENT_AUTH = '1.3.6.1.5.5.7.3.2'
const NONE: PeerCertificate = { state: 'none' }
const perSocket = new WeakMap<object, PeerCertificate>()

/**
 * `connection`: what the answer is kept under, one per TLS connection. For HTTP/2 that is the session,
 * not `socket`: Node gives every stream a socket proxy of its own, and keyed by it the certificate was
 * read again for each stream (a rapid-reset flood made the gateway parse it thousands of times).
 */
export function readPeerCertificate (socket: Socket | TLSSocket, connection: object = socket): PeerCertificate {
  const known = perSocket.get(connection)
  if (known !== undefined) return known
  const result = inspect(socket)
  perSocket.set(connection, result)
  return result
}

function inspect (socket: Socket | TLSSocket): PeerCertificate {
  if (!('getPeerCertificate' in socket)) return NONE
  const peer = socket.getPeerCertificate(false)
  if (peer === null || peer === undefined || Object.keys(peer).length === 0) return NONE
  if (!socket.authorized) return { state: 'untrusted', reason: String(socket.authorizationError ?? 'not verified') }
  const eku = (peer as NodePeerCertificate & { ext_key_usage?: string[] }).ext_key_usage
  if (eku !== undefined && !eku.includes(CLIENT_AUTH)) return { state: 'untrusted', reason: 'not a client-authentication certificate' }
  return { state: 'verified', certificate: describe(peer) }
}

function dn (name: Record<string, string | string[]> | undefined): string {
  if (name === undefined) return ''
  return Object.entries(name).flatMap(([k, v]) => (Array.isArray(v) ? v : [v]).map(x => `${k}=${x}`)).join(',')
}

function describe (peer: NodePeerCertificate): ClientCertificate {
  const sans = { dns: [] as string[], uri: [] as string[], email: [] as string[], ip: [] as string[] }
  // Node renders SANs as "DNS:a, URI:b, IP Address:c, email:d"; values with ", " inside are quoted.
  for (const entry of (peer.subjectaltname ?? '').split(', ')) {
    const i = entry.indexOf(':')
    const kind = entry.slice(0, i)
    const value = entry.slice(i + 1).replace(/^"(.*)"$/, '$1')
    if (kind === 'DNS') sans.dns.push(value)
    else if (kind === 'URI') sans.uri.push(value)
    else if (kind === 'email') sans.email.push(value)
    else if (kind === 'IP Address') sans.ip.push(value)
  }
  return {
    subject: dn(peer.subject as unknown as Record<string, string | string[]>),
    issuer: dn(peer.issuer as unknown as Record<string, string | string[]>),
    serialNumber: peer.serialNumber,
    notAfter: new Date(peer.valid_to).toISOString(),
    sans,
    spiffeId: sans.uri.find(u => u.startsWith('spiffe://')) ?? null,
    thumbprintSha256: createHash('sha256').update(peer.raw).digest('base64url')
  }
}
