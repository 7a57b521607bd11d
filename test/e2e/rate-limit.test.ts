import t from 'tap'
import { authnFailures, upstreamCalls } from '../helpers/authn.js'
import { metricValue, startLimitedGateway } from '../helpers/rate-limit.js'

// The rate-limit stage through the real gateway: what a caller sees, and what reaches the function.

const HOUR = 3600

t.test('IETF RateLimit fields on every answer, then 429 with Retry-After; only allowed requests reach the function', async t => {
  const demo = await startLimitedGateway(t, { default: { max: 3, windowSeconds: HOUR } })
  const token = await demo.token({ sub: 'carol' })
  const seen = []
  for (let i = 0; i < 5; i++) seen.push(await demo.client.send(`${demo.url}/hello`, { token }))
  t.strictSame(seen.map(r => r.status), [200, 200, 200, 429, 429])
  t.equal(seen[0]!.headers['ratelimit-policy'], `"hello";q=3;w=${HOUR}`)
  t.strictSame(seen.slice(0, 3).map(r => String(r.headers.ratelimit).replace(/;t=\d+$/, '')), ['"hello";r=2', '"hello";r=1', '"hello";r=0'])
  const refused = seen[3]!
  t.equal(refused.json().code, 'GW_ERR_RATE_LIMITED')
  t.match(refused.headers['retry-after'], /^\d+$/)
  t.ok(Number(refused.headers['retry-after']) > HOUR - 60 && Number(refused.headers['retry-after']) <= HOUR, 'retry when the window ends')
  t.match(refused.headers.ratelimit, /^"hello";r=0;t=\d+$/)
  t.equal(await upstreamCalls(demo), 3, 'the function saw exactly the three allowed requests')
  t.equal(await metricValue(demo, 'portcullis_rate_limited_total{route="hello"}'), 2)
})

t.test('path variants do not open another bucket', async t => {
  const demo = await startLimitedGateway(t, { default: { max: 2, windowSeconds: HOUR } })
  const token = await demo.token({ sub: 'dave' })
  t.equal((await demo.client.send(`${demo.url}/hello`, { token })).status, 200)
  t.equal((await demo.client.send(`${demo.url}/hello/a?x=1`, { token })).status, 200)
  // The same route under another spelling: counted in the same bucket, or refused before any bucket.
  const variants: Array<[string, number]> = [
    ['/hello', 429], ['/hello/', 429], ['/hello/b', 429], ['/hello?y=2', 429],
    ['//hello', 400], ['/hello//b', 400], ['/hello/./b', 400], ['/hello/%2e%2e/hello', 400], ['/HELLO', 404], ['/Hello/b', 404]
  ]
  const before = await upstreamCalls(demo)
  for (const [path, status] of variants) {
    t.equal((await demo.client.send(`${demo.url}${path}`, { token })).status, status, path)
  }
  t.equal(await upstreamCalls(demo), before, 'none of the variants reached the function')
})

t.test('each subject has its own budget on each route, however many there are', async t => {
  const demo = await startLimitedGateway(t, { default: { max: 3, windowSeconds: HOUR } })
  const subjects = Array.from({ length: 40 }, (_, i) => `user-${i}`)
  const allowed = await Promise.all(subjects.map(async sub => {
    const token = await demo.token({ sub })
    let ok = 0
    for (let i = 0; i < 5; i++) if ((await demo.client.send(`${demo.url}/hello`, { token })).status === 200) ok++
    return ok
  }))
  t.strictSame(allowed, subjects.map(() => 3), 'three each, no more, no less')
  const token = await demo.token({ sub: 'user-0' })
  t.equal((await demo.client.send(`${demo.url}/orders`, { token })).status, 200, 'another route is another budget')
  t.equal(await upstreamCalls(demo), 40 * 3 + 1)
})

t.test('pre-auth limit per client IP: a flood of bogus tokens stops before authentication; forwarded headers do not dodge it', async t => {
  const demo = await startLimitedGateway(t, { preAuth: { max: 5, windowSeconds: HOUR } })
  const spoofs = ['1.2.3.4', '5.6.7.8', '9.9.9.9', '10.0.0.1', '192.0.2.1', '198.51.100.7', '203.0.113.9']
  const statuses = []
  for (const [i, ip] of spoofs.entries()) {
    const res = await demo.client.send(`${demo.url}/hello`, {
      token: `bogus.${i}.token`,
      headers: { 'x-forwarded-for': ip, forwarded: `for=${ip}`, 'x-real-ip': ip, 'true-client-ip': ip }
    })
    statuses.push(res.status)
    if (res.status === 429) {
      t.equal(res.json().code, 'GW_ERR_RATE_LIMITED')
      t.match(res.headers['retry-after'], /^\d+$/)
    }
  }
  t.strictSame(statuses, [401, 401, 401, 401, 401, 429, 429])
  t.strictSame(await authnFailures(demo, 'hello'), { malformed: 5 }, 'only the first five tokens were looked at')
  t.equal(await metricValue(demo, 'portcullis_ratelimit_pre_auth_limited_total'), 2)
  const good = await demo.client.send(`${demo.url}/hello`, { token: await demo.token() })
  t.equal(good.status, 429, 'a valid token from the same address waits too')
})

t.test('behind a trusted proxy, X-Forwarded-For names the client, read from the right', async t => {
  const demo = await startLimitedGateway(t, { preAuth: { max: 2, windowSeconds: HOUR }, trustedProxies: ['127.0.0.1'] })
  const token = await demo.token()
  const send = async (xff: string): Promise<number> => (await demo.client.send(`${demo.url}/hello`, { token, headers: { 'x-forwarded-for': xff } })).status
  t.strictSame([await send('203.0.113.1'), await send('203.0.113.1'), await send('203.0.113.1')], [200, 200, 429])
  t.equal(await send('203.0.113.2'), 200, 'another client behind the proxy has its own budget')
  // A client that prepends its own entries is still the address the proxy appended.
  t.equal(await send('198.51.100.1, 203.0.113.1'), 429)
  t.equal(await send('10.9.9.9, 203.0.113.1'), 429)
})

t.test('tiers, bucket keys and costs from the policy decision', async t => {
  const demo = await startLimitedGateway(t, {
    default: { max: 100, windowSeconds: HOUR },
    tiers: { free: { max: 2, windowSeconds: HOUR }, pro: { max: 5, windowSeconds: HOUR, algorithm: 'gcra' } }
  })
  const count = async (claims: Record<string, unknown>, sub: string, n: number): Promise<number[]> => {
    const token = await demo.token({ sub, claims })
    const out = []
    for (let i = 0; i < n; i++) out.push((await demo.client.send(`${demo.url}/hello`, { token })).status)
    return out
  }
  t.strictSame(await count({ tier: 'free' }, 'f', 3), [200, 200, 429], 'free: 2')
  t.strictSame(await count({ tier: 'pro' }, 'p', 6), [200, 200, 200, 200, 200, 429], 'pro: 5')
  const pro = await demo.client.send(`${demo.url}/orders`, { token: await demo.token({ sub: 'p2', claims: { tier: 'pro' } }) })
  t.equal(pro.headers['ratelimit-policy'], `"pro";q=5;w=${HOUR}`, 'the tier names the policy')
  // Two subjects of one tenant share the tenant's budget.
  const a = await count({ tier: 'free', tenant: 'acme' }, 'a', 1)
  const b = await count({ tier: 'free', tenant: 'acme' }, 'b', 2)
  t.strictSame([...a, ...b], [200, 200, 429], 'tenant acme: 2 in all')
  t.strictSame(await count({ tier: 'pro', cost: 2 }, 'costly', 3), [200, 200, 429], 'cost 2 against 5: two requests')
  const before = await upstreamCalls(demo)
  const unknown = await demo.client.send(`${demo.url}/hello`, { token: await demo.token({ sub: 'g', claims: { tier: 'gold' } }) })
  t.equal(unknown.status, 500)
  t.equal(unknown.json().code, 'GW_ERR_RATE_LIMIT_TIER')
  const malformed = await demo.client.send(`${demo.url}/hello`, { token: await demo.token({ sub: 'm', claims: { cost: 0 } }) })
  t.equal(malformed.json().code, 'GW_ERR_AUTHZ_BAD_DECISION', 'a malformed hint denies')
  t.equal(await upstreamCalls(demo), before, 'neither reached the function')
})
