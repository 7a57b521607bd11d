import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Test } from 'tap'
import { buildBundle } from '../../scripts/opa.mjs'
import type { DemoPaths } from '../../src/demo/state.js'
import { startDemoHarness, type DemoHarness } from './demo.js'
import { exchange, openRaw, type Exchange, type ExchangeOptions, type RawConnection, type RawResponse } from './raw-http.js'
import { headerFields, requestLine, startRecordingUpstream, type RecordingUpstream } from './recording-upstream.js'
import { exchangeH2, HEADERS_UNKNOWN, type H2Exchange } from './h2-exchange.js'
import { TEST_PROTOCOL } from './http.js'

/*
 * The real gateway between a raw-socket client and a function that records every byte, with a policy
 * that opens only /public/ and tells the function what it evaluated. Shared by test/security/.
 */

/** Allows any verified principal under /public/ and echoes the path, query and headers it judged. */
export const GATE_POLICY = `package gateway.authz

default decision := {"allow": false, "status": 403, "message": "only /public/ is open"}

allowed if {
	input.principal.type in {"jwt", "mtls"}
	startswith(input.path, "/public/")
}

decision := {"allow": true, "headers": {"upstream": {
	"x-policy-method": input.method,
	"x-policy-path": base64url.encode(input.path),
	"x-policy-query": base64url.encode(json.marshal(input.query)),
	"x-policy-headers": base64url.encode(json.marshal(input.headers)),
}}} if allowed
`

const ALL_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']

export interface SecurityHarness {
  /** What `send` speaks: HTTP/1.1 bytes as written, or the HTTP/2 request made of them (h2-exchange.ts). */
  protocol: 'http/1.1' | 'h2'
  demo: DemoHarness
  stub: RecordingUpstream
  /** `Authorization: Bearer <a valid token for alice>`. */
  auth: string
  port: number
  ca: Buffer
  /** Writes exact bytes (a string is sent as latin1) on a fresh connection and collects the answer. */
  send: (bytes: string | Buffer, opts?: ExchangeOptions) => Promise<Exchange>
  open: () => Promise<RawConnection>
  /** An authenticated request head: `<method> <target> HTTP/1.1`, Host, Authorization, `extra` lines. */
  head: (method: string, target: string, extra?: string[]) => string
  /** portcullis_rejected_total by reason (summed over any other labels). */
  rejected: () => Promise<Record<string, number>>
  metrics: () => Promise<string>
}

export interface SecurityOptions {
  /** Further changes to the demo config, after the stub, routes and rate limit are set. */
  configure?: (raw: Record<string, any>, paths: DemoPaths) => void
}

export async function startSecurityHarness (t: Test, opts: SecurityOptions = {}): Promise<SecurityHarness> {
  const dir = t.testdir({ gateway: { 'authz.rego': GATE_POLICY } })
  const bundle = join(dir, 'bundle.tar.gz')
  await buildBundle({ policiesDir: dir, out: bundle, force: true })
  const stub = await startRecordingUpstream(t)
  const demo = await startDemoHarness(t, {
    bundle,
    configure: (raw, paths) => {
      raw.upstreams[0].url = stub.url // keeps the demo's upstream mTLS settings
      raw.routes = [
        { id: 'public', prefix: '/public', methods: ALL_METHODS, upstream: 'demo-function' },
        { id: 'admin', prefix: '/admin', methods: ALL_METHODS, upstream: 'demo-function' }
      ]
      raw.rateLimit = {} // these suites send many requests as one subject
      opts.configure?.(raw, paths)
    }
  })
  await stub.certify(demo.paths)
  const ca = readFileSync(demo.paths.caCert)
  const port = Number(new URL(demo.url).port)
  const auth = `Authorization: Bearer ${await demo.token()}`
  const metrics = async (): Promise<string> => (await demo.client.send(`${demo.adminUrl}/metrics`)).text
  return {
    protocol: TEST_PROTOCOL,
    demo,
    stub,
    auth,
    port,
    ca,
    send: async (bytes, o) => TEST_PROTOCOL === 'h2' ? exchangeH2(port, ca, bytes, o?.timeoutMs) : exchange(t, port, ca, bytes, o),
    open: async () => openRaw(t, port, ca),
    head: (method, target, extra = []) => [`${method} ${target} HTTP/1.1`, 'Host: localhost', auth, ...extra, '', ''].join('\r\n'),
    metrics,
    async rejected () {
      const out: Record<string, number> = {}
      for (const m of (await metrics()).matchAll(/^portcullis_rejected_total\{([^}]*)\} (\d+)$/gm)) {
        const reason = /reason="([^"]*)"/.exec(m[1]!)?.[1] ?? '?'
        out[reason] = (out[reason] ?? 0) + Number(m[2])
      }
      return out
    }
  }
}

/** `GW_ERR_GUARD_BAD_PATH` → `guard_bad_path`, the portcullis_rejected_total reason. */
export function reasonOf (code: string): string {
  return code.replace(/^GW_ERR_/, '').toLowerCase()
}

function delta (before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {}
  for (const [k, n] of Object.entries(after)) if (n !== (before[k] ?? 0)) out[k] = n - (before[k] ?? 0)
  return out
}

// What an error body must never carry: stack frames, file paths, library names.
const LEAK = /\bat [\w.<>]+ \(|node_modules|\.[jt]s:\d+|undici|llhttp|HPE_|Error:/

/** Checks one error response: status, `{error, code, request_id}` and nothing that leaks internals. */
export function expectErrorBody (t: Test, name: string, res: RawResponse | undefined, status: number | number[], code: string | RegExp): string {
  const statuses = Array.isArray(status) ? status : [status]
  t.ok(res !== undefined && statuses.includes(res.status), `${name}: status ${statuses.join(' or ')}`, { found: res?.status })
  let json: Record<string, unknown> = {}
  try { json = JSON.parse(res?.body ?? '') } catch { t.fail(`${name}: JSON error body`, { body: res?.body }) }
  t.strictSame(Object.keys(json).sort(), ['code', 'error', 'request_id'], `${name}: {error, code, request_id}`)
  if (typeof code === 'string') t.equal(json.code, code, `${name}: ${code}`)
  else t.match(json.code, code, `${name}: code ${String(code)}`)
  t.notMatch(res?.body ?? '', LEAK, `${name}: no internals in the body`)
  // Issue #20 item 6: a refusal may echo what the client sent (the 404 names the path). (Not known for
  // an HTTP/2 answer read from raw frames, whose header block is not decoded: h2-exchange.ts.)
  if (res === undefined || !HEADERS_UNKNOWN.has(res)) {
    t.equal(res?.headers['x-content-type-options'], 'nosniff', `${name}: X-Content-Type-Options: nosniff`)
    t.equal(res?.headers['cache-control'], 'no-store', `${name}: Cache-Control: no-store`)
  }
  return typeof json.code === 'string' ? json.code : String(code)
}

export interface Refusal {
  status: number | number[]
  /** The exact code; a pattern only where the RFC leaves the answer open (say which in a comment). */
  code: string | RegExp
  /** The connection must be closed (framing errors leave the stream unusable). */
  close?: boolean
}

/**
 * The request must be refused: exactly one response (a smuggled second request gets none), the
 * gateway's JSON error, one count under its reason, and not one byte at the function.
 */
export async function expectRefused (t: Test, h: SecurityHarness, name: string, request: string | (() => Promise<Exchange>), want: Refusal): Promise<Exchange> {
  const bytes = h.stub.received.length
  const before = await h.rejected()
  // Waiting for the close also shows whether a smuggled second request got a response of its own.
  // A refusal that closes does so at once; 2 s only bounds the wait when it does not.
  const ex = typeof request === 'string'
    ? await h.send(request, want.close === true ? { until: 'close', timeoutMs: 2000 } : { until: 1 })
    : await request()
  const { reset, dropped = [], forbidden = false } = ex as Partial<H2Exchange>
  if (forbidden) {
    // HTTP/2, CR, LF or NUL in a field: the frame guard refuses the stream before Node hands it on
    // (RFC 9113 §8.2.1, malformed), so no body and no access line; nothing reached the function. When
    // DATA in the same read also contradicts the content-length, Node 24 resets the stream first, with
    // INTERNAL_ERROR (as in http2.test.ts, content-length); refused either way.
    t.ok(reset === 1 || reset === 2, `${name}: refused with RST_STREAM PROTOCOL_ERROR (or Node 24's INTERNAL_ERROR)`, { reset })
    t.equal(ex.responses.length, 0, `${name}: no response`)
    t.equal(h.stub.received.length, bytes, `${name}: zero bytes reached the function`)
    return ex
  }
  if (dropped.length > 0 && reset === undefined && ex.responses[0]?.status !== want.status) {
    // HTTP/2: Node removed the invalid fields before the gateway saw the request (h2-exchange.ts), so
    // what remained was served as the request it is. Nothing of those fields may reach the function.
    const forwarded = h.stub.received.subarray(bytes).toString('latin1')
    for (const [n, v] of dropped) {
      for (const part of [`${n}:`, ...v.split(/[\r\n\0]/).slice(1)]) {
        if (part.trim().length >= 3) t.notOk(forwarded.toLowerCase().includes(part.trim().toLowerCase()), `${name}: ${JSON.stringify(part.trim())} never reached the function (Node dropped the field)`)
      }
    }
    return ex
  }
  if (reset !== undefined) {
    // HTTP/2: nghttp2 refused the request itself (a malformed message, RFC 9113 §8.1.1) with a stream
    // error before the gateway saw it, so no body and no count; nothing reached the function.
    t.equal(ex.responses.length, 0, `${name}: refused by HTTP/2 itself (RST_STREAM ${reset})`)
    t.not(reset, 0, `${name}: with an error code`)
    t.equal(h.stub.received.length, bytes, `${name}: zero bytes reached the function`)
    return ex
  }
  t.equal(ex.responses.length, 1, `${name}: exactly one response`)
  const code = expectErrorBody(t, name, ex.responses[0], want.status, want.code)
  // HTTP/2 ends the stream, never the connection, for a refused request.
  if (want.close === true && h.protocol === 'http/1.1') {
    t.match(ex.responses[0]?.headers.connection ?? '', /close/i, `${name}: connection: close`)
    t.ok(ex.closed, `${name}: connection closed`)
  }
  t.strictSame(delta(before, await h.rejected()), { [reasonOf(code)]: 1 }, `${name}: counted as ${reasonOf(code)}`)
  t.equal(h.stub.received.length, bytes, `${name}: zero bytes reached the function`)
  return ex
}

/**
 * HTTP/2 only: a request HTTP/2 itself forbids (a connection-specific header, RFC 9113 §8.2.2) is
 * reset by nghttp2 before the gateway sees it; nothing of it reaches the function.
 */
export async function expectResetByHttp2 (t: Test, h: SecurityHarness, name: string, request: string): Promise<void> {
  const bytes = h.stub.received.length
  const ex = await h.send(request) as H2Exchange
  t.ok(ex.reset !== undefined && ex.reset !== 0, `${name}: refused by HTTP/2 itself (RST_STREAM ${String(ex.reset)})`)
  t.equal(h.stub.received.length, bytes, `${name}: zero bytes reached the function`)
}

/**
 * Every request the function ever received was one the policy allowed, judged on the same path:
 * nothing under /admin, and each carries the policy's echo of exactly its own path.
 */
export function expectOnlyAllowedReachedFunction (t: Test, h: SecurityHarness): void {
  for (const head of h.stub.requests) {
    const { target } = requestLine(head)
    const path = target.split('?')[0] ?? ''
    const echoed = headerFields(head).filter(([n]) => n === 'x-policy-path').map(([, v]) => Buffer.from(v, 'base64url').toString('utf8'))
    t.ok(path.startsWith('/public/'), `the function only saw /public/: ${target.slice(0, 80)}`)
    t.strictSame(echoed, [path], `the policy judged exactly that path: ${target.slice(0, 80)}`)
  }
}

export interface Forwarded {
  head: string
  fields: Array<[string, string]>
  policyPath: string
  policyQuery: Record<string, string[]>
  policyHeaders: Record<string, string>
}

/**
 * `send` must reach the function exactly once, with the request line's target byte for byte as
 * `target`, and the path the policy evaluated equal to the path the function received.
 */
export async function expectForwarded (t: Test, h: SecurityHarness, name: string, request: string | (() => Promise<Exchange>), want: { method?: string, target: string }): Promise<Forwarded | null> {
  const before = h.stub.requests.length
  const ex = typeof request === 'string' ? await h.send(request) : await request()
  t.equal(ex.responses[0]?.status, 200, `${name}: 200 from the function`)
  t.equal(h.stub.requests.length, before + 1, `${name}: the function saw exactly one request`)
  const head = h.stub.requests[before]
  if (head === undefined) return null
  const line = requestLine(head)
  const fields = headerFields(head)
  t.equal(line.method, want.method ?? 'GET', `${name}: method`)
  t.equal(fields.find(([k]) => k === 'x-policy-method')?.[1], line.method, `${name}: the policy judged the method the function received`)
  t.equal(line.target, want.target, `${name}: request target byte for byte`)
  const echo = (n: string): string => Buffer.from(fields.find(([k]) => k === n)?.[1] ?? '', 'base64url').toString('utf8')
  const q = line.target.indexOf('?')
  const upstreamPath = q === -1 ? line.target : line.target.slice(0, q)
  const policyPath = echo('x-policy-path')
  t.equal(policyPath, upstreamPath, `${name}: the policy judged the path the function received`)
  const policyQuery = JSON.parse(echo('x-policy-query') || 'null') as Record<string, string[]>
  const query: Record<string, string[]> = {}
  for (const [k, v] of new URLSearchParams(q === -1 ? '' : line.target.slice(q + 1))) (query[k] ??= []).push(v)
  t.strictSame(policyQuery, query, `${name}: the policy judged the query the function received`)
  return { head, fields, policyPath, policyQuery, policyHeaders: JSON.parse(echo('x-policy-headers') || '{}') }
}
