import t from 'tap'
import type { FastifyRequest } from 'fastify'
import { createPolicyInputWriter } from '../../../src/pipeline/authorize/input.js'
import type { ClientCertificate, Principal, RouteContext } from '../../../src/pipeline/types.js'

/*
 * The policy input is written as JSON text, part by part, with the route and a token's principal
 * serialised once: what the policy (and the decision log, which parses the same text) sees must be
 * exactly the document PolicyInput describes, whatever the request carries.
 */

const route: RouteContext = {
  id: 'orders', prefix: '/orders', upstream: 'fn', stripPrefix: false, authentication: 'jwt', maxBodyBytes: 1024,
  metadata: { team: 'payments', tier: 2, tags: ['a', 'b'] }
}

function request (over: Partial<Record<string, unknown>> = {}): FastifyRequest {
  return {
    method: 'POST',
    raw: { httpVersion: '1.1' },
    canonicalPath: '/orders/caf%C3%A9/%2F',
    rawQuery: '',
    headers: { host: 'gw.test', 'user-agent': 'curl/8', accept: ['a/b', 'c/d'] },
    clientAddress: '203.0.113.7',
    clientCertificate: null,
    principal: null,
    ...over
  } as unknown as FastifyRequest
}

const jwt = (claims: Record<string, unknown>): Principal =>
  ({ type: 'jwt', issuerId: 'idp', issuer: 'https://idp.test', subject: 'alice', claims, certificate: null })

t.test('every field of the input, in PolicyInput\'s shape', async t => {
  const write = createPolicyInputWriter()
  const claims = { sub: 'alice', roles: ['writer'], 'é"\\': 'quoted \u2028 text' }
  const input = JSON.parse(write(request({ principal: jwt(claims) }), route, 1_700_000_000_123)) as unknown
  t.strictSame(input, {
    method: 'POST',
    protocol: 'HTTP/1.1',
    path: '/orders/caf%C3%A9/%2F',
    segments: ['orders', 'café', '/'],
    query: {},
    headers: { host: 'gw.test', 'user-agent': 'curl/8', accept: 'a/b, c/d' },
    client: { ip: '203.0.113.7' },
    tls: { client_certificate: null },
    principal: { type: 'jwt', issuer: 'https://idp.test', subject: 'alice', claims },
    route: { id: 'orders', metadata: { team: 'payments', tier: 2, tags: ['a', 'b'] } },
    time_ns: 1_700_000_000_123_000_000
  })
})

t.test('credentials and HTTP/2 pseudo-headers never reach the policy', async t => {
  const write = createPolicyInputWriter()
  const headers = {
    ':method': 'GET', ':path': '/orders', authorization: 'Bearer x', 'proxy-authorization': 'Basic y', cookie: 'sid=z',
    'x-api-key': 'k', 'x-amz-security-token': 's', 'x-kept': 'yes', __proto__x: 'no-op'
  }
  const input = JSON.parse(write(request({ headers, raw: { httpVersion: '2.0', stream: {} } }), route, 0)) as { headers: unknown }
  t.strictSame(input.headers, { 'x-kept': 'yes', __proto__x: 'no-op' })
})

t.test('query parameters: repeated ones kept in order, JavaScript\'s own names are parameters like any other', async t => {
  const write = createPolicyInputWriter()
  const input = JSON.parse(write(request({ rawQuery: 'a=1&b=2&a=3&__proto__=p&constructor=c&toString=s&e=%C3%A9' }), route, 0)) as { query: unknown }
  // As text: an object with an own __proto__ key compares oddly, and the text is what the policy reads.
  t.equal(JSON.stringify(input.query), '{"a":["1","3"],"b":["2"],"__proto__":["p"],"constructor":["c"],"toString":["s"],"e":["é"]}')
})

t.test('claims named __proto__, constructor or prototype are dropped at any depth', async t => {
  const write = createPolicyInputWriter()
  const claims = JSON.parse('{"sub":"alice","__proto__":{"admin":true},"constructor":{"prototype":{"admin":true}},' +
    '"profile":{"name":"a","prototype":1,"groups":[{"constructor":{"x":1},"id":"g1"}]}}') as Record<string, unknown>
  const text = write(request({ principal: jwt(claims) }), route, 0)
  t.notMatch(text, /__proto__|constructor|prototype|admin/)
  t.strictSame((JSON.parse(text) as { principal: { claims: unknown } }).principal.claims, { sub: 'alice', profile: { name: 'a', groups: [{ id: 'g1' }] } })
})

t.test('a token\'s principal is serialised once; other principals and routes each get their own', async t => {
  const write = createPolicyInputWriter()
  const alice = jwt({ sub: 'alice', n: 1 })
  const first = write(request({ principal: alice }), route, 0)
  // The same cached principal, copied with this connection's certificate, as the authenticate stage does.
  t.equal(write(request({ principal: { ...alice, certificate: null } }), route, 0), first)
  const bob = { ...jwt({ sub: 'bob' }), subject: 'bob' }
  t.match(JSON.parse(write(request({ principal: bob }), route, 0)), { principal: { subject: 'bob', claims: { sub: 'bob' } } })
  const other: RouteContext = { ...route, id: 'other', metadata: {} }
  t.match(JSON.parse(write(request({ principal: alice }), other, 0)), { route: { id: 'other', metadata: {} }, principal: { subject: 'alice' } })
})

t.test('a client certificate and its principal', async t => {
  const write = createPolicyInputWriter()
  const cert: ClientCertificate = {
    subject: 'CN=svc', issuer: 'CN=ca', serialNumber: '01', notAfter: '2030-01-01T00:00:00.000Z',
    sans: { dns: ['svc.test'], uri: ['spiffe://test/svc'], email: [], ip: [] }, spiffeId: 'spiffe://test/svc', thumbprintSha256: 'abc'
  }
  const principal: Principal = { type: 'mtls', issuer: 'CN=ca', subject: 'spiffe://test/svc', claims: {}, certificate: cert }
  const input = JSON.parse(write(request({ principal, clientCertificate: cert }), route, 0)) as unknown
  t.match(input, {
    tls: { client_certificate: { subject: 'CN=svc', issuer: 'CN=ca', serial_number: '01', not_after: '2030-01-01T00:00:00.000Z', sans: cert.sans, spiffe_id: 'spiffe://test/svc', thumbprint_sha256: 'abc' } },
    principal: { type: 'mtls', subject: 'spiffe://test/svc', claims: {} }
  })
})

t.test('each path\'s own path and segments, also past the paths the writer keeps written', async t => {
  const write = createPolicyInputWriter()
  const read = (path: string): { path: string, segments: string[] } => JSON.parse(write(request({ canonicalPath: path }), route, 1)) as { path: string, segments: string[] }
  t.strictSame(read('/orders/a%20b'), { ...read('/orders/a%20b'), path: '/orders/a%20b', segments: ['orders', 'a b'] })
  for (let i = 0; i < 1500; i++) {
    const got = read(`/orders/${i}%2F`)
    if (got.path !== `/orders/${i}%2F` || got.segments[1] !== `${i}/`) t.fail(`path ${i} got ${JSON.stringify(got)}`)
  }
  t.strictSame(read('/orders/a%20b').segments, ['orders', 'a b'], 'a path written long before, forgotten since')
  t.strictSame(read('/').segments, [])
})
