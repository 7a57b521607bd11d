import t from 'tap'
import type { Test } from 'tap'
import { writeFile } from 'node:fs/promises'
import { DEFAULT_BUNDLE } from '../../scripts/opa.mjs'
import { httpsClient, type Client } from '../helpers/http.js'
import { BASE_CONFIG, gatewayFiles, startGatewayProcess, startPlainUpstream, type GatewayProcess } from '../helpers/gateway-process.js'
import { promtoolCheck } from '../helpers/prometheus.js'
import { startRedis, type RedisServer } from '../helpers/redis.js'

/*
 * Issue 17, item 7: a healthy Redis marked down under load. The real CLI, a real redis-server:
 * (a) Redis slow for a moment while the gateway's own event loop stalls past the command deadline
 *     (the process is stopped, as a long GC pause or a starved CPU would): the store stays up and
 *     fail-closed routes keep answering;
 * (b) Redis hung (SIGSTOP): down after the failures in a row, fail-closed routes 503 within their
 *     bound, `local` routes serve their share of the limit, so two replicas allow the limit, not twice
 *     it; up again after SIGCONT;
 * (c) the event-loop delay is exported, and the exposition passes promtool.
 */

const sleep = async (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))
const HOUR = 3600

interface Setup { redis: RedisServer, client: Client, token: string, file: string }

async function setup (t: Test, store: string): Promise<Setup> {
  const redis = await startRedis(t)
  const files = await gatewayFiles(t)
  const fn = await startPlainUpstream(t, 'fn')
  await writeFile(files.configFile, `
${BASE_CONFIG}
policy: { bundle: "${DEFAULT_BUNDLE}" }
rateLimit: { store: { type: redis, url: "${redis.url}", ${store} } }
upstreams: [{ id: fn, url: "${fn.url}", plaintext: true }]
routes:
  # Fails closed (the default) when the store cannot decide.
  - { id: hello, prefix: /hello, methods: [GET], upstream: fn, rateLimit: { max: 100000, windowSeconds: ${HOUR} } }
  # Falls back to a limit of its own in each process.
  - { id: orders, prefix: /quiet, methods: [GET], upstream: fn, rateLimit: { max: 10, windowSeconds: ${HOUR}, onStoreError: local } }
`)
  return { redis, client: httpsClient(t, files.caFile), token: await files.token(), file: files.configFile }
}

async function storeUp (client: Client, gw: GatewayProcess): Promise<boolean> {
  return (await client.send(`${gw.adminUrl}/status`)).json<{ rate_limit_store: { up: boolean } }>().rate_limit_store.up
}

async function waitForStore (client: Client, gw: GatewayProcess, up: boolean): Promise<void> {
  while (await storeUp(client, gw) !== up) await sleep(50)
}

function metric (text: string, series: string): number | undefined {
  const line = text.split('\n').find(l => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

t.test('(a) Redis slow for a moment while the gateway\'s event loop stalls past the deadline: no 503, never down', async t => {
  // The shipped defaults but for a deadline a paused Redis stays within: Redis is slow, not down.
  const { redis, client, token, file } = await setup(t, 'commandTimeoutMs: 300')
  const gw = await startGatewayProcess(t, file)
  await waitForStore(client, gw, true)
  t.equal((await client.send(`${gw.url}/hello`, { token })).status, 200)

  const statuses = new Map<number, number>()
  for (let round = 0; round < 6; round++) {
    // Redis holds every command for 250 ms (within the 300 ms deadline) ...
    t.match(await redis.command('CLIENT PAUSE 250 ALL'), /^\+OK/)
    const answers = Promise.all(Array.from({ length: 10 }, async () => client.send(`${gw.url}/hello`, { token })))
    // ... and the gateway, with those commands sent, stops for 600 ms: its deadline timers expire
    // while the replies wait, unread, in its socket.
    await sleep(100)
    gw.child.kill('SIGSTOP')
    await sleep(600)
    gw.child.kill('SIGCONT')
    for (const r of await answers) statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1)
  }
  t.strictSame([...statuses], [[200, 60]], 'every request answered 200: no store error reached a caller')
  t.ok(await storeUp(client, gw), 'the store is up')
  t.notMatch(gw.log(), /rate-limit store is down/, 'and it never went down')

  // (c) The stalls show in the event-loop delay (the window they ended in, within 5 s).
  let text = ''
  for (let i = 0; i < 100; i++) {
    text = (await client.send(`${gw.adminUrl}/metrics`)).text
    if ((metric(text, 'portcullis_event_loop_delay_seconds{stat="max"}') ?? 0) >= 0.4) break
    await sleep(100)
  }
  t.ok((metric(text, 'portcullis_event_loop_delay_seconds{stat="max"}') ?? 0) >= 0.4, 'worst delay: a stall of about 600 ms')
  t.ok(metric(text, 'portcullis_event_loop_delay_seconds{stat="p99"}') !== undefined, 'p99 exported')
  t.ok(metric(text, 'portcullis_event_loop_delay_seconds{stat="p50"}') !== undefined, 'median exported')
  t.equal(metric(text, 'portcullis_ratelimit_store_up'), 1)
  const check = await promtoolCheck(text)
  t.equal(check.code, 0, 'promtool check metrics passes')
  t.equal(check.output.trim(), '', 'without a warning')
})

t.test('(b) Redis hung (SIGSTOP): down after three failures, fail-closed 503s, two replicas in fallback allow the limit; SIGCONT: up', async t => {
  const { redis, client, token, file } = await setup(t, 'commandTimeoutMs: 200, failuresBeforeDown: 3, localFallbackShare: 0.5')
  const replicas = await Promise.all([startGatewayProcess(t, file), startGatewayProcess(t, file)])
  for (const gw of replicas) await waitForStore(client, gw, true)
  const [a, b] = replicas as [GatewayProcess, GatewayProcess]
  t.equal((await client.send(`${a.url}/hello`, { token })).status, 200)

  redis.pause()
  t.teardown(() => redis.resume())
  // One request at a time: each is one failure. The first two leave the store up; the third is down.
  const seen: Array<{ status: number, code: unknown, up: boolean, ms: number }> = []
  for (let i = 0; i < 5; i++) {
    const started = performance.now()
    const r = await client.send(`${a.url}/hello`, { token })
    const ms = performance.now() - started
    seen.push({ status: r.status, code: r.json().code, up: await storeUp(client, a), ms })
  }
  t.ok(seen.every(s => s.status === 503 && s.code === 'GW_ERR_RATE_LIMIT_STORE'), 'fail-closed route: 503 GW_ERR_RATE_LIMIT_STORE', { seen })
  // Bound: one deadline (200 ms, at most doubled by loop delay) plus the gateway's work; generous
  // for a loaded machine, and far below a client's patience.
  t.ok(seen.every(s => s.ms < 3000), 'each within its bound', { seen })
  t.strictSame(seen.map(s => s.up), [true, true, false, false, false], 'down after the third failure in a row, not the first')

  // The local route, 8 requests on each replica: each allows its share (5 of 10), together the limit.
  const local = []
  for (const gw of replicas) {
    for (let i = 0; i < 8; i++) local.push((await client.send(`${gw.url}/quiet`, { token })).status)
  }
  t.strictSame(local, [200, 200, 200, 200, 200, 429, 429, 429, 200, 200, 200, 200, 200, 429, 429, 429],
    'half the limit per replica in fallback: 10 in total, the shared limit')
  t.notOk(await storeUp(client, b), 'the other replica found it down too')

  redis.resume()
  for (const gw of replicas) await waitForStore(client, gw, true)
  t.equal((await client.send(`${a.url}/hello`, { token })).status, 200, 'serving from Redis again')
  t.equal((await client.send(`${b.url}/hello`, { token })).status, 200)
})
