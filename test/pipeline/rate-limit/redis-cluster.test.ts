import t from 'tap'
import pino from 'pino'
import { createRedisStore } from '../../../src/pipeline/rate-limit/redis-store.js'
import type { LimitSpec } from '../../../src/pipeline/rate-limit/algorithms.js'
import { startRedisCluster } from '../../helpers/redis.js'

// The same scripts on a real three-node Redis Cluster: each bucket is one key, so one slot, and the
// decision stays atomic on whichever node owns it.

t.test('Redis Cluster: exact per bucket, buckets spread over the nodes', async t => {
  const nodes = await startRedisCluster(t)
  const store = createRedisStore({ type: 'redis', cluster: [nodes[0]!], commandTimeoutMs: 2000, failuresBeforeDown: 3, localFallbackShare: 0.5, keyPrefix: '' }, pino({ level: 'silent' }), { onState: () => {} })
  t.teardown(() => store.close())
  while (!store.up) await new Promise(resolve => setTimeout(resolve, 50))
  for (const algorithm of ['fixed-window', 'gcra'] as const) {
    const spec: LimitSpec = { algorithm, max: 7, windowMs: 3_600_000, burst: 7 }
    const keys = Array.from({ length: 12 }, (_, i) => `${algorithm}-bucket-${i}`)
    const allowed = await Promise.all(keys.map(async key => {
      const verdicts = await Promise.all(Array.from({ length: 20 }, async () => store.consume(key, 1, spec)))
      return verdicts.filter(v => v.allowed).length
    }))
    t.strictSame(allowed, keys.map(() => 7), `${algorithm}: 7 of 20 for each of 12 buckets`)
  }
})
