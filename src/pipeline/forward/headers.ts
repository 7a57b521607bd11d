import type { IncomingHttpHeaders } from 'node:http'
import type { Decision, Principal } from '../types.js'

/*
 * Header rules between client and function. Hop-by-hop headers (RFC 9110 §7.6.1) and any header the
 * Connection field nominates are dropped both ways. Towards the function, identity and forwarding
 * headers are only ever set by the gateway: whatever a client sent under those names is removed first.
 */

const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'proxy-authorization', 'proxy-authenticate', 'http2-settings'
])

// Names a client could use to claim an identity, a client certificate, or a different URL or method.
const CLIENT_FORBIDDEN = new Set([
  'host', 'authorization', 'expect', 'forwarded', 'x-real-ip', 'x-client-ip', 'true-client-ip',
  'x-original-url', 'x-rewrite-url', 'x-original-uri', 'x-http-method-override', 'x-http-method',
  'x-method-override', 'remote-user', 'x-remote-user', 'x-user', 'x-user-id', 'x-forwarded-user',
  'x-forwarded-email', 'x-forwarded-groups', 'x-authenticated-user', 'x-ssl-client-cert', 'x-client-cert'
])
const CLIENT_FORBIDDEN_PREFIXES = [
  'x-forwarded-', 'x-portcullis-', 'x-auth-request-', 'x-ssl-', 'x-client-cert-', 'x-amzn-oidc-',
  'x-goog-authenticated-', 'x-ms-client-principal', 'x-jwt-'
]

export const IDENTITY_HEADERS = {
  subject: 'x-portcullis-subject',
  issuer: 'x-portcullis-issuer',
  requestId: 'x-portcullis-request-id'
} as const

const NONE: ReadonlySet<string> = new Set()

function nominated (headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>): ReadonlySet<string> {
  const value = headers.connection
  // The usual values name no other header; skip the parsing on every keep-alive request.
  if (value === undefined || value === 'keep-alive' || value === 'close') return NONE
  const list = Array.isArray(value) ? value.join(',') : value
  return new Set(list.split(',').map(s => s.trim().toLowerCase()).filter(s => s !== ''))
}

/**
 * Whether a client header must not reach the function. Names are compared with `_` and `.` read as
 * `-`: many servers and CGI-style adapters map `X_Forwarded_For` (or `Transfer_Encoding`) onto the
 * dashed name, so an alias would smuggle what the dashed name cannot.
 */
function forbiddenFromClient (name: string, nominatedByClient: ReadonlySet<string>): boolean {
  const dashed = /[_.]/.test(name) ? name.replace(/[_.]/g, '-') : name
  return HOP_BY_HOP.has(dashed) || nominatedByClient.has(name) || nominatedByClient.has(dashed) ||
    CLIENT_FORBIDDEN.has(dashed) || CLIENT_FORBIDDEN_PREFIXES.some(p => dashed.startsWith(p))
}

export interface UpstreamContext {
  principal: Principal
  decision: Decision
  requestId: string
  clientIp: string
  host: string | undefined
  upstreamHost: string
}

/** Headers for the request to the function: the client's, minus what only the gateway may say, plus that. */
export function buildUpstreamHeaders (incoming: IncomingHttpHeaders, ctx: UpstreamContext): Record<string, string | string[]> {
  const drop = nominated(incoming)
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined || forbiddenFromClient(name, drop)) continue
    out[name] = value
  }
  out.host = ctx.upstreamHost
  out['x-forwarded-for'] = ctx.clientIp
  out['x-forwarded-proto'] = 'https'
  if (ctx.host !== undefined) out['x-forwarded-host'] = ctx.host
  out.forwarded = forwardedHeader(ctx.clientIp, ctx.host)
  Object.assign(out, ctx.decision.headers.upstream)
  // An anonymous caller (public route) is vouched for by nobody: no identity headers at all.
  if (ctx.principal.type !== 'anonymous') {
    out[IDENTITY_HEADERS.subject] = ctx.principal.subject
    out[IDENTITY_HEADERS.issuer] = ctx.principal.issuer
  }
  out[IDENTITY_HEADERS.requestId] = ctx.requestId
  return out
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/

/** A Forwarded value (RFC 7239 §4): a token as is, anything else quoted; an IPv6 node in brackets. */
function forwardedValue (value: string): string {
  return TOKEN.test(value) ? value : `"${value.replace(/["\\]/g, '\\$&')}"`
}

/** The one Forwarded element the gateway vouches for: the peer it saw, over TLS, for the Host it served. */
export function forwardedHeader (clientIp: string, host: string | undefined): string {
  const node = clientIp.includes(':') ? `[${clientIp}]` : clientIp
  return `for=${forwardedValue(node)};proto=https` + (host !== undefined ? `;host=${forwardedValue(host)}` : '')
}

/** Headers from the function's response that may reach the client. */
export function filterResponseHeaders (incoming: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const drop = nominated(incoming)
  const out: Record<string, string | string[]> = {}
  for (const [name, value] of Object.entries(incoming)) {
    if (value === undefined || HOP_BY_HOP.has(name) || drop.has(name)) continue
    out[name] = value
  }
  return out
}
