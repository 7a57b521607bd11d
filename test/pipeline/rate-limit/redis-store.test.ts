import t from 'tap'
import type { Test } from 'tap'
import pino from 'pino'
import { createRedisStore } from '../../../src/pipeline/rate-limit/redis-store.js'
import type { LimitSpec } from '../../../src/pipeline/rate-limit/algorithms.js'
import { startRedis, type RedisServer } from '../../helpers/redis.js'

// The Redis store against a real redis-server: exact under concurrency, and bounded when Redis fails.

const log = pino({ level: 'silent' })

async function storeOn (t: Test, redis: RedisServer, commandTimeoutMs = 200, failuresBeforeDown = 3) {
  const states: boolean[] = []
  const store = createRedisStore({ type: 'redis', url: redis.url, commandTimeoutMs, failuresBeforeDown, localFallbackShare: 0.5, keyPrefix: '' }, log, { onState: up => states.push(up) })
  t.teardown(() => store.close())
  while (!store.up) await new Promise(resolve => setTimeout(resolve, 20))
  return { store, states }
}

for (const algorithm of ['fixed-window', 'gcra'] as const) {
  t.test(`${algorithm}: 300 concurrent requests against max 37 allow exactly 37`, async t => {
    const redis = await startRedis(t)
    const { store } = await storeOn(t, redis)
    const spec: LimitSpec = { algorithm, max: 37, windowMs: 3_600_000, burst: 37 }
    const verdicts = await Promise.all(Array.from({ length: 300 }, async () => store.consume('k', 1, spec)))
    t.equal(verdicts.filter(v => v.allowed).length, 37)
    t.ok(verdicts.filter(v => !v.allowed).every(v => v.retryAfterMs > 0), 'every refusal says when to retry')
    const costly = await Promise.all(Array.from({ length: 20 }, async () => store.consume('c', 5, spec)))
    t.equal(costly.filter(v => v.allowed).length, 7, 'cost 5: seven fit in 37')
  })
}

t.test('a key holding something else is an odd reply: a store error, never a verdict', async t => {
  const redis = await startRedis(t)
  const { store } = await storeOn(t, redis)
  await redis.command('LPUSH odd x')
  await t.rejects(store.consume('odd', 1, { algorithm: 'gcra', max: 5, windowMs: 1000, burst: 5 }), /WRONGTYPE/)
})

t.test('Redis stopped: refused at once while down, used again after it restarts', async t => {
  const redis = await startRedis(t)
  const { store, states } = await storeOn(t, redis)
  const spec: LimitSpec = { algorithm: 'fixed-window', max: 100, windowMs: 60_000, burst: 100 }
  t.ok((await store.consume('k', 1, spec)).allowed)
  await redis.stop()
  await t.rejects(store.consume('k', 1, spec), 'the first request after the outage fails')
  await t.rejects(store.consume('k', 1, spec), { name: 'StoreDownError' }, 'later ones are not even sent')
  t.notOk(store.up)
  await redis.start()
  while (!store.up) await new Promise(resolve => setTimeout(resolve, 50))
  t.ok((await store.consume('k', 1, spec)).allowed, 'working again, no restart')
  t.strictSame(states, [true, false, true])
})

t.test('Redis paused (SIGSTOP): requests are answered while it hangs, and nothing piles up for it', async t => {
  const redis = await startRedis(t)
  const { store } = await storeOn(t, redis, 100)
  const spec: LimitSpec = { algorithm: 'gcra', max: 1000, windowMs: 60_000, burst: 1000 }
  await store.consume('k', 1, spec)
  const scripts = async (): Promise<number> => {
    const stats = await redis.command('INFO commandstats')
    return [...stats.matchAll(/^cmdstat_eval(?:sha)?:calls=(\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0)
  }
  const before = await scripts()
  redis.pause()
  t.teardown(() => redis.resume())
  // Ten waves of 50: only the first three can reach Redis (each times out, one failure per wave: the
  // third in a row marks the store down); then it is known down.
  const outcomes: Array<PromiseSettledResult<unknown>> = []
  for (let wave = 0; wave < 10; wave++) {
    outcomes.push(...await Promise.allSettled(Array.from({ length: 50 }, async () => store.consume('k', 1, spec))))
  }
  t.ok(outcomes.every(o => o.status === 'rejected'), 'all 500 settled, as errors, while Redis is still paused')
  t.notOk(store.up)
  redis.resume()
  while (!store.up) await new Promise(resolve => setTimeout(resolve, 50))
  const sent = await scripts() - before
  t.ok(sent <= 150, `Redis ran ${sent} rate-limit scripts for 500 requests made while it hung: the first three waves only, no backlog`)
  t.ok((await store.consume('k', 1, spec)).allowed)
})

t.test('the commands of one turn go to Redis together, and each keeps its own reply', async t => {
  const redis = await startRedis(t)
  const { store } = await storeOn(t, redis)
  const reads = async (): Promise<number> => Number(/^total_reads_processed:(\d+)/m.exec(await redis.command('INFO stats'))?.[1])
  const spec: LimitSpec = { algorithm: 'gcra', max: 5, windowMs: 60_000, burst: 5 }
  await redis.command('LPUSH odd x')
  await store.consume('warm', 1, spec)
  const before = await reads()
  const outcomes = await Promise.allSettled([
    ...Array.from({ length: 40 }, async (_, i) => store.consume(`k${i % 4}`, 1, spec)),
    store.consume('odd', 1, spec)
  ])
  // The INFO of `reads()` is one read of its own.
  const taken = await reads() - before - 1
  t.ok(taken <= 3, `Redis read 41 commands sent in one turn in ${taken} reads: one write from the gateway, not one each`)
  const allowed = outcomes.slice(0, 40).map(o => o.status === 'fulfilled' && o.value.allowed)
  t.equal(allowed.filter(Boolean).length, 20, 'five allowed for each of the four keys')
  t.match(outcomes[40], { status: 'rejected', reason: { message: /WRONGTYPE/ } }, 'the odd key fails alone')
  t.ok(outcomes.slice(0, 40).every(o => o.status === 'fulfilled'), 'its turn-mates all got their verdicts')
  await redis.stop()
  const refused = await Promise.allSettled(Array.from({ length: 20 }, async (_, i) => store.consume(`k${i}`, 1, spec)))
  t.ok(refused.every(o => o.status === 'rejected'), 'a turn sent to a stopped Redis: every request fails, none hangs')
})
