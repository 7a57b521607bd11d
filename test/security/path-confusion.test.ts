import t from 'tap'
import {
  expectForwarded, expectOnlyAllowedReachedFunction, expectRefused, startSecurityHarness, type Refusal
} from '../helpers/security.js'

// Path confusion: the router, the policy and the function must agree on the path. The gateway only
// accepts a target that is already canonical (src/pipeline/guard/canonical-path.ts) and forwards those
// exact bytes, so every ambiguous target is refused before any identity or policy work, and every
// accepted one reaches the function byte for byte as the policy judged it. Only /public/ is allowed.

const h = await startSecurityHarness(t)
const BAD_PATH: Refusal = { status: 400, code: 'GW_ERR_GUARD_BAD_PATH' }
const PARSER: Refusal = { status: 400, code: 'GW_ERR_GUARD_BAD_REQUEST', close: true }
const NO_ROUTE: Refusal = { status: 404, code: 'GW_ERR_ROUTE_NOT_FOUND' }
const DENIED: Refusal = { status: 403, code: 'GW_ERR_AUTHZ_DENIED' }

t.test('ambiguous targets are refused before the policy, with zero bytes upstream', async t => {
  const cases: Array<[string, string, Refusal]> = [
    // Dot segments (RFC 3986 §3.3, §5.2.4): normalised by some components and not others.
    ['GET', '/public/../admin', BAD_PATH],
    ['GET', '/public/./x', BAD_PATH],
    ['GET', '/public/x/..', BAD_PATH],
    ['GET', '/public/x/.', BAD_PATH],
    ['GET', '/./public/x', BAD_PATH],
    ['GET', '/public/x/../../admin', BAD_PATH],
    // Encoded dots (Envoy CVE-2019-9901; Spring Cloud Gateway and @fastify/http-proxy prefix bypasses)
    ['GET', '/public/%2e%2e/admin', BAD_PATH],
    ['GET', '/public/%2E%2E/admin', BAD_PATH],
    ['GET', '/public/.%2e/admin', BAD_PATH],
    ['GET', '/public/%2e./admin', BAD_PATH],
    ['GET', '/public/%2e/x', BAD_PATH],
    // Encoded separators (Envoy CVE-2021-29492, escaped slashes; Traefik and Kong prefix-match advisories)
    ['GET', '/admin%2Fx', BAD_PATH],
    ['GET', '/public/%2fadmin', BAD_PATH],
    ['GET', '/public%2F..%2Fadmin', BAD_PATH],
    ['GET', '/public/%5c..%5cadmin', BAD_PATH],
    ['GET', '/public/%5C', BAD_PATH],
    // Raw backslashes (WHATWG URL parsers treat "\" as "/")
    ['GET', '/public\\..\\admin', BAD_PATH],
    ['GET', '/public/..\\admin', BAD_PATH],
    // Empty segments (Envoy merge_slashes; Spring Security "//" firewall rule)
    ['GET', '//admin', BAD_PATH],
    ['GET', '//public/x', BAD_PATH],
    ['GET', '/public//x', BAD_PATH],
    ['GET', '///public/x', BAD_PATH],
    // Encoded controls: NUL truncation and CRLF injection into the upstream request line
    ['GET', '/public/x%00.json', BAD_PATH],
    ['GET', '/public/%00/../admin', BAD_PATH],
    ['GET', '/public/%0d%0aX-Injected:%20y', BAD_PATH],
    ['GET', '/public/%09x', BAD_PATH],
    ['GET', '/public/%7f', BAD_PATH],
    // Not UTF-8: overlong dots and slashes (IIS CVE-2000-0884, Tomcat CVE-2008-2938), surrogates, bytes
    ['GET', '/public/%c0%ae%c0%ae/admin', BAD_PATH],
    ['GET', '/public/%c0%af', BAD_PATH],
    ['GET', '/public/%e0%80%ae', BAD_PATH],
    ['GET', '/public/%ed%a0%80', BAD_PATH],
    ['GET', '/public/%ff', BAD_PATH],
    ['GET', '/public/%c3', BAD_PATH],
    // Invalid or needless percent-encoding (RFC 3986 §2.1, §2.3, §6.2.2.2)
    ['GET', '/public/%', BAD_PATH],
    ['GET', '/public/%2', BAD_PATH],
    ['GET', '/public/%zz', BAD_PATH],
    ['GET', '/public/%u002e%u002e/admin', BAD_PATH],
    ['GET', '/public/%41dmin', BAD_PATH],
    ['GET', '/%70ublic/x', BAD_PATH],
    // Fragments are never sent (RFC 9112 §3.2); one here is a different path to someone.
    ['GET', '/public/x#/../../admin', BAD_PATH],
    // Path parameters: Tomcat/Jetty strip ";params" from each segment, so "..;" is ".." there (Spring
    // Cloud Gateway and Tomcat-behind-proxy bypasses) and "/x;y" is "/x": refused unless configured.
    ['GET', '/public/..;/admin', BAD_PATH],
    ['GET', '/public/.;/x', BAD_PATH],
    ['GET', '/public/x/..;/..;/admin', BAD_PATH],
    ['GET', '/public/x;jsessionid=1', BAD_PATH],
    ['GET', '/public;/admin', BAD_PATH],
    ['GET', '/admin;/public/x', BAD_PATH],
    // Absolute-form (RFC 9112 §3.2.2). Servers must accept it, but it carries a second authority that
    // disagrees with Host; a gateway that only serves origin-form refuses it rather than choose.
    ['GET', 'http://evil/public/x', BAD_PATH],
    ['GET', 'https://localhost/public/x', BAD_PATH],
    ['GET', 'http://localhost/admin', BAD_PATH],
    // Authority-form is for CONNECT only (RFC 9112 §3.2.3); asterisk-form for server-wide OPTIONS.
    ['OPTIONS', '*', BAD_PATH],
    ['GET', '*', BAD_PATH],
    // Targets llhttp cannot parse, and bytes a request line cannot carry: refused before any of the
    // gateway's code, by Node's parser (the gateway still answers with its own body and closes).
    ['GET', 'evil:443', PARSER],
    ['GET', '?x=/public/', PARSER],
    ['GET', '/public/x y', PARSER],
    ['GET', '/public/x\ty', PARSER],
    ['GET', '/public/\x00', PARSER],
    ['GET', '/public/caf\xc3\xa9', PARSER]
  ]
  for (const [method, target, want] of cases) {
    // Over HTTP/2 (path-confusion.h2.test.ts) no request line is parsed: a :path HTTP/2 itself accepts
    // (raw UTF-8) reaches the guard, which refuses it as a path.
    const h2 = h.protocol === 'h2' && want === PARSER && /[\x80-\xff]/.test(target)
    await expectRefused(t, h, `${method} ${JSON.stringify(target)}`, h.head(method, target), h2 ? BAD_PATH : want)
  }
})

t.test('canonical paths outside /public/ end at the router or the policy, with zero bytes upstream', async t => {
  const cases: Array<[string, Refusal]> = [
    // The router is case-sensitive and matches whole segments (no "/publicx" for "/public").
    ['/PUBLIC/x', NO_ROUTE],
    ['/Public/x', NO_ROUTE],
    ['/ADMIN', NO_ROUTE],
    ['/publicx', NO_ROUTE],
    ['/', NO_ROUTE],
    ['/x/public/x', NO_ROUTE],
    // Routed, then judged: the policy sees the canonical path and refuses.
    ['/admin', DENIED],
    ['/admin/', DENIED],
    ['/admin/public/x', DENIED],
    ['/admin?path=/public/x', DENIED],
    ['/public', DENIED]
  ]
  for (const [target, want] of cases) await expectRefused(t, h, `GET ${target}`, h.head('GET', target), want)
  // CONNECT never reaches the router: 405 and a closed connection (RFC 9110 §9.3.6, §15.5.6).
  await expectRefused(t, h, 'CONNECT authority-form', h.head('CONNECT', 'localhost:443'), { status: 405, code: 'GW_ERR_GUARD_METHOD', close: true })
  const trace = await expectRefused(t, h, 'TRACE', h.head('TRACE', '/public/x'), { status: 405, code: 'GW_ERR_GUARD_METHOD' })
  t.equal(trace.responses[0]?.headers.allow, 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS', 'TRACE: Allow lists the methods')
})

t.test('canonical targets reach the function byte for byte, as the policy judged them', async t => {
  const targets = [
    '/public/x',
    '/public/x/',
    '/public/X',
    '/public/a/b/c',
    '/public/caf%C3%A9', // valid UTF-8 stays encoded, in its own case
    '/public/caf%c3%a9',
    '/public/a%20b',
    '/public/a%23b', // an encoded "#" is data
    '/public/a%3Fb', // an encoded "?" is data
    '/public/a%25b', // an encoded "%" is data
    '/public/...', // not a dot segment (RFC 3986 §3.3)
    '/public/.hidden',
    '/public/~user',
    "/public/!$&'()*+,=:@",
    '/public/x?next=/admin/../x&a=%2F', // the query is data; it is not routed
    '/public/x?a=1&a=2&b',
    '/public/x?%2e%2e',
    '/public/%E2%80%AE' // RIGHT-TO-LEFT OVERRIDE: valid UTF-8, shown oddly but never reinterpreted
  ]
  for (const target of targets) await expectForwarded(t, h, `GET ${target}`, h.head('GET', target), { target })
  for (const method of ['HEAD', 'DELETE', 'OPTIONS']) {
    await expectForwarded(t, h, `${method} /public/x`, h.head(method, '/public/x'), { method, target: '/public/x' })
  }
})

t.test('targets that some function frameworks reinterpret: refused, or forwarded exactly as judged', async t => {
  // Canonical by RFC 3986, but a double-encoded dot decodes twice in some frameworks, and a fullwidth
  // solidus is folded to "/" by NFKC normalisation. The gateway may refuse these; if it forwards them,
  // the function must get exactly the bytes the policy allowed.
  const targets = [
    '/public/%252e%252e/admin',
    '/public/%252fadmin',
    '/public/%EF%BC%8F..%EF%BC%8Fadmin'
  ]
  for (const target of targets) {
    const bytes = h.stub.received.length
    const before = h.stub.requests.length
    const ex = await h.send(h.head('GET', target))
    const status = ex.responses[0]?.status
    if (status === 200) {
      t.equal(h.stub.requests.length, before + 1, `${target}: forwarded once`)
      const head = h.stub.requests[before] ?? ''
      t.equal(head.slice(0, head.indexOf('\r\n')), `GET ${target} HTTP/1.1`, `${target}: byte for byte`)
    } else {
      t.equal(status, 400, `${target}: refused as not canonical`)
      t.equal(h.stub.received.length, bytes, `${target}: zero bytes upstream`)
    }
  }
})

t.test('the function only ever saw requests the policy allowed', async t => {
  expectOnlyAllowedReachedFunction(t, h)
})

t.test('limits.pathParameters: allow forwards ";" as judged, and still refuses "..;"', async t => {
  const allowing = await startSecurityHarness(t, { configure: raw => { raw.limits = { pathParameters: 'allow' } } })
  for (const target of ['/public/x;jsessionid=1', '/public/a;b/c', "/public/!$&'()*+,;=:@"]) {
    await expectForwarded(t, allowing, `GET ${target}`, allowing.head('GET', target), { target })
  }
  for (const target of ['/public/..;/admin', '/public/.;x/y', '/public/x/..;jsessionid=1']) {
    await expectRefused(t, allowing, `GET ${target}`, allowing.head('GET', target), BAD_PATH)
  }
  expectOnlyAllowedReachedFunction(t, allowing)
})
