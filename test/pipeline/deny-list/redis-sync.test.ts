import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import { createBanList } from '../../../src/pipeline/deny-list/bans.js'
import { createBanSync } from '../../../src/pipeline/deny-list/ban-sync.js'
import { createRevocationSync } from '../../../src/pipeline/deny-list/revocation-sync.js'
import { createRevocationList } from '../../../src/pipeline/deny-list/revocations.js'
import { startRedis, type RedisServer } from '../../helpers/redis.js'

// The shared deny-list sets against a real redis-server, with replicas as objects in one process:
// what a replica that missed a message converges to, how a rolling upgrade's older replicas are
// understood, and which of two bans Redis keeps.

const quiet = { warn () {}, info () {}, error () {} } as unknown as FastifyBaseLogger
const store = (redis: RedisServer) => ({ type: 'redis' as const, url: redis.url, commandTimeoutMs: 2000, failuresBeforeDown: 3, localFallbackShare: 0.5, keyPrefix: 'portcullis:rl:' })
const RULE = { enabled: true, failures: 1, windowSeconds: 60, on: ['authn' as const], banSeconds: 600, maxBanSeconds: 600 }
const until = async (what: string, check: () => boolean): Promise<void> => {
  for (let i = 0; i < 200 && !check(); i++) await new Promise(resolve => setTimeout(resolve, 25))
  if (!check()) throw new Error(`gave up waiting: ${what}`)
}

function banReplica (t: Test, redis: RedisServer, syncIntervalMs = 600_000) {
  const bans = createBanList()
  const sync = createBanSync({ store: store(redis), key: 'portcullis:bans', syncIntervalMs, bans, log: quiet, onError: () => {} })
  t.teardown(async () => { bans.close(); await sync.close() })
  return { bans, sync }
}

t.test('a lift that a replica missed is caught by its next full read; its own unshared bans stay', async t => {
  const redis = await startRedis(t)
  const a = banReplica(t, redis)
  const b = banReplica(t, redis, 1000)
  await Promise.all([a.sync.ready(5000), b.sync.ready(5000)])
  const ban = { scope: 'ip' as const, value: '203.0.113.9', until: Date.now() + 600_000, strikes: 1 }
  await a.sync.put(ban)
  await until('B has the ban', () => b.bans.banned('ip', '203.0.113.9') !== null)
  // B's own ban that never reached Redis (as if the store had been down when it was imposed).
  t.ok(b.bans.fail('sub', 'local-only', RULE), 'B bans a subject on its own')
  // Lifted behind B's back: removed from Redis without the message.
  t.equal((await redis.command('HDEL portcullis:bans ip:203.0.113.9')).trim(), ':1')
  await until('B\'s full read lifts it', () => b.bans.banned('ip', '203.0.113.9') === null)
  t.pass('gone from B after its next full read')
  t.ok(b.bans.banned('sub', 'local-only'), 'a ban B imposed on its own and could not share is kept')
})

t.test('two bans under one field: Redis keeps the longer', async t => {
  const redis = await startRedis(t)
  const a = banReplica(t, redis)
  await a.sync.ready(5000)
  const long = Date.now() + 600_000
  await a.sync.put({ scope: 'sub', value: 'mallory', until: long, strikes: 2 })
  await a.sync.put({ scope: 'sub', value: 'mallory', until: Date.now() + 60_000, strikes: 1 })
  const stored = (await redis.command('HGET portcullis:bans sub:mallory')).split('\r\n')[1]!
  t.match(JSON.parse(stored), { until: long, strikes: 2 })
})

t.test('revocations: expired records are swept; the previous release\'s messages are understood and still sent', async t => {
  const redis = await startRedis(t)
  const raw = new Redis(redis.url)
  const listener = new Redis(redis.url)
  t.teardown(() => { raw.disconnect(); listener.disconnect() })
  await raw.hset('portcullis:revoked', 'sub:old', JSON.stringify({ kind: 'sub', value: 'old', at: 1, until: 2 }))
  const list = createRevocationList()
  const sync = createRevocationSync({ store: store(redis), key: 'portcullis:revoked', syncIntervalMs: 600_000, list, log: quiet, onError: () => {} })
  t.teardown(async () => sync.close())
  await sync.ready(5000)
  t.equal(await raw.hexists('portcullis:revoked', 'sub:old'), 0, 'an expired record is removed by the full read')

  // An older replica announces a revocation in its own format.
  await raw.publish('portcullis:revoked', JSON.stringify({ op: 'add', revocation: { kind: 'sub', value: 'carol', at: Date.now(), until: Date.now() + 60_000 } }))
  await until('carol revoked', () => list.list().some(r => r.value === 'carol'))
  await raw.publish('portcullis:revoked', JSON.stringify({ op: 'remove', kind: 'sub', value: 'carol' }))
  await until('carol lifted', () => !list.list().some(r => r.value === 'carol'))
  t.pass('older replicas\' add and remove are applied')

  // And this release announces its changes in both forms.
  const heard: unknown[] = []
  await listener.subscribe('portcullis:revoked')
  listener.on('message', (_c: string, text: string) => heard.push(JSON.parse(text)))
  await sync.add({ kind: 'jti', value: 'j-1', at: Date.now(), until: Date.now() + 60_000 })
  await until('both messages', () => heard.length >= 2)
  t.match(heard, [{ op: 'put', record: { kind: 'jti', value: 'j-1' } }, { op: 'add', revocation: { kind: 'jti', value: 'j-1' } }])
})
