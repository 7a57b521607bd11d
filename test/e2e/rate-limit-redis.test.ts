import t from 'tap'
import type { Test } from 'tap'
import { upstreamCalls } from '../helpers/authn.js'
import type { DemoHarness } from '../helpers/demo.js'
import { metricValue, startLimitedGateway } from '../helpers/rate-limit.js'
import { startRedis, type RedisServer } from '../helpers/redis.js'

// The gateway with its limits in a real Redis, and that Redis failing under it: each route does what
// its onStoreError says, answers without waiting on Redis, and recovers by itself.

const HOUR = 3600
const ROUTES = [
  // strict: fails closed (the default); lenient: falls back to a per-process limit (smooth, GCRA), of
  // half its limit (localFallbackShare's default).
  { id: 'strict', prefix: '/hello', methods: ['GET'], upstream: 'demo-function', rateLimit: { max: 50, windowSeconds: HOUR } },
  { id: 'lenient', prefix: '/orders', methods: ['GET'], upstream: 'demo-function', rateLimit: { max: 6, windowSeconds: HOUR, algorithm: 'gcra', onStoreError: 'local' } },
  { id: 'admin', prefix: '/admin', methods: ['GET'], upstream: 'demo-function' }
]

async function start (t: Test): Promise<{ demo: DemoHarness, redis: RedisServer, token: string }> {
  const redis = await startRedis(t)
  const demo = await startLimitedGateway(t, { store: { type: 'redis', url: redis.url, commandTimeoutMs: 100 }, preAuth: { max: 1000, windowSeconds: HOUR } }, ROUTES)
  // The client connects in the background; wait until the gateway says it reaches Redis.
  while (!(await readyDetail(demo)).up) await new Promise(resolve => setTimeout(resolve, 50))
  return { demo, redis, token: await demo.token({ sub: 'erin' }) }
}

/** The store's state as /status shows it. */
async function readyDetail (demo: DemoHarness): Promise<{ type: string, up: boolean, last_error?: string }> {
  const res = await demo.client.send(`${demo.adminUrl}/status`)
  return res.json<{ rate_limit_store: { type: string, up: boolean } }>().rate_limit_store
}

/** While Redis is unusable: what each kind of route and each earlier stage answers. */
async function expectOutageBehaviour (t: Test, demo: DemoHarness, token: string, lenientUsed: number): Promise<void> {
  const before = await upstreamCalls(demo)
  const strict = await demo.client.send(`${demo.url}/hello`, { token })
  t.equal(strict.status, 503, 'fail-closed route: 503')
  t.equal(strict.json().code, 'GW_ERR_RATE_LIMIT_STORE')
  t.equal(strict.headers['retry-after'], '1')
  t.equal(await upstreamCalls(demo), before, 'and nothing forwarded')
  // The lenient route keeps a limit of its own in this process: half of 6, counting from empty.
  const lenient = []
  for (let i = 0; i < 5; i++) lenient.push((await demo.client.send(`${demo.url}/orders`, { token: await demo.token({ sub: `fallback-${lenientUsed}` }) })).status)
  t.strictSame(lenient, [200, 200, 200, 429, 429], 'local route: a per-process limit')
  t.equal((await demo.client.send(`${demo.url}/hello`, { token: 'not-a-token' })).status, 401, 'authentication unaffected')
  t.equal((await demo.client.send(`${demo.url}/admin`, { token })).status, 403, 'policy unaffected')
  const ready = await demo.client.send(`${demo.adminUrl}/readyz`)
  t.equal(ready.status, 200, 'still ready: routes decide what an outage means')
  t.match(ready.json<{ details: { rate_limit_store: { ok: boolean, detail: string } } }>().details.rate_limit_store, { ok: true, detail: /^redis down/ },
    '/readyz shows the store down, without failing the check')
  t.equal(await metricValue(demo, 'portcullis_ratelimit_store_up'), 0)
}

t.test('Redis stopped mid-test, then restarted: each route as configured, recovery without a restart', async t => {
  const { demo, redis, token } = await start(t)
  t.equal((await demo.client.send(`${demo.url}/hello`, { token })).status, 200)
  t.same(await readyDetail(demo), { type: 'redis', up: true })
  await redis.stop()
  await expectOutageBehaviour(t, demo, token, 0)
  t.ok(await metricValue(demo, 'portcullis_ratelimit_store_errors_total{route="strict",action="fail_closed"}') >= 1)
  t.equal(await metricValue(demo, 'portcullis_ratelimit_store_errors_total{route="lenient",action="local"}'), 5)
  await redis.start()
  while (!(await readyDetail(demo)).up) await new Promise(resolve => setTimeout(resolve, 50))
  const after = await demo.client.send(`${demo.url}/hello`, { token })
  t.equal(after.status, 200, 'fail-closed route serves again')
  t.match(after.headers.ratelimit, /^"strict";r=49;/, 'counting afresh in the restarted (empty) Redis')
  t.equal(await metricValue(demo, 'portcullis_ratelimit_store_up'), 1)
})

t.test('Redis paused (SIGSTOP): answers come while it hangs; nothing queues up for it; it resumes', async t => {
  const { demo, redis, token } = await start(t)
  for (let i = 0; i < 3; i++) t.equal((await demo.client.send(`${demo.url}/hello`, { token })).status, 200)
  redis.pause()
  t.teardown(() => redis.resume())
  await expectOutageBehaviour(t, demo, token, 1)
  // Many more requests while it hangs: every one answered (the test would stall otherwise).
  const statuses = new Map<number, number>()
  for (let wave = 0; wave < 10; wave++) {
    const res = await Promise.all(Array.from({ length: 20 }, async () => demo.client.send(`${demo.url}/hello`, { token })))
    for (const r of res) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1)
  }
  t.strictSame([...statuses], [[503, 200]], '200 requests, 200 answers of 503 while Redis hangs')
  redis.resume()
  while (!(await readyDetail(demo)).up) await new Promise(resolve => setTimeout(resolve, 50))
  const after = await demo.client.send(`${demo.url}/hello`, { token })
  t.equal(after.status, 200)
  // Only the requests made before the gateway saw the hang were ever sent: 3 + 1 + this one.
  t.match(after.headers.ratelimit, /^"strict";r=4[56];/, 'the count kept in Redis survived, with no backlog replayed into it')
})
