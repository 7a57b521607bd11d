import type { IncomingHttpHeaders } from 'node:http'
import type { Config } from '../../config/schema.js'
import type { Decision, Principal } from '../types.js'
import { GATEWAY_ANSWER, GATEWAY_SET, HOP_BY_HOP } from '../../util/header-names.js'

/*
 * Header rules between client and function. Hop-by-hop headers (RFC 9110 §7.6.1) and any header the
 * Connection field nominates are dropped both ways. Towards the function, identity and forwarding
 * headers are only ever set by the gateway: whatever a client sent under those names is removed first.
 */

/*
 * Headers that assert a client address, an identity, a client certificate, or a rewritten target or
 * method: a function behind a CDN, an auth proxy or a cloud gateway believes them, so only the gateway
 * may send them (issue #20 item 2). Families, not single names: a scanner tries the whole family.
 * Names are compared folded (see fold()). An upstream's `passClientHeaders` lets listed names through.
 * docs/security.md lists the families; keep the two in step.
 */
const CLIENT_FORBIDDEN = new Set([
  // the gateway's own decisions
  'host', 'authorization', 'expect', 'forwarded', 'forwarded-for', 'x-forwarded', 'x-forward-for',
  // client address (load balancers, proxies, PaaS)
  'x-real-ip', 'x-client-ip', 'true-client-ip', 'x-true-client-ip', 'x-cluster-client-ip', 'x-originating-ip',
  'x-remote-ip', 'x-remote-addr', 'x-proxyuser-ip', 'client-ip', 'x-appengine-user-ip', 'x-azure-clientip',
  'x-azure-socketip', 'x-host', 'x-http-host-override',
  // identity from auth proxies (oauth2-proxy, Grafana auth proxy, Authelia, Pomerium, Kong, Oathkeeper, Apache)
  'remote-user', 'x-remote-user', 'x-remote-group', 'x-remote-groups', 'x-remote-email', 'x-user', 'x-user-id',
  'x-username', 'x-user-email', 'x-user-groups', 'x-user-roles', 'x-email', 'x-auth-user', 'x-auth-email',
  'x-auth-groups', 'x-auth-roles', 'x-auth-subject', 'x-authenticated-user', 'x-authenticated-userid',
  'x-authenticated-groups', 'x-authenticated-scope', 'x-credential-identifier', 'x-credential-username',
  'x-anonymous-consumer', 'x-id-token', 'x-endpoint-api-userinfo', 'x-amzn-requestcontext',
  // client certificates (mod_ssl, nginx, HAProxy, F5, IIS ARR, RFC 9440)
  'x-client-cert', 'x-client-certificate', 'x-client-verify', 'x-client-dn', 'x-client-s-dn', 'x-client-i-dn',
  'x-client-subject', 'x-client-issuer', 'x-client-serial', 'x-client-fingerprint', 'client-cert', 'client-cert-chain',
  'x-cert', 'x-certificate', 'x-arr-clientcert',
  // rewritten target or method (Symfony CVE-2018-14773, IIS URL Rewrite, Express method-override, Next.js CVE-2025-29927)
  'x-rewrite-url', 'x-http-method-override', 'x-http-method', 'x-method-override', 'x-middleware-subrequest'
])
const CLIENT_FORBIDDEN_PREFIXES = [
  'x-forwarded-', 'x-portcullis-', 'x-auth-request-', 'x-webauth-', 'x-ssl-', 'ssl-', 'x-tls-',
  'x-client-cert-', 'x-amzn-oidc-', 'x-amzn-mtls-', 'x-goog-authenticated-', 'x-goog-iap-', 'x-ms-client-principal',
  'x-ms-token-', 'x-apigateway-', 'x-jwt-', 'x-pomerium-', 'x-vouch-', 'x-consumer-', 'remote-', 'x-original-',
  'x-rewrite-', 'x-envoy-', 'x-arr-', 'cf-', 'akamai-', 'x-akamai-', 'fastly-'
]
// One anchored alternation instead of a loop over the prefixes: one regex run per header name. Plus
// a dash-separated word "forwarded" anywhere (x-original-forwarded-for, x-forwarded-client-cert, ...).
const FAMILY = new RegExp(`^(?:${CLIENT_FORBIDDEN_PREFIXES.join('|')})|(?:^|-)forwarded(?:-|$)`)

/**
 * Header names compared as the most lenient server would read them: lower case, and every character
 * other than a letter or digit as "-". Puma, CGI-style adapters and PHP map `_`, `.`, and others onto
 * one character, so `X_Tenant`, `x.tenant` and `x~tenant` all reach some function as `x-tenant`.
 */
export function fold (name: string): string {
  return /[^a-z0-9-]/.test(name) ? name.toLowerCase().replace(/[^a-z0-9]/g, '-') : name
}

/** Whether `name` (as sent) is a client header the family rules keep from the function. */
function assertsIdentity (folded: string): boolean {
  return CLIENT_FORBIDDEN.has(folded) || FAMILY.test(folded)
}

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
 * Whether a client header must not reach the function. Names are compared folded: a server that reads
 * `X_Forwarded_For` (or `Transfer_Encoding`) as the dashed name would let an alias smuggle what the
 * dashed name cannot. `passed` names go through only in their exact dashed spelling.
 */
function forbiddenFromClient (name: string, nominatedByClient: ReadonlySet<string>, decided: readonly string[], rules: HeaderRules): boolean {
  // An HTTP/2 pseudo-header (:path, :authority, ...) is the request itself, never a header field.
  if (name.charCodeAt(0) === 58) return true
  const folded = fold(name)
  if (HOP_BY_HOP.has(folded) || nominatedByClient.has(name) || nominatedByClient.has(folded)) return true
  // The policy's headers are set after the client's: an alias would arrive beside them, read last.
  if (decided.includes(folded) || rules.gatewayHeaders.has(folded)) return true
  if (folded !== name && GATEWAY_SET.has(folded)) return true
  if (!assertsIdentity(folded)) return false
  return folded !== name || !rules.passClientHeaders.has(name)
}

/** Per upstream, what its header rules need beyond the request: built once at start. */
export interface HeaderRules {
  passClientHeaders: ReadonlySet<string>
  /** Further headers the gateway sets (the assertion header), folded: their aliases are dropped. */
  gatewayHeaders: ReadonlySet<string>
}

export function createHeaderRules (config: Pick<Config, 'upstreams' | 'assertion'>): ReadonlyMap<string, HeaderRules> {
  const gatewayHeaders = new Set(config.assertion?.header !== undefined ? [fold(config.assertion.header)] : [])
  return new Map(config.upstreams.map(u => [u.id, { passClientHeaders: new Set(u.passClientHeaders), gatewayHeaders }]))
}

export interface UpstreamContext {
  principal: Principal
  decision: Decision
  requestId: string
  clientIp: string
  host: string | undefined
  upstreamHost: string
  /** The upstream's rules (createHeaderRules); the defaults when absent. */
  rules?: HeaderRules | undefined
}

const DEFAULT_RULES: HeaderRules = { passClientHeaders: NONE, gatewayHeaders: NONE }

/** `names` folded: the same array when every name already is (the usual case), else a folded copy. */
function foldedAll (names: string[]): readonly string[] {
  for (let i = 0; i < names.length; i++) if (fold(names[i]!) !== names[i]) return names.map(fold)
  return names
}

/** Headers for the request to the function: the client's, minus what only the gateway may say, plus that. */
export function buildUpstreamHeaders (incoming: IncomingHttpHeaders, ctx: UpstreamContext): Record<string, string | string[]> {
  const drop = nominated(incoming)
  const decidedHeaders = ctx.decision.headers.upstream
  // A handful of names at most, searched as a list; folded copies only where a name needs folding.
  const decided = foldedAll(Object.keys(decidedHeaders))
  const out: Record<string, string | string[]> = {}
  const rules = ctx.rules ?? DEFAULT_RULES
  // Object.keys, not Object.entries: one array per request instead of one per header and one more.
  for (const name of Object.keys(incoming)) {
    const value = incoming[name]
    if (value === undefined || forbiddenFromClient(name, drop, decided, rules)) continue
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
  if (TOKEN.test(value)) return value
  // A host with a port is the usual quoted value, and has nothing to escape.
  return value.includes('"') || value.includes('\\') ? `"${value.replace(/["\\]/g, '\\$&')}"` : `"${value}"`
}

/** The one Forwarded element the gateway vouches for: the peer it saw, over TLS, for the Host it served. */
export function forwardedHeader (clientIp: string, host: string | undefined): string {
  const node = clientIp.includes(':') ? `[${clientIp}]` : clientIp
  return `for=${forwardedValue(node)};proto=https` + (host !== undefined ? `;host=${forwardedValue(host)}` : '')
}

/** Headers from the function's response that may reach the client (the gateway's own answer headers are its, not the function's). */
export function filterResponseHeaders (incoming: Record<string, string | string[] | undefined>): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  copyResponseHeaders(incoming, { header (name, value) { out[name] = value } })
  return out
}

/**
 * The same headers set one by one on `target` (the client's reply): no object in between, and
 * Object.keys, not Object.entries (one array per answer instead of one per header and one more).
 */
export function copyResponseHeaders (incoming: Record<string, string | string[] | undefined>, target: { header: (name: string, value: string | string[]) => unknown }): void {
  const drop = nominated(incoming)
  for (const name of Object.keys(incoming)) {
    const value = incoming[name]
    if (value === undefined || HOP_BY_HOP.has(name) || drop.has(name) || GATEWAY_ANSWER.has(name)) continue
    target.header(name, value)
  }
}
