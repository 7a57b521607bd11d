import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { DEFAULT_BUNDLE } from '../../scripts/opa.mjs'
import { startFunctionProcess } from '../helpers/function-process.js'
import { BASE_CONFIG, gatewayFiles, startGatewayProcess, startPlainUpstream, type GatewayFiles } from '../helpers/gateway-process.js'
import { httpsClient, type Reply } from '../helpers/http.js'

// Issue 17, items 8 and 9, through the real CLI: one slow function must not block its upstream,
// upstream timeouts below a second are honoured, and a request cut at the drain timeout gets an answer.

const sleep = async (ms: number): Promise<null> => new Promise(resolve => setTimeout(() => resolve(null), ms))

/** gateway.yaml with a "hello" route to the upstream `fn`, with `upstream` options added to it. */
async function writeConfig (files: GatewayFiles, url: string, upstream: string, extra = ''): Promise<void> {
  await writeFile(files.configFile, `
${BASE_CONFIG}
policy: { bundle: "${DEFAULT_BUNDLE}" }
upstreams:
  - { id: fn, url: "${url}", plaintext: true${upstream === '' ? '' : `, ${upstream}`} }
routes:
  - { id: hello, prefix: /hello, methods: [GET], upstream: fn }
${extra}`)
}

/** The value of one series on the admin /metrics page (0 when absent). */
async function metric (adminUrl: string, series: string): Promise<number> {
  const text = await (await fetch(`${adminUrl}/metrics`)).text()
  const line = text.split('\n').find(l => l.startsWith(`${series} `))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}

t.test('issue 17 #8: with 80 requests held on a slow path, a fast path on the same upstream is answered within queueTimeoutMs, not after the slow ones', async t => {
  const fn = await startPlainUpstream(t, 'fn')
  const files = await gatewayFiles(t)
  // The defaults: 64 connections, at most 64 waiting, each at most 1 s.
  await files.writeConfig(fn.url)
  const gw = await startGatewayProcess(t, files.configFile)
  const client = httpsClient(t, files.caFile)
  const token = await files.token()

  const allBusy = new Promise<void>(resolve => fn.onHeld(() => { if (fn.held.length === 64) resolve() }))
  const slow = Array.from({ length: 80 }, async (_, i) => client.send(`${gw.url}/hello/hold-${i}`, { token }))
  await allBusy
  // The other 16 have reached the gateway: waiting, or already refused after queueTimeoutMs.
  const queue = 'portcullis_upstream_queued_requests{upstream="fn"}'
  const timedOut = 'portcullis_upstream_errors_total{upstream="fn",kind="queue_timeout"}'
  for (let i = 0; i < 500 && await metric(gw.adminUrl, queue) + await metric(gw.adminUrl, timedOut) < 16; i++) await sleep(20)

  const started = performance.now()
  const fast = await Promise.race([client.send(`${gw.url}/hello/fast`, { token }), sleep(8000)])
  const waited = performance.now() - started
  t.equal(fn.held.filter(h => h.req.complete).length, 64, 'the slow requests are all still held')
  t.not(fast, null, 'the fast path was answered while the slow ones were still held')
  if (fast !== null) {
    t.equal(fast.status, 503)
    t.equal(fast.json().code, 'GW_ERR_UPSTREAM_BUSY')
    t.equal(fast.headers['retry-after'], '1', 'Retry-After is queueTimeoutMs in seconds')
    t.ok(waited < 1000 + 3000, `answered within queueTimeoutMs and some slack (${Math.round(waited)} ms)`)
  }
  t.equal(await metric(gw.adminUrl, queue), 0, 'nobody is left waiting')

  for (const h of fn.held) h.release()
  const answers = await Promise.all(slow)
  const busy = answers.filter(r => r.status === 503 && r.json().code === 'GW_ERR_UPSTREAM_BUSY')
  t.equal(answers.filter(r => r.status === 200).length, 64, 'the requests the function had got their answers')
  t.equal(busy.length, 16, 'the 16 that waited longer than queueTimeoutMs got 503 BUSY')
  t.ok(busy.every(r => r.headers['retry-after'] === '1'))
  t.equal(await metric(gw.adminUrl, timedOut), 17, 'counted by upstream')

  const again = await client.send(`${gw.url}/hello/fast`, { token })
  t.equal(again.status, 200, 'once the slow ones are done, the fast path is served (the circuit did not open)')
})

t.test('issue 17 #8: beyond maxQueue waiting requests, the next one gets 503 BUSY at once, without waiting queueTimeoutMs', async t => {
  const fn = await startPlainUpstream(t, 'fn')
  const files = await gatewayFiles(t)
  await writeConfig(files, fn.url, 'connections: 2, maxQueue: 1, queueTimeoutMs: 60000')
  const gw = await startGatewayProcess(t, files.configFile)
  const client = httpsClient(t, files.caFile)
  const token = await files.token()

  const allBusy = new Promise<void>(resolve => fn.onHeld(() => { if (fn.held.length === 2) resolve() }))
  const held = [0, 1].map(async i => client.send(`${gw.url}/hello/hold-${i}`, { token }))
  await allBusy
  const waiting = client.send(`${gw.url}/hello/hold-waiting`, { token })
  while (await metric(gw.adminUrl, 'portcullis_upstream_queued_requests{upstream="fn"}') < 1) await sleep(20)

  const refused = await Promise.race([client.send(`${gw.url}/hello/fast`, { token }), sleep(10_000)])
  t.not(refused, null, 'answered long before queueTimeoutMs (60 s)')
  t.equal(refused?.status, 503)
  t.equal(refused?.json().code, 'GW_ERR_UPSTREAM_BUSY')
  t.equal(refused?.headers['retry-after'], '60')
  t.equal(await metric(gw.adminUrl, 'portcullis_upstream_errors_total{upstream="fn",kind="queue_full"}'), 1)

  // The one that waited gets the first connection that frees up.
  fn.held[0]!.release()
  const served = new Promise<void>(resolve => fn.onHeld(() => { if (fn.held.length === 3) resolve() }))
  await served
  t.equal(fn.held[2]!.req.url, '/hello/hold-waiting', 'the waiting request reached the function')
  for (const h of fn.held.slice(1)) h.release()
  const replies: Reply[] = [...await Promise.all(held), await waiting]
  t.same(replies.map(r => r.status), [200, 200, 200])
})

t.test('issue 17 #9: a 200 ms headers timeout answers 504 well under a second while the function is paused; it serves again once resumed or restarted', async t => {
  const fn = await startFunctionProcess(t)
  const files = await gatewayFiles(t)
  await writeConfig(files, fn.url, 'headersTimeoutMs: 200')
  const gw = await startGatewayProcess(t, files.configFile)
  const client = httpsClient(t, files.caFile)
  const token = await files.token()
  t.equal((await client.send(`${gw.url}/hello/warm`, { token })).status, 200)

  fn.pause()
  const started = performance.now()
  const res = await client.send(`${gw.url}/hello/paused`, { token })
  const took = performance.now() - started
  t.equal(res.status, 504)
  t.equal(res.json().code, 'GW_ERR_UPSTREAM_TIMEOUT')
  // Before the fix it took 0.5–1 s (undici's 499 ms timer tick): the bound tells 200 ms from that.
  t.ok(took < 700, `answered after ${Math.round(took)} ms`)
  t.ok(took >= 190, 'and not before the timeout')

  fn.resume()
  t.equal((await client.send(`${gw.url}/hello/resumed`, { token })).status, 200, 'served again once resumed')
  const late = await client.send(`${gw.url}/hello/late?delay=150`, { token })
  t.equal(late.status, 200, 'an answer within the timeout is not cut')
  await fn.restart()
  t.equal((await client.send(`${gw.url}/hello/restarted`, { token })).status, 200, 'served again once restarted')
})

t.test('issue 17 #9: a 200 ms connect timeout answers 504 well under a second when the function accepts no connection', async t => {
  const fn = await startFunctionProcess(t, { backlog: 1 })
  const files = await gatewayFiles(t)
  await writeConfig(files, fn.url, 'connectTimeoutMs: 200, retryConnectFailures: false')
  const gw = await startGatewayProcess(t, files.configFile)
  const client = httpsClient(t, files.caFile)
  const token = await files.token()

  // Paused, with its accept queue full: the kernel answers no more handshakes.
  fn.pause()
  const fillers: Socket[] = []
  t.teardown(() => { for (const s of fillers) s.destroy() })
  for (let i = 0; i < 5; i++) {
    const s = connect(Number(new URL(fn.url).port), '127.0.0.1')
    fillers.push(s)
    const connected = await Promise.race([new Promise(resolve => s.once('connect', () => resolve(true))), sleep(300).then(() => false)])
    if (!connected) break
  }
  const started = performance.now()
  const res = await client.send(`${gw.url}/hello/blackholed`, { token })
  const took = performance.now() - started
  t.equal(res.status, 504)
  t.equal(res.json().code, 'GW_ERR_UPSTREAM_CONNECT_TIMEOUT')
  t.ok(took < 700, `answered after ${Math.round(took)} ms`)
})

t.test('issue 17 #9: a request still waiting on the function at the drain timeout gets 503 with Connection: close, and the access line records it', async t => {
  const fn = await startPlainUpstream(t, 'fn')
  const files = await gatewayFiles(t)
  await files.writeConfig(fn.url, 'lifecycle: { drainTimeoutMs: 300 }')
  const gw = await startGatewayProcess(t, files.configFile)
  const client = httpsClient(t, files.caFile)
  const arrived = new Promise<void>(resolve => fn.onHeld(resolve))
  const stuck = client.send(`${gw.url}/hello/hold`, { token: await files.token() }).catch((err: Error) => err)
  await arrived

  gw.child.kill('SIGTERM')
  const res = await stuck
  t.equal(await gw.exited, 0)
  t.notOk(res instanceof Error, `an answer, not a cut connection (${res instanceof Error ? res.message : ''})`)
  if (!(res instanceof Error)) {
    t.equal(res.status, 503)
    t.equal(res.json().code, 'GW_ERR_UPSTREAM_SHUTDOWN')
    t.equal(res.headers.connection, 'close')
  }
  t.match(gw.log(), /"access":true[^\n]*"status":503[^\n]*"code":"GW_ERR_UPSTREAM_SHUTDOWN"/, 'the access line has it')
})

t.test('a 200 ms route headers timeout over a 30 s upstream one is honoured too', async t => {
  const fn = await startFunctionProcess(t)
  const files = await gatewayFiles(t)
  await writeConfig(files, fn.url, '', `  - { id: orders, prefix: /quick, methods: [GET], upstream: fn, timeouts: { headersMs: 200 } }`)
  const gw = await startGatewayProcess(t, files.configFile)
  const client = httpsClient(t, files.caFile)
  const token = await files.token()
  const started = performance.now()
  const res = await client.send(`${gw.url}/quick/x?delay=5000`, { token })
  const took = performance.now() - started
  t.equal(res.status, 504)
  t.equal(res.json().code, 'GW_ERR_UPSTREAM_TIMEOUT')
  t.ok(took < 700, `answered after ${Math.round(took)} ms`)
})
