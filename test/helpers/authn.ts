import { createHash, X509Certificate } from 'node:crypto'
import { join } from 'node:path'
import type { Test } from 'tap'
import { buildBundle } from '../../scripts/opa.mjs'
import { loadCa, type PemPair } from '../../src/tls/pki.js'
import type { DemoHarness } from './demo.js'
import type { Reply } from './http.js'

// Shared by the authentication end-to-end tests: what a refusal must look like, how it is counted,
// and a policy that shows what reached it.

/** The error code each enumerated authentication failure reason is answered with. */
export const REASON_CODE: Readonly<Record<string, string>> = {
  missing: 'GW_ERR_AUTHN_MISSING',
  malformed: 'GW_ERR_AUTHN_MALFORMED',
  ambiguous: 'GW_ERR_AUTHN_MALFORMED',
  too_large: 'GW_ERR_AUTHN_MALFORMED',
  unknown_issuer: 'GW_ERR_AUTHN_UNKNOWN_ISSUER',
  expired: 'GW_ERR_AUTHN_EXPIRED',
  not_yet_valid: 'GW_ERR_AUTHN_INVALID',
  invalid_claims: 'GW_ERR_AUTHN_INVALID',
  bad_type: 'GW_ERR_AUTHN_INVALID',
  unknown_key: 'GW_ERR_AUTHN_INVALID',
  bad_signature: 'GW_ERR_AUTHN_INVALID',
  bad_algorithm: 'GW_ERR_AUTHN_INVALID',
  invalid: 'GW_ERR_AUTHN_INVALID',
  keys_unavailable: 'GW_ERR_AUTHN_KEYS_UNAVAILABLE',
  cert_missing: 'GW_ERR_AUTHN_CERTIFICATE',
  cert_untrusted: 'GW_ERR_AUTHN_CERTIFICATE',
  cert_binding_mismatch: 'GW_ERR_AUTHN_CERTIFICATE'
}

// RFC 6750 §3.1: a malformed request is invalid_request, a bad token invalid_token.
const INVALID_REQUEST = new Set(['malformed', 'ambiguous', 'too_large', 'cert_missing', 'cert_untrusted', 'cert_binding_mismatch'])

async function metricsText (demo: DemoHarness): Promise<string> {
  return (await demo.client.send(`${demo.adminUrl}/metrics`)).text
}

/** portcullis_authn_failures_total for one route, by reason. */
export async function authnFailures (demo: DemoHarness, route: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {}
  for (const m of (await metricsText(demo)).matchAll(/^portcullis_authn_failures_total\{route="([^"]*)",reason="([^"]*)"\} (\d+)$/gm)) {
    if (m[1] === route) out[m[2]!] = Number(m[3])
  }
  return out
}

/** Requests that reached the function (every upstream, every status class). */
export async function upstreamCalls (demo: DemoHarness): Promise<number> {
  let n = 0
  for (const m of (await metricsText(demo)).matchAll(/^portcullis_upstream_duration_seconds_count\{[^}]*\} (\d+)$/gm)) n += Number(m[1])
  return n
}

function body (res: Reply): Record<string, unknown> {
  try { return res.json() } catch { return { unparsable: res.text.slice(0, 200) } }
}

/**
 * Sends one request and checks it was refused by the authenticate stage for exactly `reason`: the
 * status, the error code and body shape, the Bearer challenge, and one count under that reason alone.
 */
export async function expectRefusal (t: Test, demo: DemoHarness, route: string, name: string, reason: string, send: () => Promise<Reply>): Promise<void> {
  const before = await authnFailures(demo, route)
  const res = await send()
  const after = await authnFailures(demo, route)
  const counted: Record<string, number> = {}
  for (const [r, n] of Object.entries(after)) if (n !== (before[r] ?? 0)) counted[r] = n - (before[r] ?? 0)
  const status = reason === 'keys_unavailable' ? 503 : 401
  t.equal(res.status, status, `${name}: ${status}`)
  const json = body(res)
  t.equal(json.code, REASON_CODE[reason], `${name}: ${String(REASON_CODE[reason])}`)
  t.strictSame(Object.keys(json).sort(), ['code', 'error', 'request_id'], `${name}: error body shape`)
  t.strictSame(counted, { [reason]: 1 }, `${name}: counted as ${reason}`)
  if (status === 401) {
    t.equal(res.headers['www-authenticate'], reason === 'missing'
      ? 'Bearer realm="portcullis"'
      : `Bearer realm="portcullis", error="${INVALID_REQUEST.has(reason) ? 'invalid_request' : 'invalid_token'}"`, `${name}: challenge`)
  }
}

/**
 * A policy that allows verified principals (and anonymous ones on routes whose metadata says
 * `anonymous_ok`) and hands what it saw to the function, base64url-encoded, in two headers.
 */
export const ECHO_POLICY = `package gateway.authz

default decision := {"allow": false, "status": 403, "message": "not allowed by the echo policy"}

allowed if input.principal.type in {"jwt", "mtls"}

allowed if input.route.metadata.anonymous_ok == true

decision := {"allow": true, "headers": {"upstream": {
	"x-echo-principal": base64url.encode(json.marshal(input.principal)),
	"x-echo-tls": base64url.encode(json.marshal(input.tls)),
}}} if allowed
`

/** Compiles ECHO_POLICY with the real OPA into a bundle in the test's folder. */
export async function compileEchoPolicy (t: Test): Promise<string> {
  const dir = t.testdir({ gateway: { 'authz.rego': ECHO_POLICY } })
  const out = join(dir, 'bundle.tar.gz')
  await buildBundle({ policiesDir: dir, out, force: true, entrypoints: ['gateway/authz/decision'] })
  return out
}

export interface PolicySaw {
  principal: { type: string, issuer: string, subject: string, claims: Record<string, unknown> } | null
  tls: { client_certificate: Record<string, unknown> | null }
  /** The principal exactly as the policy serialized it. */
  principalJson: string
}

/** What the echo policy saw, read back from the demo function's echo of the request it received. */
export function policySaw (res: Reply): PolicySaw {
  const headers = res.json<{ headers: Record<string, string | undefined> }>().headers
  const decode = (name: string): string => Buffer.from(headers[name] ?? '', 'base64url').toString('utf8')
  const principalJson = decode('x-echo-principal')
  return { principal: JSON.parse(principalJson), tls: JSON.parse(decode('x-echo-tls')), principalJson }
}

/** RFC 8705 x5t#S256: base64url SHA-256 of the certificate's DER. */
export function thumbprint (pem: string): string {
  return createHash('sha256').update(new X509Certificate(pem).raw).digest('base64url')
}

const DAY_MS = 86_400_000

/** A client certificate from `ca` that expired yesterday. */
export async function issueExpiredClientCert (ca: PemPair, commonName: string, uri: string): Promise<PemPair> {
  const now = Date.now()
  return (await loadCa(ca)).issue({
    commonName, uris: [uri], usage: 'client', validity: { notBefore: new Date(now - 30 * DAY_MS), notAfter: new Date(now - DAY_MS) }
  })
}
