import t from 'tap'
import type { Exchange, RawConnection } from '../helpers/raw-http.js'
import {
  expectForwarded, expectOnlyAllowedReachedFunction, expectRefused, startSecurityHarness, type Refusal, type SecurityHarness
} from '../helpers/security.js'

// Bounded work per request: sizes and counts are refused at the edge, before identity or policy work,
// and a refused request puts zero bytes on the function's connection. Defaults first, then a gateway
// with small limits (so each boundary can be tested at N and N + 1), per-route body caps and hosts.

const URI_TOO_LONG: Refusal = { status: 414, code: 'GW_ERR_GUARD_URI_TOO_LONG' }
const TOO_MANY_HEADERS: Refusal = { status: 431, code: 'GW_ERR_GUARD_HEADERS_TOO_LARGE' }
const HEAD_TOO_LARGE: Refusal = { status: 431, code: 'GW_ERR_GUARD_HEADERS_TOO_LARGE', close: true }
const BODY_TOO_LARGE: Refusal = { status: 413, code: 'GW_ERR_GUARD_BODY_TOO_LARGE' }
const UNKNOWN_HOST: Refusal = { status: 404, code: 'GW_ERR_ROUTE_UNKNOWN_HOST' }

/** `n` header fields in all (Host and Authorization included). */
const fields = (n: number): string[] => Array.from({ length: n - 2 }, (_, i) => `X-F${i}: v`)
const chunked = (body: string): string => `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`

/** Writes the head only and keeps the connection open, as a client streaming a huge body would. */
async function headOnly (h: SecurityHarness, head: string): Promise<{ conn: RawConnection, ex: () => Promise<Exchange> }> {
  const conn = await h.open()
  return {
    conn,
    ex: async () => {
      conn.write(head)
      const responses = await conn.responses(1, 5000)
      return { responses, text: conn.data.toString('latin1'), closed: conn.isClosed }
    }
  }
}

t.test('defaults', async t => {
  const h = await startSecurityHarness(t)

  t.test('a 10 GiB Content-Length is refused at once, without reading the body', async t => {
    const { conn, ex } = await headOnly(h, h.head('POST', '/public/x', ['Content-Length: 10737418240']))
    const res = (await expectRefused(t, h, '10 GiB', ex, BODY_TOO_LARGE)).responses[0]
    // RFC 9110 §15.5.14: the server MAY close the connection. It must, here: keeping it means reading
    // and discarding up to 10 GiB (or holding the socket until requestTimeout) for a refused request.
    t.match(res?.headers.connection ?? '', /close/i, 'connection: close')
    t.ok(await conn.closed(3000), 'the connection is closed')
  })

  t.test('the request target: 8192 bytes pass, 8193 are 414, query included', async t => {
    const at = `/public/${'a'.repeat(8192 - 8)}`
    await expectForwarded(t, h, '8192-byte target', h.head('GET', at), { target: at })
    await expectRefused(t, h, '8193-byte path', h.head('GET', `${at}a`), URI_TOO_LONG)
    await expectRefused(t, h, '8193-byte target by its query', h.head('GET', `/public/x?q=${'b'.repeat(8192 - 11)}`), URI_TOO_LONG)
    // The limit applies before the route and the path rules: a long /admin target is 414, not 403.
    await expectRefused(t, h, 'long /admin target', h.head('GET', `/admin/${'c'.repeat(9000)}`), URI_TOO_LONG)
  })

  t.test('header fields: 100 pass, 101 are 431 (not silently dropped)', async t => {
    // Node keeps only server.maxHeadersCount fields and drops the rest without an error.
    await expectForwarded(t, h, '100 fields', h.head('GET', '/public/x', fields(100)), { target: '/public/x' })
    await expectRefused(t, h, '101 fields', h.head('GET', '/public/x', fields(101)), TOO_MANY_HEADERS)
    await expectRefused(t, h, '1000 small fields', h.head('GET', '/public/x', fields(1000).map((_, i) => `A${i}:`)), TOO_MANY_HEADERS)
  })

  t.test('header bytes: one huge field, or many large ones, are 431 and the connection closes', async t => {
    await expectRefused(t, h, 'one 20 kB field', h.head('GET', '/public/x', [`X-Big: ${'a'.repeat(20_000)}`]), HEAD_TOO_LARGE)
    await expectRefused(t, h, '40 fields of 500 bytes', h.head('GET', '/public/x', Array.from({ length: 40 }, (_, i) => `X-${i}: ${'a'.repeat(500)}`)), HEAD_TOO_LARGE)
    await expectRefused(t, h, 'a 20 kB request line', h.head('GET', `/public/${'a'.repeat(20_000)}`), HEAD_TOO_LARGE)
  })

  t.test('a chunked body over 1 MiB is cut off with 413 and the function never gets a whole request', async t => {
    const before = h.stub.requests.length
    const chunk = 'y'.repeat(64 * 1024)
    const body = Array.from({ length: 17 }, () => `${chunk.length.toString(16)}\r\n${chunk}\r\n`).join('') + '0\r\n\r\n'
    const ex = await h.send(h.head('POST', '/public/x', ['Transfer-Encoding: chunked']) + body, { until: 1 })
    t.equal(ex.responses[0]?.status, 413)
    t.match(ex.responses[0]?.body ?? '', /"code":"GW_ERR_GUARD_BODY_TOO_LARGE"/)
    t.equal(h.stub.requests.length, before, 'no complete request reached the function')
  })

  t.test('the function only ever saw requests the policy allowed', async t => { expectOnlyAllowedReachedFunction(t, h) })
})

t.test('configured limits, per-route body caps and listen.hosts', async t => {
  const h = await startSecurityHarness(t, {
    configure: raw => {
      raw.limits = { maxUriBytes: 256, maxHeaders: 10, maxHeaderBytes: 2048, maxBodyBytes: 1024 }
      raw.listen.hosts = ['localhost', 'api.example.com']
      raw.routes[0].maxBodyBytes = 64 // /public, below the global cap
      raw.routes.push({ id: 'upload', prefix: '/public/upload', methods: ['POST'], upstream: 'demo-function', maxBodyBytes: 4096 })
    }
  })

  t.test('URI and header limits at N and N + 1', async t => {
    const at = `/public/${'a'.repeat(256 - 8)}`
    await expectForwarded(t, h, '256-byte target', h.head('GET', at), { target: at })
    await expectRefused(t, h, '257-byte target', h.head('GET', `${at}a`), URI_TOO_LONG)
    await expectForwarded(t, h, '10 fields', h.head('GET', '/public/x', fields(10)), { target: '/public/x' })
    await expectRefused(t, h, '11 fields', h.head('GET', '/public/x', fields(11)), TOO_MANY_HEADERS)
    await expectRefused(t, h, 'head over 2048 bytes', h.head('GET', '/public/x', [`X-Big: ${'a'.repeat(2100)}`]), HEAD_TOO_LARGE)
  })

  t.test('a route\'s maxBodyBytes replaces the global cap, both ways, by length and while streaming', async t => {
    const post = (path: string, lines: string[], body: string): string => h.head('POST', path, lines) + body
    const cases: Array<[string, string, string]> = [
      ['/public: 64 bytes by length', '/public/x', 'a'.repeat(64)],
      ['/public: 64 bytes chunked', '/public/x', 'a'.repeat(64)],
      ['/public/upload: 2000 bytes by length (over the global 1024)', '/public/upload/f', 'b'.repeat(2000)],
      ['/public/upload: 2000 bytes chunked', '/public/upload/f', 'b'.repeat(2000)]
    ]
    for (const [name, path, body] of cases) {
      const lines = name.includes('chunked') ? ['Transfer-Encoding: chunked'] : [`Content-Length: ${body.length}`]
      await expectForwarded(t, h, name, post(path, lines, name.includes('chunked') ? chunked(body) : body), { method: 'POST', target: path })
      t.equal(h.stub.parsed.at(-1)?.body.toString(), body, `${name}: the body arrived whole`)
    }
    await expectRefused(t, h, '/public: 65 bytes by length', post('/public/x', ['Content-Length: 65'], 'a'.repeat(65)), BODY_TOO_LARGE)
    await expectRefused(t, h, '/public/upload: 4097 bytes by length', post('/public/upload/f', ['Content-Length: 4097'], 'b'.repeat(4097)), BODY_TOO_LARGE)
    // The length is checked before the policy: an oversized body to /admin is 413, not 403.
    await expectRefused(t, h, '/admin: 1025 bytes by length', post('/admin/x', ['Content-Length: 1025'], 'c'.repeat(1025)), BODY_TOO_LARGE)
    // A chunked body has no length up front; it is counted as it arrives. When the whole body is
    // already in hand, nothing needs to reach the function before the count says no.
    await expectRefused(t, h, '/public: 65 bytes chunked', post('/public/x', ['Transfer-Encoding: chunked'], chunked('a'.repeat(65))), BODY_TOO_LARGE)
  })

  t.test('only the listed hosts are served (port ignored, case-insensitive)', async t => {
    const withHost = (host: string, extra: string[] = []): string => ['GET /public/x HTTP/1.1', `Host: ${host}`, h.auth, ...extra, '', ''].join('\r\n')
    await expectForwarded(t, h, 'api.example.com', withHost('api.example.com'), { target: '/public/x' })
    await expectForwarded(t, h, 'API.Example.COM:8443', withHost('API.Example.COM:8443'), { target: '/public/x' })
    for (const host of ['evil.example', 'api.example.com.', 'api.example.com.evil.example', 'example.com', '[::1]', '127.0.0.1', 'localhost.evil']) {
      await expectRefused(t, h, `Host ${host}`, withHost(host), UNKNOWN_HOST)
    }
    // Not even a valid Host value: refused either as an unknown host or as a bad request.
    await expectRefused(t, h, 'Host api.example.com@evil.example', withHost('api.example.com@evil.example'),
      { status: [400, 404], code: /^GW_ERR_(ROUTE_UNKNOWN_HOST|GUARD_BAD_REQUEST)$/ })
    // HTTP/1.0 does not require Host; without one, no listed host was asked for.
    await expectRefused(t, h, 'HTTP/1.0 without Host', ['GET /public/x HTTP/1.0', h.auth, '', ''].join('\r\n'), UNKNOWN_HOST)
    // The host is checked before authentication: no token needed to learn nothing.
    await expectRefused(t, h, 'unknown Host without a token', 'GET /public/x HTTP/1.1\r\nHost: evil.example\r\n\r\n', UNKNOWN_HOST)
  })

  t.test('the function only ever saw requests the policy allowed', async t => { expectOnlyAllowedReachedFunction(t, h) })
})
