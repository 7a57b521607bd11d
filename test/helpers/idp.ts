import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto'
import type { ServerResponse } from 'node:http'
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { Test } from 'tap'
import { SignJWT } from 'jose'
import { createCa } from '../../src/tls/pki.js'

export interface SigningKey { kid: string, alg: string, privateKey: KeyObject, publicJwk: Record<string, unknown> }

export function makeKey (alg: 'ES256' | 'RS256' | 'EdDSA' = 'ES256', kid: string = randomUUID()): SigningKey {
  const pair = alg === 'ES256'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : alg === 'RS256' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ed25519')
  return { kid, alg, privateKey: pair.privateKey, publicJwk: { ...pair.publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' } }
}

export async function sign (key: SigningKey, claims: Record<string, unknown>, header: Record<string, unknown> = {}): Promise<string> {
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({ iat: now, exp: now + 300, ...claims })
    .setProtectedHeader({ alg: key.alg, kid: key.kid, ...header })
    .sign(key.privateKey)
}

export interface FakeIdp {
  issuer: string
  caFile: string
  /** Keys currently published in the JWKS (mutable). */
  keys: SigningKey[]
  /** Requests served, by path. */
  hits: Record<string, number>
  /** When set, every request gets this status. */
  failWith: number | null
  /** The issuer named in the discovery document (defaults to the real one). */
  discoveryIssuer: string | null
  /** When true, requests are held unanswered (a hanging IdP); held ones are cut when the test ends. */
  hang: boolean
}

/**
 * A real HTTPS identity provider on loopback (certificate from a CA made for the test): OIDC
 * discovery and a JWKS whose keys the test can rotate, and which the test can take down.
 */
export async function startIdp (t: Test): Promise<FakeIdp> {
  const ca = await createCa('IdP test CA')
  const cert = await ca.issue({ commonName: 'idp', ipAddresses: ['127.0.0.1'], usage: 'server' })
  const dir = t.testdir({ 'idp-ca.crt': ca.cert })
  const idp: FakeIdp = { issuer: '', caFile: `${dir}/idp-ca.crt`, keys: [], hits: {}, failWith: null, discoveryIssuer: null, hang: false }
  const held: ServerResponse[] = []
  const server = createServer(cert, (req, res) => {
    const path = req.url ?? '/'
    idp.hits[path] = (idp.hits[path] ?? 0) + 1
    if (idp.hang) { held.push(res); return }
    if (idp.failWith !== null) { res.writeHead(idp.failWith).end(); return }
    res.setHeader('content-type', 'application/json')
    if (path === '/.well-known/openid-configuration') {
      res.end(JSON.stringify({ issuer: idp.discoveryIssuer ?? idp.issuer, jwks_uri: `${idp.issuer}/keys` }))
    } else if (path === '/keys') {
      res.end(JSON.stringify({ keys: idp.keys.map(k => k.publicJwk) }))
    } else {
      res.writeHead(404).end('{}')
    }
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  idp.issuer = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  return idp
}
