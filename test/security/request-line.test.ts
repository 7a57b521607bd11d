import t from 'tap'
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { gatewayFiles, startGatewayProcess, startPlainUpstream } from '../helpers/gateway-process.js'
import { exchange } from '../helpers/raw-http.js'
import { expectForwarded, expectOnlyAllowedReachedFunction, expectRefused, startSecurityHarness, type Refusal } from '../helpers/security.js'

// Issue #20 items 4-6: what the request line, Expect and Authorization may say, and what every refusal
// carries. Node's parser reads "GET /path" followed by headers as HTTP/0.9 (and accepts "HTTP/2.0" in
// text) and answers an unknown expectation with a bare 417 of its own; the gateway must give both its
// coded refusal, counted, with nothing forwarded. Each variant below is generated, not only the example.

const h = await startSecurityHarness(t)
const VERSION: Refusal = { status: 505, code: 'GW_ERR_GUARD_HTTP_VERSION', close: true }
const PARSER: Refusal = { status: 400, code: 'GW_ERR_GUARD_BAD_REQUEST', close: true }
const EXPECTATION: Refusal = { status: 417, code: 'GW_ERR_GUARD_EXPECTATION' }
// HEAD too is refused, but its answer has no body to check (see the last test for its status).
const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']

/** A request head with `line` as its request line and the usual Host and Authorization. */
const withLine = (line: string, extra: string[] = []): string => [line, 'Host: localhost', h.auth, ...extra, '', ''].join('\r\n')

t.test('a request line without an HTTP version, or with one the gateway does not serve, is refused', async t => {
  for (const method of METHODS) {
    // What Node's parser accepts and reads as another version: refused by the guard with 505.
    for (const version of ['', ' HTTP/0.9', ' HTTP/2.0']) {
      for (const target of ['/public/x', '/public/x?a=1']) {
        await expectRefused(t, h, `${method} ${target}${version}`, withLine(`${method} ${target}${version}`), VERSION)
      }
    }
    // What it does not parse at all: its own 400, never forwarded either.
    for (const version of [' HTTP/2', ' HTTP/3.0', ' HTTP/1', ' HTTP/1.10', ' http/1.1', ' HTTP/9.9']) {
      await expectRefused(t, h, `${method} /public/x${version}`, withLine(`${method} /public/x${version}`), PARSER)
    }
  }
  const bytes = h.stub.received.length
  const head = await h.send(withLine('HEAD /public/x'), { until: 'close', timeoutMs: 2000 })
  t.equal(head.responses[0]?.status, 505, 'HEAD without a version: 505')
  t.equal(h.stub.received.length, bytes, 'HEAD without a version: zero bytes reached the function')
  // HTTP/1.0 and HTTP/1.1 are served.
  await expectForwarded(t, h, 'HTTP/1.0', withLine('GET /public/x HTTP/1.0'), { target: '/public/x' })
  await expectForwarded(t, h, 'HTTP/1.1', withLine('GET /public/x HTTP/1.1'), { target: '/public/x' })
})

t.test('an Expect other than 100-continue gets the gateway\'s coded 417, counted, nothing forwarded', async t => {
  const expectations = ['foo', '200-ok', '100-continue-x', '100-continues', 'x-continue', '100', '100-continue; a=1',
    '100-continue, foo', 'foo, 100-continue', 'continue', '*', '"100-continue"']
  for (const value of expectations) {
    for (const version of ['HTTP/1.1', 'HTTP/1.0']) {
      await expectRefused(t, h, `GET Expect: ${value} (${version})`, withLine(`GET /public/x ${version}`, [`Expect: ${value}`]), EXPECTATION)
    }
    // With a body that was never read: refused, and the connection is closed rather than read on.
    const ex = await expectRefused(t, h, `POST Expect: ${value}`, withLine('POST /public/x HTTP/1.1', [`Expect: ${value}`, 'Content-Length: 5']), EXPECTATION)
    t.match(ex.responses[0]?.headers.connection ?? '', /close/i, `POST Expect: ${value}: connection closed`)
  }
  // 100-continue, in any case, is the one expectation met: 100 Continue, then the function's answer;
  // the function gets the request once, without Expect.
  for (const value of ['100-continue', '100-Continue', '100-CONTINUE', ' 100-continue ']) {
    const before = h.stub.requests.length
    const ex = await h.send(withLine('GET /public/x HTTP/1.1', [`Expect: ${value}`]), { until: 2 })
    t.strictSame(ex.responses.map(r => r.status), [100, 200], `Expect: ${value}: 100 Continue, then 200`)
    t.equal(h.stub.requests.length, before + 1, `Expect: ${value}: the function saw one request`)
    t.notMatch(h.stub.requests[before] ?? '', /^expect:/im, `Expect: ${value} is not forwarded`)
  }
})

/** Every upper/lower-case spelling of a word. */
function casings (word: string): string[] {
  let out = ['']
  for (const ch of word) out = out.flatMap(p => [p + ch.toLowerCase(), p + ch.toUpperCase()])
  return out
}

t.test('the Bearer scheme is case-insensitive (RFC 7235 §2.1): every casing of a valid token is accepted', async t => {
  const token = h.auth.slice('Authorization: Bearer '.length)
  const all = casings('bearer')
  t.equal(all.length, 64)
  for (const scheme of all) {
    const head = [`GET /public/x HTTP/1.1`, 'Host: localhost', `Authorization: ${scheme} ${token}`, '', ''].join('\r\n')
    await expectForwarded(t, h, `Authorization: ${scheme}`, head, { target: '/public/x' })
  }
  // Not a looser parse: another scheme, a missing space or a broken token is still refused.
  for (const value of [`Bearertoken ${token}`, `Bearer${token}`, `Bearer ${token}x.y`, `Basic ${token}`, `bearer  ${token}.x`]) {
    const head = [`GET /public/x HTTP/1.1`, 'Host: localhost', `Authorization: ${value}`, '', ''].join('\r\n')
    await expectRefused(t, h, `Authorization: ${value.slice(0, 12)}...`, head, { status: 401, code: 'GW_ERR_AUTHN_MALFORMED' })
  }
  expectOnlyAllowedReachedFunction(t, h)
})

t.test('every refusal carries X-Content-Type-Options: nosniff and Cache-Control: no-store', async t => {
  // expectRefused checks both headers on every refusal in test/security/; these are the kinds a
  // browser could be pointed at, one from each stage and from the parser, the 404 echoing the path.
  const cases: Array<[string, string, Refusal]> = [
    ['404 echoing the path', h.head('GET', '/nowhere/%3Cscript%3Ealert(1)%3Cscript%3E'), { status: 404, code: 'GW_ERR_ROUTE_NOT_FOUND' }],
    ['400 bad path', h.head('GET', '/public/../admin'), { status: 400, code: 'GW_ERR_GUARD_BAD_PATH' }],
    ['400 ambiguous path', h.head('GET', '/public/%252e'), { status: 400, code: 'GW_ERR_GUARD_AMBIGUOUS_PATH' }],
    ['401 no token', 'GET /public/x HTTP/1.1\r\nHost: localhost\r\n\r\n', { status: 401, code: 'GW_ERR_AUTHN_MISSING' }],
    ['403 policy', h.head('GET', '/admin/x'), { status: 403, code: 'GW_ERR_AUTHZ_DENIED' }],
    ['405 method', h.head('TRACE', '/public/x'), { status: 405, code: 'GW_ERR_GUARD_METHOD' }],
    ['405 CONNECT', 'CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n', { status: 405, code: 'GW_ERR_GUARD_METHOD', close: true }],
    ['400 from the parser', 'GET /public/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n', PARSER],
    ['417', withLine('GET /public/x HTTP/1.1', ['Expect: foo']), EXPECTATION],
    ['505', withLine('GET /public/x'), VERSION]
  ]
  for (const [name, bytes, want] of cases) {
    const ex = await expectRefused(t, h, name, bytes, want)
    const res = ex.responses[0]
    t.equal(res?.headers['x-content-type-options'], 'nosniff', `${name}: nosniff`)
    t.equal(res?.headers['cache-control'], 'no-store', `${name}: no-store`)
  }
})

t.test('through the real CLI, the 417 and 505 refusals each write an access line with their code', async t => {
  // The CLI serves through lifecycle/listener.ts, which must hand Node's expectation requests on.
  const files = await gatewayFiles(t)
  const fn = await startPlainUpstream(t, 'fn')
  await files.writeConfig(fn.url)
  // The raw client asks for "localhost" (SNI and verification).
  const pair = await files.ca.issue({ commonName: 'localhost', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], usage: 'server' })
  await writeFile(join(files.dir, 'gw.key'), pair.key)
  await writeFile(join(files.dir, 'gw.crt'), pair.cert)
  const gw = await startGatewayProcess(t, files.configFile)
  const port = Number(new URL(gw.url).port)
  const ca = readFileSync(files.caFile)
  const auth = `Authorization: Bearer ${await files.token()}`
  const cases: Array<[string, string, number, string]> = [
    ['Expect: foo', `GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}\r\nExpect: foo\r\n\r\n`, 417, 'GW_ERR_GUARD_EXPECTATION'],
    ['Expect: 100-continue-x', `GET /hello HTTP/1.1\r\nHost: 127.0.0.1\r\n${auth}\r\nExpect: 100-continue-x\r\n\r\n`, 417, 'GW_ERR_GUARD_EXPECTATION'],
    ['no version', `GET /hello\r\nHost: 127.0.0.1\r\n${auth}\r\n\r\n`, 505, 'GW_ERR_GUARD_HTTP_VERSION']
  ]
  for (const [name, bytes, status, code] of cases) {
    const ex = await exchange(t, port, ca, bytes, { until: 'close', timeoutMs: 3000 })
    t.strictSame(ex.responses.map(r => r.status), [status], `${name}: one ${status} answer`)
    t.match(ex.responses[0]?.body ?? '', new RegExp(`"code":"${code}"`), `${name}: ${code}`)
    const line = new RegExp(`"status":${status}[^\\n]*"code":"${code}"[^\\n]*request completed|"code":"${code}"[^\\n]*"status":${status}[^\\n]*request completed`)
    await Promise.race([gw.waitForLog(line), new Promise(resolve => setTimeout(resolve, 5000))])
    t.match(gw.log(), line, `${name}: an access line with status ${status} and ${code}`)
  }
})
