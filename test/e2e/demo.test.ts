import t from 'tap'
import { readFileSync } from 'node:fs'
import { connect } from 'node:tls'
import { httpsClient } from '../helpers/http.js'
import { startDemoHarness } from '../helpers/demo.js'
import { DEMO_RATE_LIMIT } from '../../src/demo/run.js'
import { loadCa } from '../../src/tls/pki.js'

// The demo behaviours promised in the README, through the real pipeline over real sockets and TLS.

t.test('no token is 401 with a Bearer challenge, and nothing reaches the function', async t => {
  const demo = await startDemoHarness(t)
  const res = await demo.client.send(`${demo.url}/hello`)
  t.equal(res.status, 401)
  t.match(res.headers['www-authenticate'], /^Bearer realm="portcullis"$/)
  t.same(Object.keys(res.json()).sort(), ['code', 'error', 'request_id'])
  t.equal(res.json().code, 'GW_ERR_AUTHN_MISSING')
  const metrics = await demo.client.send(`${demo.adminUrl}/metrics`)
  t.notMatch(metrics.text, /portcullis_upstream_duration_seconds_count\{/, 'no upstream call was made')
})

t.test('bad, tampered, expired and foreign tokens are 401', async t => {
  const demo = await startDemoHarness(t)
  const good = await demo.token()
  const [h, p, s] = good.split('.') as [string, string, string]
  const claims = JSON.parse(Buffer.from(p, 'base64url').toString()) as Record<string, unknown>
  const forged = `${h}.${Buffer.from(JSON.stringify({ ...claims, roles: ['admin'] })).toString('base64url')}.${s}`
  const cases: Array<[string, string, string]> = [
    ['garbage', 'not-a-jwt', 'GW_ERR_AUTHN_MALFORMED'],
    ['tampered payload', forged, 'GW_ERR_AUTHN_INVALID'],
    ['expired', await demo.token({ ttl: -60 }), 'GW_ERR_AUTHN_EXPIRED'],
    ['wrong audience', await demo.token({ audience: 'someone-else' }), 'GW_ERR_AUTHN_INVALID'],
    ['alg none', `${Buffer.from('{"alg":"none"}').toString('base64url')}.${p}.`, 'GW_ERR_AUTHN_MALFORMED']
  ]
  for (const [name, token, code] of cases) {
    const res = await demo.client.send(`${demo.url}/hello`, { token })
    t.equal(res.status, 401, name)
    t.equal(res.json().code, code, `${name}: ${code}`)
    t.match(res.headers['www-authenticate'], /error="invalid_(token|request)"/, `${name}: challenge names the error`)
  }
})

t.test('a valid token reaches the function over mutual TLS with gateway-set identity', async t => {
  const demo = await startDemoHarness(t)
  const res = await demo.client.send(`${demo.url}/hello/world?x=1&y=%20z`, {
    token: await demo.token({ sub: 'alice' }),
    headers: {
      'x-forwarded-user': 'mallory',
      'x-forwarded-for': '6.6.6.6',
      'x-portcullis-subject': 'mallory',
      forwarded: 'for=6.6.6.6',
      'x-http-method-override': 'DELETE',
      'x-app-header': 'kept'
    }
  })
  t.equal(res.status, 200)
  const seen = res.json<{ method: string, path: string, headers: Record<string, string>, gateway: { verified: boolean, uri_sans: string[] } }>()
  t.equal(seen.method, 'GET')
  t.equal(seen.path, '/hello/world?x=1&y=%20z', 'path and query reach the function byte for byte')
  t.equal(seen.headers['x-portcullis-subject'], 'alice')
  t.equal(seen.headers['x-forwarded-for'], '127.0.0.1')
  t.equal(seen.headers['x-forwarded-user'], undefined, 'client-sent identity header stripped')
  t.equal(seen.headers.forwarded, `for=127.0.0.1;proto=https;host="${new URL(demo.url).host}"`, 'Forwarded is the gateway\'s own')
  t.equal(seen.headers['x-http-method-override'], undefined)
  t.equal(seen.headers.authorization, undefined, 'the client token is not passed on')
  t.equal(seen.headers['x-app-header'], 'kept')
  t.equal(seen.headers['x-portcullis-roles'], 'reader', 'policy-set header reaches the function')
  t.ok(seen.gateway.verified)
  t.same(seen.gateway.uri_sans, ['spiffe://portcullis.demo/gateway'])
})

t.test('orders: readers read, writers write, policy denials are 403', async t => {
  const demo = await startDemoHarness(t)
  const reader = await demo.token({ sub: 'rita', roles: ['reader'] })
  const writer = await demo.token({ sub: 'walt', roles: ['writer'] })
  t.equal((await demo.client.send(`${demo.url}/orders`, { token: reader })).status, 200)
  const denied = await demo.client.send(`${demo.url}/orders`, { method: 'POST', token: reader, body: '{"item":1}', headers: { 'content-type': 'application/json' } })
  t.equal(denied.status, 403)
  t.equal(denied.json().code, 'GW_ERR_AUTHZ_DENIED')
  const created = await demo.client.send(`${demo.url}/orders`, { method: 'POST', token: writer, body: '{"item":1}', headers: { 'content-type': 'application/json' } })
  t.equal(created.status, 201)
  t.equal(created.json().body_bytes, 10, 'the body is streamed to the function')
})

t.test('admin routes are for admins only', async t => {
  const demo = await startDemoHarness(t)
  for (const role of ['reader', 'writer']) {
    const res = await demo.client.send(`${demo.url}/admin/users`, { token: await demo.token({ roles: [role] }) })
    t.equal(res.status, 403, role)
  }
  const res = await demo.client.send(`${demo.url}/admin/users`, { token: await demo.token({ sub: 'root', roles: ['admin'] }) })
  t.equal(res.status, 200)
})

t.test('unknown routes are 404 and ambiguous paths 400, before any authentication', async t => {
  const demo = await startDemoHarness(t)
  const token = await demo.token()
  t.equal((await demo.client.send(`${demo.url}/nowhere`, { token })).status, 404)
  t.equal((await demo.client.send(`${demo.url}/hellox`, { token })).status, 404, 'prefix match is per segment')
  for (const path of ['/hello/..%2fadmin', '/hello/%2e%2e/admin', '//hello', '/hello/%2Fx']) {
    const res = await demo.client.send(`${demo.url}${path}`, { token })
    t.equal(res.status, 400, path)
    t.equal(res.json().code, 'GW_ERR_GUARD_BAD_PATH')
  }
})

t.test('many requests from one subject get 429 with Retry-After; another subject is unaffected', async t => {
  const demo = await startDemoHarness(t)
  const token = await demo.token({ sub: 'hasty' })
  const statuses: number[] = []
  let limited
  for (let i = 0; i < DEMO_RATE_LIMIT.max + 2; i++) {
    const res = await demo.client.send(`${demo.url}/hello`, { token })
    statuses.push(res.status)
    if (res.status === 429) limited = res
  }
  t.same(statuses.slice(0, DEMO_RATE_LIMIT.max), Array(DEMO_RATE_LIMIT.max).fill(200))
  t.same(statuses.slice(DEMO_RATE_LIMIT.max), [429, 429])
  t.ok(limited)
  t.match(limited!.headers['retry-after'], /^\d+$/)
  t.equal(limited!.json().code, 'GW_ERR_RATE_LIMITED')
  const other = await demo.client.send(`${demo.url}/hello`, { token: await demo.token({ sub: 'patient' }) })
  t.equal(other.status, 200)
  const metrics = await demo.client.send(`${demo.adminUrl}/metrics`)
  t.match(metrics.text, /portcullis_rate_limited_total\{route="hello"\} 2/)
})

t.test('admin listener: metrics, health and readiness', async t => {
  const demo = await startDemoHarness(t)
  await demo.client.send(`${demo.url}/hello`, { token: await demo.token() })
  await demo.client.send(`${demo.url}/orders`, { method: 'DELETE', token: await demo.token() })
  const metrics = await demo.client.send(`${demo.adminUrl}/metrics`)
  t.equal(metrics.status, 200)
  t.match(metrics.text, /portcullis_requests_total\{route="hello",method="GET",outcome="forwarded",status_class="2xx"\} 1/)
  t.match(metrics.text, /portcullis_policy_decisions_total\{route="orders",result="deny"\} 1/)
  t.match(metrics.text, /portcullis_upstream_duration_seconds_count\{upstream="demo-function",status_class="2xx"\} 1/)
  t.match(metrics.text, /portcullis_policy_bundle_loaded 1/)
  const names = metrics.text.split('\n').filter(l => l.startsWith('# TYPE ')).map(l => l.split(' ')[2])
  t.ok(names.every(n => n?.startsWith('portcullis_')), 'every metric is portcullis_-prefixed')
  t.same((await demo.client.send(`${demo.adminUrl}/healthz`)).json(), { status: 'ok' })
  const ready = await demo.client.send(`${demo.adminUrl}/readyz`)
  t.equal(ready.status, 200)
  t.same(ready.json().checks, { policy: true, 'issuer:demo': true, 'certificate:listener': true, accepting: true, rate_limit_store: true })
})

t.test('the function refuses a caller without the gateway client certificate', async t => {
  const demo = await startDemoHarness(t)
  const { port } = new URL(demo.fn.url)
  const outcome = await new Promise<string>(resolve => {
    const socket = connect({ host: '127.0.0.1', port: Number(port), ca: readFileSync(demo.paths.caCert), servername: 'localhost' }, () => {
      socket.write('GET /hello HTTP/1.1\r\nHost: fn\r\n\r\n')
    })
    socket.on('data', d => resolve(`answered: ${String(d).split('\r\n')[0]}`))
    socket.on('error', err => resolve(`refused: ${err.message}`))
    socket.on('close', () => resolve('closed'))
  })
  t.match(outcome, /refused: .*certificate required|closed/, outcome)

  // A client certificate from the same CA but another identity is rejected by the function as well.
  const other = await loadCa({
    cert: readFileSync(demo.paths.caCert, 'utf8'),
    key: readFileSync(`${demo.paths.dir}/ca.key`, 'utf8')
  }).then(ca => ca.issue({ commonName: 'intruder', uris: ['spiffe://portcullis.demo/intruder'], usage: 'client' }))
  const res = await httpsClient(t, demo.paths.caCert, other).send(`${demo.fn.url}/hello`)
  t.equal(res.status, 403)
})
