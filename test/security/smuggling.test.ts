import t from 'tap'
import { expectForwarded, expectOnlyAllowedReachedFunction, expectRefused, startSecurityHarness, type Refusal } from '../helpers/security.js'
import { headerFields, requestLine } from '../helpers/recording-upstream.js'

// Request smuggling: any request whose framing two HTTP parsers could read differently is refused at
// the edge with 400 and a closed connection, so the function can never see a request the client hid
// inside another one (RFC 9112 §6.3, §11.2). Requests are written byte for byte on raw TLS sockets.

const h = await startSecurityHarness(t)
const SMUGGLED = `GET /admin HTTP/1.1\r\nHost: localhost\r\n${h.auth}\r\n\r\n`
const BAD_REQUEST: Refusal = { status: 400, code: 'GW_ERR_GUARD_BAD_REQUEST', close: true }

/** An authenticated POST to an allowed path with the given header lines and raw body. */
function post (lines: string[], body: string, version = '1.1'): string {
  return [`POST /public/x HTTP/${version}`, 'Host: localhost', h.auth, ...lines, '', body].join('\r\n')
}

// Each group: 400, the gateway's body, a closed connection, one count, zero bytes at the function,
// and no response for the request hidden in the body.
const REFUSED: Record<string, Array<[string, string]>> = {
  'Content-Length and Transfer-Encoding conflicts': [
    // CL.TE and TE.CL (RFC 9112 §6.1, §6.3 item 3; Watchfire 2005, PortSwigger 2019)
    ['CL then TE', post(['Content-Length: 4', 'Transfer-Encoding: chunked'], `0\r\n\r\n${SMUGGLED}`)],
    ['TE then CL', post(['Transfer-Encoding: chunked', `Content-Length: ${5 + SMUGGLED.length}`], `0\r\n\r\n${SMUGGLED}`)],
    ['CL with TE "chunked " (trailing space)', post(['Content-Length: 4', 'Transfer-Encoding: chunked '], `0\r\n\r\n${SMUGGLED}`)],
    ['CL with TE after a tab', post(['Content-Length: 4', 'Transfer-Encoding:\tchunked'], `0\r\n\r\n${SMUGGLED}`)],
    ['CL with upper-case TE', post(['Content-Length: 4', 'TRANSFER-ENCODING: CHUNKED'], `0\r\n\r\n${SMUGGLED}`)],
    // Duplicate and malformed Content-Length (RFC 9110 §8.6, RFC 9112 §6.3 item 5; Node CVE-2022-32213)
    ['conflicting Content-Length', post(['Content-Length: 5', `Content-Length: ${5 + SMUGGLED.length}`], `hello${SMUGGLED}`)],
    ['identical duplicate Content-Length', post(['Content-Length: 5', 'Content-Length: 5'], 'hello')],
    ['Content-Length list "5, 5"', post(['Content-Length: 5, 5'], 'hello')],
    ['Content-Length "+5"', post(['Content-Length: +5'], 'hello')],
    ['Content-Length "-1"', post(['Content-Length: -1'], 'hello')],
    ['Content-Length "0x5"', post(['Content-Length: 0x5'], 'hello')],
    ['Content-Length "5 5"', post(['Content-Length: 5 5'], 'hello')],
    ['Content-Length past 2^64', post(['Content-Length: 99999999999999999999999'], 'hello')]
  ],
  'obfuscated Transfer-Encoding': [
    // Obfuscated Transfer-Encoding: a final coding other than chunked (RFC 9112 §6.3 item 4)
    ['TE xchunked', post(['Transfer-Encoding: xchunked'], `0\r\n\r\n${SMUGGLED}`)],
    ['TE "chunked, identity"', post(['Transfer-Encoding: chunked, identity'], `0\r\n\r\n${SMUGGLED}`)],
    ['TE identity', post(['Transfer-Encoding: identity'], `0\r\n\r\n${SMUGGLED}`)],
    ['TE quoted "chunked"', post(['Transfer-Encoding: "chunked"'], `0\r\n\r\n${SMUGGLED}`)],
    ['two TE fields: chunked and identity', post(['Transfer-Encoding: chunked', 'Transfer-Encoding: identity'], `0\r\n\r\n${SMUGGLED}`)],
    // chunked applied twice (RFC 9112 §6.1: a sender MUST NOT apply chunked more than once)
    ['two TE fields: chunked twice', post(['Transfer-Encoding: chunked', 'Transfer-Encoding: chunked'], `0\r\n\r\n${SMUGGLED}`)]
  ],
  'whitespace, folding, line endings and forbidden bytes': [
    // Whitespace between name and colon (RFC 9112 §5.1: MUST be rejected with 400)
    ['space before the colon of TE', post(['Content-Length: 4', 'Transfer-Encoding : chunked'], `0\r\n\r\n${SMUGGLED}`)],
    ['tab before the colon of CL', post(['Content-Length\t: 4'], `0\r\n\r\n${SMUGGLED}`)],
    // Line folding (RFC 9112 §5.2; Node CVE-2022-32215 multi-line Transfer-Encoding)
    ['obs-fold continuing TE', post(['Content-Length: 4', 'Transfer-Encoding:', ' chunked'], `0\r\n\r\n${SMUGGLED}`)],
    ['obs-fold in an ordinary header', post(['X-Note: a', ' b', 'Content-Length: 0'], '')],
    // Line endings (RFC 9112 §2.2; Node CVE-2023-30589: llhttp took a bare CR as a line end)
    ['bare LF line endings', `POST /public/x HTTP/1.1\nHost: localhost\n${h.auth}\nContent-Length: 4\nTransfer-Encoding: chunked\n\n0\n\n${SMUGGLED}`],
    ['bare LF hiding a TE line', post(['X-A: a\nTransfer-Encoding: chunked', 'Content-Length: 4'], `0\r\n\r\n${SMUGGLED}`)],
    ['bare CR hiding a TE line', post(['X-A: a\rTransfer-Encoding: chunked', 'Content-Length: 4'], `0\r\n\r\n${SMUGGLED}`)],
    // Forbidden bytes in fields (RFC 9110 §5.5: NUL, CR, LF MUST be rejected or replaced)
    ['NUL in a header value', post(['X-A: a\0b', 'Content-Length: 0'], '')],
    ['NUL in a header name', post(['X-\0A: b', 'Content-Length: 0'], '')],
    ['vertical tab before TE value', post(['Content-Length: 4', 'Transfer-Encoding:\vchunked'], `0\r\n\r\n${SMUGGLED}`)],
    ['space inside a header name', post(['Bad Header: y', 'Content-Length: 0'], '')],
    // A lowercase or unknown method is not a method (RFC 9110 §9.1: case-sensitive)
    ['lower-case method', `get /public/x HTTP/1.1\r\nHost: localhost\r\n${h.auth}\r\n\r\n`]
  ],
  'invalid chunk sizes': [
    // Invalid chunked bodies (RFC 9112 §7.1; llhttp strict chunk-size parsing)
    ['chunk size "zz"', post(['Transfer-Encoding: chunked'], `zz\r\nhello\r\n0\r\n\r\n${SMUGGLED}`)],
    ['chunk size "-1"', post(['Transfer-Encoding: chunked'], `-1\r\nhello\r\n0\r\n\r\n${SMUGGLED}`)],
    ['chunk size "0x5"', post(['Transfer-Encoding: chunked'], `0x5\r\nhello\r\n0\r\n\r\n${SMUGGLED}`)],
    ['chunk size with trailing space', post(['Transfer-Encoding: chunked'], `5 \r\nhello\r\n0\r\n\r\n${SMUGGLED}`)],
    ['chunk size past 2^64', post(['Transfer-Encoding: chunked'], `fffffffffffffffff\r\nhello\r\n0\r\n\r\n${SMUGGLED}`)]
  ],
  'invalid chunk framing and trailers': [
    ['chunk data longer than its size', post(['Transfer-Encoding: chunked'], `3\r\nhello\r\n0\r\n\r\n${SMUGGLED}`)],
    ['bare LF after a chunk extension', post(['Transfer-Encoding: chunked'], `5;a=b\nhello\r\n0\r\n\r\n${SMUGGLED}`)],
    // Framing fields are not allowed in trailers (RFC 9110 §6.5.1), so they cannot reframe the message.
    ['Content-Length and TE as trailers', post(['Transfer-Encoding: chunked'], `5\r\nhello\r\n0\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n`)]
  ]
}

// Over HTTP/2 (smuggling.h2.test.ts) each case is the HTTP/2 request made of it (test/helpers/h2-exchange.ts).
// Line endings are HTTP/1.1 text only: HTTP/2 frames have none to get wrong. A lower-case method is a
// valid token there (no request line to misparse), so it is an unknown method: 405.
const H1_ONLY = new Set(['bare LF line endings'])
const H2_ANSWER: Record<string, Refusal> = { 'lower-case method': { status: 405, code: 'GW_ERR_GUARD_METHOD' } }

for (const [group, cases] of Object.entries(REFUSED)) {
  t.test(`refused: ${group}`, async t => {
    for (const [name, bytes] of cases) {
      if (h.protocol === 'h2' && H1_ONLY.has(name)) continue
      await expectRefused(t, h, name, bytes, (h.protocol === 'h2' ? H2_ANSWER[name] : undefined) ?? BAD_REQUEST)
    }
  })
}

t.test('framing the gateway cannot forward faithfully is refused', async t => {
  // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding MUST be treated as faulty framing.
  await expectRefused(t, h, 'HTTP/1.0 with Transfer-Encoding', post(['Transfer-Encoding: chunked'], `5\r\nhello\r\n0\r\n\r\n`, '1.0'), BAD_REQUEST)
  // RFC 9112 §6.1: a transfer coding the server does not implement SHOULD get 501. Node decodes only
  // chunked, and dropping "gzip" with the hop-by-hop header would hand the function bytes it cannot
  // interpret: either refusal (400 or 501) keeps the function out of it.
  await expectRefused(t, h, 'TE "gzip, chunked"', post(['Transfer-Encoding: gzip, chunked'], `5\r\nhello\r\n0\r\n\r\n`),
    { status: [400, 501], code: /^GW_ERR_GUARD_/ })
})

t.test('protocol upgrades are refused: no h2c or WebSocket tunnel past the policy', async t => {
  // h2c smuggling (Bishop Fox 2020; Traefik, Envoy and Kong advisories on upgrade handling): an
  // upgraded connection would carry requests the gateway never sees.
  const upgrade: Refusal = { status: 501, code: 'GW_ERR_GUARD_UPGRADE', close: true }
  const cases: Array<[string, string[]]> = [
    ['h2c with HTTP2-Settings', ['Connection: Upgrade, HTTP2-Settings', 'Upgrade: h2c', 'HTTP2-Settings: AAMAAABkAAQAAP__']],
    ['h2c without Connection', ['Upgrade: h2c']],
    ['WebSocket', ['Connection: Upgrade', 'Upgrade: websocket', 'Sec-WebSocket-Version: 13', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==']],
    ['lower-case upgrade to an unknown protocol', ['connection: upgrade', 'upgrade: foo/1']]
  ]
  for (const [name, lines] of cases) await expectRefused(t, h, name, h.head('GET', '/public/x', lines), upgrade)
  // The upgrade must not be smuggled behind a POST body either.
  await expectRefused(t, h, 'upgrade on a POST with a body', post(['Connection: Upgrade', 'Upgrade: h2c', 'Content-Length: 5'], 'hello'), upgrade)
})

/** `request` followed by a closing request, so the gateway answers everything and closes. */
async function pipelined (request: string): Promise<{ count: number, heads: string[], bodies: string[], statuses: number[] }> {
  const before = h.stub.requests.length
  const ex = await h.send(request + h.head('GET', '/public/end', ['Connection: close']), { until: 'close' })
  // Pipelined requests are forwarded concurrently, so the function may see them in either order.
  const parsed = h.stub.parsed.slice(before).sort((a, b) => requestLine(b.head).target.localeCompare(requestLine(a.head).target))
  return {
    count: parsed.length,
    heads: parsed.map(p => p.head),
    bodies: parsed.map(p => p.body.toString('latin1')),
    statuses: ex.responses.map(r => r.status)
  }
}

// HTTP/1.1 pipelining: several requests in one byte stream. HTTP/2 has a stream per request (and a
// body is DATA frames); its framing attacks are in http2.test.ts.
const PIPELINING = { skip: h.protocol === 'h2' ? 'HTTP/1.1 pipelining; HTTP/2 framing is covered by http2.test.ts' : false }

t.test('a request-looking body is a body: the function sees exactly the requests the client sent', PIPELINING, async t => {
  const cases: Array<[string, string, string]> = [
    // A GET with a body keeps its length upstream, so the body cannot become a request there.
    ['GET with a Content-Length body', `GET /public/x HTTP/1.1\r\nHost: localhost\r\n${h.auth}\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`, SMUGGLED],
    ['POST with a Content-Length body', post([`Content-Length: ${SMUGGLED.length}`], SMUGGLED), SMUGGLED],
    ['POST with a chunked body', post(['Transfer-Encoding: chunked'], `${SMUGGLED.length.toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`), SMUGGLED],
    ['chunked with a chunk extension', post(['Transfer-Encoding: chunked'], `5;ext="x"\r\nhello\r\n0\r\n\r\n`), 'hello'],
    ['chunked with an ordinary trailer', post(['Transfer-Encoding: chunked'], `5\r\nhello\r\n0\r\nX-Checksum: 1\r\n\r\n`), 'hello'],
    // "Transfer_Encoding" is not Transfer-Encoding here, but CGI-style servers read it as one.
    ['Transfer_Encoding alias with Content-Length', post(['Transfer_Encoding: chunked', 'Content-Length: 5'], 'hello'), 'hello']
  ]
  for (const [name, request, body] of cases) {
    const seen = await pipelined(request)
    t.equal(seen.count, 2, `${name}: the function saw two requests for the client's two`)
    t.strictSame(seen.statuses, [200, 200], `${name}: two responses`)
    t.equal(seen.bodies[0], body, `${name}: the body arrived whole, as a body`)
    t.strictSame(seen.heads.map(hd => requestLine(hd).target), ['/public/x', '/public/end'], `${name}: request lines`)
    const fields = headerFields(seen.heads[0] ?? '')
    const framing = fields.filter(([n]) => n === 'content-length' || n === 'transfer-encoding')
    t.equal(framing.length, 1, `${name}: exactly one framing header upstream`, { framing })
    t.notOk(fields.some(([n, v]) => /^transfer[_.]encoding$/.test(n) || v === '99'), `${name}: no aliased or trailer framing upstream`)
  }
})

t.test('a pipelined second request is judged on its own', PIPELINING, async t => {
  // Properly framed pipelining (RFC 9112 §9.3.2) is allowed, and each request meets the policy.
  const seen = await pipelined(post(['Content-Length: 5'], 'hello') + SMUGGLED)
  t.strictSame(seen.statuses, [200, 403, 200], 'allowed, denied, allowed')
  t.equal(seen.count, 2, 'the denied /admin request never reached the function')
  await expectForwarded(t, h, 'a clean request afterwards', h.head('GET', '/public/after'), { target: '/public/after' })
})

t.test('the function only ever saw requests the policy allowed', async t => {
  expectOnlyAllowedReachedFunction(t, h)
})
