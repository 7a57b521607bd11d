import t, { type Test } from 'tap'
import { answerOk, headerFields, requestLine } from '../helpers/recording-upstream.js'
import { expectForwarded, expectOnlyAllowedReachedFunction, expectRefused, expectResetByHttp2, startSecurityHarness } from '../helpers/security.js'

// Identity and forwarding facts reach the function only from the gateway: whatever a client sends
// under those names, or under an alias a server would read as the same name, never arrives, and the
// gateway's own values arrive exactly once. Every check reads the bytes the function received.

const h = await startSecurityHarness(t)
const stubHost = new URL(h.stub.url).host

/** `x_forwarded_for` and `x.forwarded.for` → `x-forwarded-for`: how CGI-style servers read names. */
const dashed = (name: string): string => name.toLowerCase().replace(/[_.]/g, '-')

/** The gateway's own headers, each of which must arrive exactly once with the gateway's value. */
function expectGatewayHeaders (t: Test, name: string, head: string): void {
  const fields = headerFields(head)
  const want: Record<string, string | RegExp> = {
    host: stubHost,
    'x-forwarded-for': '127.0.0.1',
    'x-forwarded-proto': 'https',
    'x-forwarded-host': 'localhost',
    forwarded: 'for=127.0.0.1;proto=https;host=localhost',
    'x-portcullis-subject': 'alice',
    'x-portcullis-issuer': h.demo.issuer.url,
    'x-portcullis-request-id': /^[0-9a-f-]{36}$/
  }
  for (const [header, value] of Object.entries(want)) {
    const seen = fields.filter(([n]) => dashed(n) === header).map(([, v]) => v)
    t.equal(seen.length, 1, `${name}: one ${header}`, { seen })
    if (typeof value === 'string') t.equal(seen[0], value, `${name}: ${header} is the gateway's`)
    else t.match(seen[0], value, `${name}: ${header} is the gateway's`)
  }
}

// Names a client could use to claim an identity, a client certificate, an address, a different URL
// or method, or to steer hop-by-hop handling (src/pipeline/forward/headers.ts, RFC 9110 §7.6.1).
// Sources: oauth2-proxy and Pomerium user headers, AWS ALB x-amzn-oidc-*, GCP IAP
// x-goog-authenticated-*, Azure App Service x-ms-client-principal*, nginx/Envoy client-cert headers,
// Symfony CVE-2018-14773 (X-Original-URL/X-Rewrite-URL), Express method-override.
const SPOOFABLE = [
  'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port', 'x-forwarded-prefix',
  'x-forwarded-server', 'x-forwarded-user', 'x-forwarded-email', 'x-forwarded-groups',
  'x-forwarded-preferred-username', 'x-forwarded-access-token', 'forwarded', 'x-real-ip', 'x-client-ip',
  'true-client-ip', 'x-original-url', 'x-rewrite-url', 'x-original-uri', 'x-http-method-override',
  'x-http-method', 'x-method-override', 'remote-user', 'x-remote-user', 'x-user', 'x-user-id',
  'x-authenticated-user', 'x-ssl-client-cert', 'x-ssl-client-verify', 'x-ssl-client-s-dn', 'x-client-cert',
  'x-client-cert-chain', 'x-portcullis-subject', 'x-portcullis-issuer', 'x-portcullis-request-id',
  'x-portcullis-roles', 'x-auth-request-user', 'x-auth-request-email', 'x-auth-request-access-token',
  'x-amzn-oidc-identity', 'x-amzn-oidc-data', 'x-amzn-oidc-accesstoken', 'x-goog-authenticated-user-email',
  'x-goog-authenticated-user-id', 'x-ms-client-principal', 'x-ms-client-principal-name',
  'x-ms-client-principal-id', 'x-jwt-assertion', 'x-jwt-payload', 'proxy-authorization',
  'proxy-connection', 'keep-alive', 'te', 'trailer', 'http2-settings'
]

/** The name as sent, in upper case, with underscores and with dots. */
function aliases (name: string): string[] {
  const title = name.replace(/(^|-)([a-z])/g, (_m, d: string, c: string) => d + c.toUpperCase())
  return [...new Set([title, name.toUpperCase(), title.replace(/-/g, '_'), name.replace(/-/g, '.')])]
}

// Over HTTP/2 a request carrying one of these is malformed (RFC 9113 §8.2.2) and reset before the gateway.
const CONNECTION_SPECIFIC = new Set(['proxy-connection', 'keep-alive', 'te', 'connection', 'transfer-encoding', 'upgrade'])

t.test('spoofable headers and their _ and . aliases never reach the function', async t => {
  for (const name of SPOOFABLE) {
    const lines = aliases(name).map((a, i) => `${a}: forged-${i}`)
    if (h.protocol === 'h2' && CONNECTION_SPECIFIC.has(name)) {
      await expectResetByHttp2(t, h, name, h.head('GET', '/public/x', lines))
      continue
    }
    const seen = await expectForwarded(t, h, name, h.head('GET', '/public/x', lines), { target: '/public/x' })
    if (seen === null) continue
    t.notMatch(seen.head, /forged/i, `${name}: no forged value upstream`)
    expectGatewayHeaders(t, name, seen.head)
  }
})

t.test('a Connection header cannot remove the gateway\'s own values', async t => {
  // RFC 9110 §7.6.1 lets a client make any header hop-by-hop; applied after the gateway set its own
  // headers, that would strip X-Forwarded-For or the subject (the classic "Connection: close,
  // X-Forwarded-For" trick against proxies that add the header first).
  const nominations = [
    'close, X-Forwarded-For',
    'keep-alive, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, Host',
    'X-Portcullis-Subject, X-Portcullis-Issuer, X-Portcullis-Request-Id, X-Policy-Path, X-Policy-Method',
    'x_forwarded_for, x.portcullis.subject, X_Portcullis_Subject'
  ]
  for (const value of nominations) {
    const forged = ['X-Forwarded-For: 6.6.6.6 forged', 'X-Portcullis-Subject: root forged', 'X_Portcullis_Subject: forged', 'x.portcullis.subject: forged']
    if (h.protocol === 'h2') {
      await expectResetByHttp2(t, h, `Connection: ${value}`, h.head('GET', '/public/x', [`Connection: ${value}`, ...forged]))
      continue
    }
    const seen = await expectForwarded(t, h, `Connection: ${value}`, h.head('GET', '/public/x', [`Connection: ${value}`, ...forged]), { target: '/public/x' })
    if (seen === null) continue
    t.notMatch(seen.head, /forged/i, `Connection: ${value}: no forged value upstream`)
    expectGatewayHeaders(t, `Connection: ${value}`, seen.head)
    t.notOk(headerFields(seen.head).some(([n, v]) => n === 'connection' && /forwarded|portcullis/i.test(v)), 'the nomination itself is not forwarded')
  }
  // An ordinary header the client nominates is hop-by-hop and dropped; its neighbours pass.
  if (h.protocol === 'h2') return
  const seen = await expectForwarded(t, h, 'nominated ordinary header', h.head('GET', '/public/x', ['Connection: X-Drop-Me', 'X-Drop-Me: 1', 'X-Keep-Me: 2']), { target: '/public/x' })
  const names = headerFields(seen?.head ?? '').map(([n]) => n)
  t.notOk(names.includes('x-drop-me'), 'the nominated header is dropped')
  t.ok(names.includes('x-keep-me'), 'other headers pass')
})

t.test('credentials for the gateway stay at the gateway; the policy never reads them', async t => {
  const token = h.auth.slice('Authorization: Bearer '.length)
  const seen = await expectForwarded(t, h, 'credentials', h.head('GET', '/public/x', [
    'Proxy-Authorization: Basic Zm9yZ2VkOmZvcmdlZA==', 'Cookie: session=abc'
  ]), { target: '/public/x' })
  if (seen === null) return
  const names = headerFields(seen.head).map(([n]) => n)
  t.notOk(names.includes('authorization'), 'the client\'s Authorization is not forwarded')
  t.notOk(names.includes('proxy-authorization'), 'Proxy-Authorization is not forwarded (RFC 9110 §11.7.2)')
  t.notOk(h.stub.received.includes(token), 'the token appears nowhere in what the function received')
  t.ok(names.includes('cookie'), 'cookies are the function\'s business and pass')
  t.strictSame(Object.keys(seen.policyHeaders).filter(n => /authorization|cookie/.test(n)), [], 'the policy saw no credentials')
})

t.test('method and URL overrides cannot change what the function runs', async t => {
  const overrides = ['X-HTTP-Method-Override: DELETE', 'X-HTTP-Method: PUT', 'X-Method-Override: PATCH', 'X_HTTP_Method_Override: DELETE']
  const urls = ['X-Original-URL: /admin', 'X-Rewrite-URL: /admin', 'X-Original-URI: /admin', 'X_Original_URL: /admin']
  for (const method of ['GET', 'POST']) {
    const body = method === 'POST' ? ['Content-Length: 0'] : []
    const seen = await expectForwarded(t, h, `${method} with overrides`, h.head(method, '/public/x', [...overrides, ...urls, ...body]), { method, target: '/public/x' })
    t.notMatch(seen?.head ?? '', /override|original|rewrite|\/admin/i, `${method}: no override upstream`)
  }
})

t.test('Host is one valid value or the request is refused', async t => {
  // RFC 9112 §3.2: a server MUST respond 400 to an HTTP/1.1 request without Host, with more than one
  // Host field line, or with an invalid Host value. Duplicates let two components pick different
  // hosts (CVE-2016-10033-style host-header attacks, PortSwigger "duplicate Host" research).
  const bad = { status: 400, code: 'GW_ERR_GUARD_BAD_REQUEST' }
  const withHost = (lines: string[]): string => [`GET /public/x HTTP/1.1`, h.auth, ...lines, '', ''].join('\r\n')
  await expectRefused(t, h, 'no Host', withHost([]), bad)
  await expectRefused(t, h, 'two Host lines', withHost(['Host: localhost', 'Host: evil.example']), bad)
  await expectRefused(t, h, 'Host with a path', withHost(['Host: localhost/admin']), bad)
  await expectRefused(t, h, 'Host with userinfo', withHost(['Host: localhost@evil.example']), bad)
  await expectRefused(t, h, 'Host with a space', withHost(['Host: local host']), bad)
  await expectRefused(t, h, 'Host with a comma list', withHost(['Host: localhost, evil.example']), bad)
  // A foreign but valid Host is the client's claim: the function gets the upstream's own Host.
  const seen = await expectForwarded(t, h, 'foreign Host', withHost(['Host: evil.example']), { target: '/public/x' })
  t.strictSame(headerFields(seen?.head ?? '').filter(([n]) => n === 'host').map(([, v]) => v), [stubHost], 'Host upstream is the upstream\'s')
})

t.test('hop-by-hop and nominated headers from the function do not reach the client', async t => {
  t.teardown(() => { h.stub.respond = answerOk })
  h.stub.respond = socket => {
    socket.write([
      'HTTP/1.1 200 OK', 'Content-Length: 2', 'Connection: X-Upstream-Secret', 'X-Upstream-Secret: s3cret',
      'Keep-Alive: timeout=99', 'Proxy-Authenticate: Basic realm="fn"', 'Upgrade: h2c', 'Trailer: X-T', 'X-Visible: yes', '', 'ok'
    ].join('\r\n'))
  }
  const ex = await h.send(h.head('GET', '/public/x'))
  const res = ex.responses[0]
  t.equal(res?.status, 200)
  t.equal(res?.headers['x-visible'], 'yes', 'end-to-end headers pass')
  for (const name of ['x-upstream-secret', 'proxy-authenticate', 'upgrade', 'trailer']) t.equal(res?.headers[name], undefined, `${name} is dropped`)
  t.notMatch(res?.headers['keep-alive'] ?? '', /99/, 'the function\'s Keep-Alive is not the client\'s')
  t.notMatch(ex.text, /s3cret/, 'the nominated header\'s value appears nowhere')
})

t.test('a function cannot replace the decision id the gateway answers with', async t => {
  t.teardown(() => { h.stub.respond = answerOk })
  h.stub.respond = socket => {
    socket.write(['HTTP/1.1 200 OK', 'Content-Length: 2', 'X-Portcullis-Decision-Id: forged-by-the-function', '', 'ok'].join('\r\n'))
  }
  const ex = await h.send(h.head('GET', '/public/x'))
  const res = ex.responses[0]
  t.equal(res?.status, 200)
  t.match(res?.headers['x-portcullis-decision-id'], /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'the gateway\'s own id')
  t.notMatch(ex.text, /forged-by-the-function/, 'the function\'s value appears nowhere')
})

t.test('the function only ever saw requests the policy allowed', async t => {
  expectOnlyAllowedReachedFunction(t, h)
  t.ok(h.stub.requests.every(head => requestLine(head).version === 'HTTP/1.1'), 'all as HTTP/1.1')
})
