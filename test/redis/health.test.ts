import t from 'tap'
import type { Test } from 'tap'
import pino from 'pino'
import { Redis } from 'ioredis'
import { createRedisHealth, type RedisHealthOptions } from '../../src/redis/health.js'
import { startRedis, type RedisServer } from '../helpers/redis.js'

// The health of one Redis connection, against a real redis-server: a stall, of Redis or of our own
// event loop, is not an outage; failures in a row are.

const log = pino({ level: 'silent' })
const sleep = async (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))
const pong = (reply: unknown): string => {
  if (reply !== 'PONG') throw new Error('not PONG')
  return reply
}

async function healthOn (t: Test, redis: RedisServer, opts: Partial<RedisHealthOptions> = {}) {
  const client = new Redis(redis.url, { enableOfflineQueue: false, maxRetriesPerRequest: 0, retryStrategy: () => 100 })
  const states: boolean[] = []
  const health = createRedisHealth({ client, name: 'test store', commandTimeoutMs: 100, failuresBeforeDown: 3, log, onState: up => states.push(up), probeIntervalMs: 50, ...opts })
  t.teardown(() => { health.close(); client.disconnect() })
  while (!health.up) await sleep(20)
  return { client, health, states, ping: async () => health.run(async () => client.ping(), pong) }
}

t.test('the gateway\'s own event loop stalls past the deadline: the reply that waits in the socket counts, not the timer', async t => {
  const redis = await startRedis(t)
  const { health, ping } = await healthOn(t, redis)
  for (let round = 0; round < 5; round++) {
    const answer = ping()
    // Busy for three deadlines: Redis answers within a millisecond, but nothing reads it until this ends.
    const until = performance.now() + 300
    while (performance.now() < until) { /* a stalled loop */ }
    t.equal(await answer, 'PONG', `round ${round}: answered`)
  }
  t.equal(health.failures, 0, 'no failure counted')
  t.ok(health.up)
})

t.test('Redis paused once (CLIENT PAUSE) while fifty commands wait: they fail, as one failure, and the store stays up', async t => {
  const redis = await startRedis(t)
  const { health, states, ping } = await healthOn(t, redis)
  await redis.command('CLIENT PAUSE 600 ALL')
  const outcomes = await Promise.allSettled(Array.from({ length: 50 }, ping))
  t.ok(outcomes.every(o => o.status === 'rejected'), 'each late command fails its own request')
  t.match((outcomes[0] as PromiseRejectedResult).reason, { name: 'StoreTimeoutError' })
  t.equal(health.failures, 1, 'one incident, one failure')
  t.ok(health.up, 'not marked down')
  await sleep(700) // the pause is over
  t.equal(await ping(), 'PONG')
  t.equal(health.failures, 0, 'an answer clears the count')
  t.strictSame(states, [true], 'never went down')
})

t.test('Redis hangs (SIGSTOP): down after three failures in a row, skipped while down, up again when it resumes', async t => {
  const redis = await startRedis(t)
  const { health, states, ping } = await healthOn(t, redis)
  redis.pause()
  t.teardown(() => redis.resume())
  await t.rejects(ping(), { name: 'StoreTimeoutError' })
  await t.rejects(ping(), { name: 'StoreTimeoutError' })
  t.ok(health.up, 'two failures: still up')
  await t.rejects(ping(), { name: 'StoreTimeoutError' })
  t.notOk(health.up, 'the third in a row: down')
  await t.rejects(ping(), { name: 'StoreDownError' }, 'not sent while down')
  t.equal(health.lastError, 'no answer within 100 ms')
  redis.resume()
  while (!health.up) await sleep(20)
  t.equal(await ping(), 'PONG')
  t.strictSame(states, [true, false, true])
})

t.test('a success between failures starts the count again', async t => {
  const redis = await startRedis(t)
  const { health, ping } = await healthOn(t, redis, { failuresBeforeDown: 2 })
  for (let i = 0; i < 3; i++) {
    redis.pause()
    await t.rejects(ping())
    redis.resume()
    t.equal(health.failures, 1)
    t.equal(await ping(), 'PONG')
  }
  t.ok(health.up, 'three failures, never two in a row: up')
})

t.test('a closed connection is down at once', async t => {
  const redis = await startRedis(t)
  const { health, states } = await healthOn(t, redis)
  await redis.stop()
  while (health.up) await sleep(20)
  t.strictSame(states, [true, false])
  await redis.start()
  while (!health.up) await sleep(20)
  t.strictSame(states, [true, false, true])
})

t.test('while the event loop runs late, the deadline grows by that delay, at most doubling', async t => {
  const redis = await startRedis(t)
  // Deadline 500 ms; a reported loop delay far above it grows it to 1000 ms, never more.
  const busy = await healthOn(t, redis, { commandTimeoutMs: 500, loopDelayMs: () => 60_000 })
  await redis.command('CLIENT PAUSE 750 ALL')
  t.equal(await busy.ping(), 'PONG', 'a 750 ms pause fits the grown deadline')
  const idle = await healthOn(t, redis, { commandTimeoutMs: 500, loopDelayMs: () => 0 })
  await redis.command('CLIENT PAUSE 750 ALL')
  await t.rejects(idle.ping(), { name: 'StoreTimeoutError' }, 'and not the plain one')
  await redis.command('CLIENT PAUSE 1500 ALL')
  await t.rejects(busy.ping(), { message: 'no answer within 1000 ms' }, 'growth is capped')
})
