import t from 'tap'
import type { IncomingHttpHeaders } from 'node:http'
import { buildUpstreamHeaders, filterResponseHeaders, IDENTITY_HEADERS, type UpstreamContext } from '../../../src/pipeline/forward/headers.js'
import type { Decision } from '../../../src/pipeline/types.js'

function context (upstream: Decision['headers']['upstream'] = {}): UpstreamContext {
  return {
    principal: { type: 'jwt', issuerId: 'idp', issuer: 'https://idp.example.com', subject: 'alice', claims: { sub: 'alice' }, certificate: null },
    decision: { allow: true, reasons: [], headers: { upstream, client: {} } },
    requestId: 'req-123',
    clientIp: '203.0.113.7',
    host: 'api.example.com',
    upstreamHost: 'fn.internal.example:8443'
  }
}

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'proxy-authorization', 'proxy-authenticate', 'http2-settings']

t.test('ordinary request headers reach the function unchanged', async t => {
  const incoming: IncomingHttpHeaders = {
    'content-type': 'application/json',
    'content-length': '12',
    accept: 'application/json',
    'x-app-thing': 'blue',
    cookie: 'a=1; b=2',
    'user-agent': 'curl/8'
  }
  const out = buildUpstreamHeaders(incoming, context())
  t.match(out, incoming)
})

t.test('the gateway sets its own identity and forwarding headers', async t => {
  const out = buildUpstreamHeaders({ host: 'api.example.com' }, context())
  t.equal(out.host, 'fn.internal.example:8443', 'host is the upstream host, not the client one')
  t.equal(out['x-forwarded-for'], '203.0.113.7')
  t.equal(out['x-forwarded-host'], 'api.example.com')
  t.equal(out['x-forwarded-proto'], 'https')
  t.equal(out[IDENTITY_HEADERS.subject], 'alice')
  t.equal(out[IDENTITY_HEADERS.issuer], 'https://idp.example.com')
  t.equal(out[IDENTITY_HEADERS.requestId], 'req-123')
  t.same(IDENTITY_HEADERS, { subject: 'x-portcullis-subject', issuer: 'x-portcullis-issuer', requestId: 'x-portcullis-request-id' })
})

t.test('Forwarded is rebuilt by the gateway (RFC 7239), quoting what is not a token', async t => {
  t.equal(buildUpstreamHeaders({ host: 'api.example.com' }, context()).forwarded, 'for=203.0.113.7;proto=https;host=api.example.com')
  t.equal(buildUpstreamHeaders({}, { ...context(), clientIp: '2001:db8::1', host: 'api.example.com:8443' }).forwarded,
    'for="[2001:db8::1]";proto=https;host="api.example.com:8443"')
  t.equal(buildUpstreamHeaders({}, { ...context(), host: undefined }).forwarded, 'for=203.0.113.7;proto=https')
})

t.test('no x-forwarded-host when the client sent no Host', async t => {
  const out = buildUpstreamHeaders({}, { ...context(), host: undefined })
  t.notOk('x-forwarded-host' in out)
})

t.test('identity and forwarding headers sent by the client never reach the function', async t => {
  const forged: IncomingHttpHeaders = {
    host: 'evil.example',
    authorization: 'Bearer client.token.here',
    'x-forwarded-user': 'admin',
    'x-forwarded-for': '10.0.0.1',
    'x-forwarded-host': 'evil.example',
    'x-forwarded-proto': 'http',
    'x-forwarded-email': 'root@example.com',
    forwarded: 'for=10.0.0.1;by=evil',
    'x-portcullis-subject': 'admin',
    'x-portcullis-issuer': 'https://evil.example',
    'x-portcullis-request-id': 'forged',
    'x-portcullis-anything': 'x',
    'x-real-ip': '10.0.0.1',
    'x-client-ip': '10.0.0.1',
    'true-client-ip': '10.0.0.1',
    'x-original-url': '/admin',
    'x-rewrite-url': '/admin',
    'x-original-uri': '/admin',
    'x-http-method-override': 'DELETE',
    'x-http-method': 'DELETE',
    'x-method-override': 'DELETE',
    'remote-user': 'admin',
    'x-remote-user': 'admin',
    'x-user': 'admin',
    'x-user-id': '1',
    'x-authenticated-user': 'admin',
    'x-auth-request-user': 'admin',
    'x-ssl-client-cert': 'pem',
    'x-client-cert': 'pem',
    'x-amzn-oidc-identity': 'admin',
    'x-goog-authenticated-user-email': 'admin@example.com',
    'x-ms-client-principal-name': 'admin',
    'x-jwt-assertion': 'x.y.z',
    expect: '100-continue'
  }
  const out = buildUpstreamHeaders({ ...forged, accept: '*/*' }, context())
  const gatewaySet = new Set(['host', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'forwarded',
    IDENTITY_HEADERS.subject, IDENTITY_HEADERS.issuer, IDENTITY_HEADERS.requestId])
  for (const name of Object.keys(forged)) {
    if (gatewaySet.has(name)) t.not(out[name], forged[name], `${name} is the gateway's value`)
    else t.notOk(name in out, `${name} is dropped`)
  }
  t.same(Object.keys(out).sort(), [...gatewaySet, 'accept'].sort(), 'nothing else gets through')
  t.equal(out['x-forwarded-for'], '203.0.113.7')
  t.equal(out[IDENTITY_HEADERS.subject], 'alice')
})

t.test('a client cannot stack a second x-forwarded-for value', async t => {
  const out = buildUpstreamHeaders({ 'x-forwarded-for': ['10.0.0.1', '10.0.0.2'] } as IncomingHttpHeaders, context())
  t.equal(out['x-forwarded-for'], '203.0.113.7')
})

t.test('hop-by-hop headers are not forwarded to the function', async t => {
  const incoming: Record<string, string> = Object.fromEntries(HOP_BY_HOP.map(h => [h, 'x']))
  incoming.connection = 'keep-alive'
  const out = buildUpstreamHeaders({ ...incoming, accept: 'text/plain' }, context())
  for (const h of HOP_BY_HOP) t.notOk(h in out, `${h} dropped`)
  t.equal(out.accept, 'text/plain')
})

t.test('headers nominated by Connection are not forwarded to the function', async t => {
  const out = buildUpstreamHeaders({
    connection: 'X-App-Secret,  x-debug , close',
    'x-app-secret': 's3cret',
    'x-debug': '1',
    'x-app-thing': 'kept'
  }, context())
  t.notOk('x-app-secret' in out)
  t.notOk('x-debug' in out)
  t.equal(out['x-app-thing'], 'kept')
})

t.test('policy-provided upstream headers are added', async t => {
  const out = buildUpstreamHeaders({ accept: '*/*', 'x-tenant': 'from-client' }, context({ 'x-tenant': 'acme', 'x-scope': 'orders:read' }))
  t.equal(out['x-tenant'], 'acme', 'the policy value replaces the client value')
  t.equal(out['x-scope'], 'orders:read')
  t.equal(out.accept, '*/*')
})

t.test('a client alias of a header the policy sets never reaches the function beside it', async t => {
  // A function that reads "_" or "." as "-" would see two x-tenant values, the client's possibly read last.
  const out = buildUpstreamHeaders({ x_tenant: 'evil', 'x.scope': 'admin', 'x-other': 'kept' }, context({ 'x-tenant': 'acme', 'x-scope': 'orders:read' }))
  t.notOk('x_tenant' in out, 'x_tenant dropped')
  t.notOk('x.scope' in out, 'x.scope dropped')
  t.equal(out['x-tenant'], 'acme')
  t.equal(out['x-scope'], 'orders:read')
  t.equal(out['x-other'], 'kept', 'an alias of nothing the policy set is kept')
})

t.test('the gateway identity always wins over policy-provided headers', async t => {
  // decision.ts refuses these names; this guards the forward stage on its own as well.
  const out = buildUpstreamHeaders({}, context({ 'x-portcullis-subject': 'mallory', 'x-portcullis-request-id': 'x' }))
  t.equal(out[IDENTITY_HEADERS.subject], 'alice')
  t.equal(out[IDENTITY_HEADERS.requestId], 'req-123')
})

t.test('response headers: hop-by-hop and Connection-nominated ones are dropped', async t => {
  const out = filterResponseHeaders({
    ...Object.fromEntries(HOP_BY_HOP.map(h => [h, 'x'])),
    connection: 'x-internal-trace, Keep-Alive',
    'x-internal-trace': 'abc',
    'content-type': 'application/json',
    'content-length': '42',
    'cache-control': 'no-store',
    'set-cookie': ['a=1', 'b=2'],
    'x-app-thing': 'blue',
    etag: '"v1"',
    'x-missing': undefined
  })
  t.same(out, {
    'content-type': 'application/json',
    'content-length': '42',
    'cache-control': 'no-store',
    'set-cookie': ['a=1', 'b=2'],
    'x-app-thing': 'blue',
    etag: '"v1"'
  })
})

t.test('a Connection header given as several values nominates all of them', async t => {
  const out = filterResponseHeaders({ connection: ['x-a', 'x-b'], 'x-a': '1', 'x-b': '2', 'x-c': '3' })
  t.same(out, { 'x-c': '3' })
})
