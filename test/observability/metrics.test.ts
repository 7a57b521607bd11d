import t from 'tap'
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { request } from 'node:https'
import { startDemoHarness, type DemoHarness } from '../helpers/demo.js'
import { promtoolCheck, startPrometheus } from '../helpers/prometheus.js'

// The admin /metrics endpoint as Prometheus sees it: valid exposition, bounded series, the metrics
// an operator needs present, and a real Prometheus server scraping it.

async function scrape (demo: DemoHarness): Promise<string> {
  return (await demo.client.send(`${demo.adminUrl}/metrics`)).text
}

/** Series of the gateway's own metrics (the process and runtime ones are bounded by prom-client). */
function gatewaySeries (text: string): string[] {
  return text.split('\n')
    .filter(l => l.startsWith('portcullis_') && !l.startsWith('portcullis_nodejs_') && !l.startsWith('portcullis_process_'))
    .map(l => l.slice(0, l.lastIndexOf(' ')))
}

/** A request with any Host header: TLS still verifies the listener certificate as "localhost". */
async function send (demo: DemoHarness, path: string, opts: { host: string, token?: string, method?: string }): Promise<number> {
  const { port } = new URL(demo.url)
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1',
      port,
      path,
      method: opts.method ?? 'GET',
      servername: 'localhost',
      ca: readFileSync(demo.paths.caCert),
      agent: false,
      headers: { host: opts.host, ...(opts.token !== undefined ? { authorization: `Bearer ${opts.token}` } : {}) }
    }, res => { res.resume(); res.once('end', () => resolve(res.statusCode ?? 0)) })
    req.once('error', reject)
    req.end()
  })
}

/** One of each kind of request, each made different from all others in path, subject and host. */
async function mixedRound (demo: DemoHarness, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const unique = randomUUID()
    const token = await demo.token({ sub: `user-${unique}` })
    const host = `h-${unique}.example.test`
    await send(demo, `/hello/${unique}?q=${unique}`, { token, host })
    await send(demo, `/nowhere-${unique}`, { token, host })
    await send(demo, `/hello/${unique}`, { host })
    await send(demo, `/orders/${unique}`, { token, host, method: 'POST' })
  }
}

t.test('series stay constant however many distinct paths, subjects and hosts arrive', async t => {
  const demo = await startDemoHarness(t)
  await mixedRound(demo, 1)
  const before = gatewaySeries(await scrape(demo))
  await mixedRound(demo, 40)
  const after = gatewaySeries(await scrape(demo))
  t.same(after, before, 'the same series, only their values changed')
  t.notMatch(after.join('\n'), /user-|h-|nowhere-/, 'no subject, host or path in any label')
})

t.test('promtool accepts the exposition, and the operator metrics are there', async t => {
  // With a client CA on the listener, every certificate the gateway holds has its expiry exported.
  const demo = await startDemoHarness(t, { configure: (raw, paths) => { raw.listen.tls.clientCa = paths.caCert } })
  await mixedRound(demo, 1)
  const text = await scrape(demo)
  const check = await promtoolCheck(text)
  t.equal(check.code, 0, check.output)
  t.equal(check.output.trim(), '', 'no lint findings')
  for (const line of [
    /^portcullis_requests_total\{route="hello",method="GET",outcome="forwarded",status_class="2xx"\} 1$/m,
    /^portcullis_request_duration_seconds_count\{route="hello",method="GET",outcome="forwarded"\} 1$/m,
    /^portcullis_authn_failures_total\{route="hello",reason="missing"\} 1$/m,
    /^portcullis_policy_decisions_total\{route="orders",result="deny"\} 1$/m,
    /^portcullis_policy_evaluation_seconds_count \d+$/m,
    /^portcullis_jwks_fetches_total\{issuer="demo",result="success"\} [1-9]/m,
    /^portcullis_certificate_expiry_timestamp_seconds\{certificate="listener"\} \d+/m,
    /^portcullis_certificate_expiry_timestamp_seconds\{certificate="listener\/client-ca"\} \d+/m,
    /^portcullis_certificate_expiry_timestamp_seconds\{certificate="upstream\/demo-function"\} \d+/m,
    /^portcullis_certificate_expiry_timestamp_seconds\{certificate="upstream\/demo-function\/ca"\} \d+/m,
    /^portcullis_certificate_expiry_timestamp_seconds\{certificate="issuer\/demo\/ca"\} \d+/m,
    /^portcullis_requests_in_flight 0$/m,
    /^portcullis_nodejs_eventloop_lag_seconds /m
  ]) t.match(text, line, String(line))
})

t.test('a real Prometheus server scrapes the admin listener and answers PromQL', async t => {
  const demo = await startDemoHarness(t)
  const prometheus = await startPrometheus(t, new URL(demo.adminUrl).host)
  const token = await demo.token()
  for (let i = 0; i < 3; i++) t.equal((await demo.client.send(`${demo.url}/hello/p${i}`, { token })).status, 200)
  const promql = 'sum(portcullis_requests_total{route="hello",outcome="forwarded"})'
  let value = await prometheus.query(promql)
  // Scrapes happen every second; wait for one that saw all three requests.
  while (value !== 3) {
    await new Promise(resolve => setTimeout(resolve, 250))
    value = await prometheus.query(promql)
  }
  t.equal(value, 3)
  t.equal(await prometheus.query('up{job="portcullis"}'), 1)
})
