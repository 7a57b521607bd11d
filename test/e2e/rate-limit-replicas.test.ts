import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { demoConfig } from '../../src/demo/run.js'
import { startDemoHarness } from '../helpers/demo.js'
import { startGatewayProcess } from '../helpers/gateway-process.js'
import { compileHintPolicy } from '../helpers/rate-limit.js'
import { startRedis } from '../helpers/redis.js'

// Two gateway processes sharing one Redis, as two replicas behind a load balancer: together they
// allow exactly the limit, with either algorithm, however the requests are spread between them.

const MAX = 25

t.test('two replicas, one Redis: exactly the limit in total', async t => {
  const redis = await startRedis(t)
  const bundle = await compileHintPolicy(t)
  // The demo issuer and mTLS function; the in-process gateway of the harness is not used.
  const demo = await startDemoHarness(t)
  const config = demoConfig(demo.paths, demo.issuer.url, demo.fn.url, { dir: demo.paths.dir, ports: { gateway: 0, admin: 0, issuer: 0, fn: 0 }, bundle, logLevel: 'info' }) as Record<string, any>
  // A generous timeout: this test is about exactness, and a loaded CI machine must not turn it into a fault test.
  config.rateLimit = { store: { type: 'redis', url: redis.url, commandTimeoutMs: 5000 } }
  config.routes = [
    // An hour-long window: no window edge or refill can fall inside the test.
    { id: 'fixed', prefix: '/hello', methods: ['GET'], upstream: 'demo-function', rateLimit: { max: MAX, windowSeconds: 3600 } },
    { id: 'smooth', prefix: '/orders', methods: ['GET'], upstream: 'demo-function', rateLimit: { max: MAX, windowSeconds: 3600, algorithm: 'gcra' } }
  ]
  const file = join(t.testdirName, 'replica.yaml') // beside the bundle; t.testdir() again would empty the folder
  writeFileSync(file, JSON.stringify(config, null, 2)) // JSON is YAML; both replicas run the same file
  const replicas = await Promise.all([startGatewayProcess(t, file), startGatewayProcess(t, file)])
  t.not(replicas[0]!.url, replicas[1]!.url, 'two listeners')
  for (const r of replicas) {
    while ((await demo.client.send(`${r.adminUrl}/status`)).json<{ rate_limit_store: { up: boolean } }>().rate_limit_store.up !== true) {
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  }

  for (const path of ['/hello', '/orders']) {
    for (const sub of ['frank', 'grace']) {
      const token = await demo.token({ sub })
      // 3 × MAX requests, alternating between the replicas, 15 at a time in flight.
      const statuses: Array<{ replica: number, status: number }> = []
      for (let batch = 0; batch < (3 * MAX) / 15; batch++) {
        statuses.push(...await Promise.all(Array.from({ length: 15 }, async (_, i) => {
          const replica = (batch + i) % 2
          return { replica, status: (await demo.client.send(`${replicas[replica]!.url}${path}`, { token })).status }
        })))
      }
      const allowed = statuses.filter(s => s.status === 200)
      t.equal(allowed.length, MAX, `${path} for ${sub}: ${MAX} allowed across both replicas`)
      t.equal(statuses.filter(s => s.status === 429).length, 2 * MAX, 'the rest refused', { statuses: statuses.map(s => s.status) })
      t.ok(allowed.some(s => s.replica === 0) && allowed.some(s => s.replica === 1), 'both replicas allowed some')
    }
  }
})
