import t, { type Test } from 'tap'
import { readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { gunzipSync } from 'node:zlib'
import { buildBundle } from '../../scripts/opa.mjs'
import { createCa } from '../../src/tls/pki.js'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { startDemoHarness } from '../helpers/demo.js'

// Decision logs through the real gateway: one event per decision in OPA's shape, masked as
// configured, findable from the decision id the client received.

async function events (file: string, count: number): Promise<Array<Record<string, any>>> {
  // The file sink writes asynchronously; wait (bounded) for the events to land.
  for (let i = 0; i < 200; i++) {
    const lines = (await readFile(file, 'utf8').catch(() => '')).split('\n').filter(Boolean)
    if (lines.length >= count) return lines.map(l => JSON.parse(l) as Record<string, any>)
    await sleep(25)
  }
  throw new Error(`fewer than ${count} events in ${file}`)
}

t.test('file sink: one OPA-shaped event per decision, masked, found by the decision id header', async t => {
  const file = join(t.testdir(), 'decisions.jsonl')
  const demo = await startDemoHarness(t, {
    configure: c => {
      c.decisionLog = { file, mask: ['/input/headers/x-user-email', '/input/principal/claims/email', '/result/headers'], labels: { env: 'test' } }
    }
  })
  const reader = await demo.token({ sub: 'alice', roles: ['reader'], claims: { email: 'alice@example.com' } })
  const allowed = await demo.client.send(`${demo.url}/hello`, { token: reader, headers: { 'x-user-email': 'alice@example.com', 'x-trace': 'keep' } })
  t.equal(allowed.status, 200)
  const denied = await demo.client.send(`${demo.url}/orders`, { method: 'POST', token: reader, body: '{}' })
  t.equal(denied.status, 403)
  const notRouted = await demo.client.send(`${demo.url}/nowhere`, { token: reader })
  t.equal(notRouted.status, 404, 'no decision, no event')

  const [first, second, ...rest] = await events(file, 2)
  t.same(rest, [], 'exactly one event per decision')
  t.equal(first!.decision_id, allowed.headers['x-portcullis-decision-id'])
  t.equal(second!.decision_id, denied.headers['x-portcullis-decision-id'])
  t.match(first, {
    path: 'gateway/authz/decision',
    input: { method: 'GET', path: '/hello', headers: { 'x-trace': 'keep' }, principal: { subject: 'alice', claims: { roles: ['reader'] } }, route: { id: 'hello' } },
    result: { allow: true, reasons: ['authz.hello.authenticated'] },
    bundles: { authz: { revision: String } },
    labels: { env: 'test', id: String, version: String },
    requested_by: '127.0.0.1',
    metrics: { timer_rego_query_eval_ns: Number }
  })
  t.ok(first!.metrics.timer_rego_query_eval_ns > 0)
  t.ok(Number.isFinite(Date.parse(first!.timestamp)))
  t.same(first!.erased.sort(), ['/input/headers/x-user-email', '/input/principal/claims/email', '/result/headers'])
  t.notOk('x-user-email' in first!.input.headers, 'masked header removed')
  t.notOk('email' in first!.input.principal.claims, 'masked claim removed')
  t.notOk('authorization' in first!.input.headers, 'credentials never reach the input, nor the log')
  t.notMatch(JSON.stringify([first, second]), reader, 'the token appears nowhere')
  t.match(second, { input: { method: 'POST', path: '/orders' }, result: { allow: false, status: 403, reasons: ['authz.orders.write.forbidden'] } })
  t.equal(first!.labels.id, second!.labels.id, 'one instance id per gateway')

  const metrics = (await demo.client.send(`${demo.adminUrl}/metrics`)).text
  t.match(metrics, /portcullis_decision_log_events_total\{sink="file",outcome="written"\} 2/)
})

interface Collector { url: string, ca: string, batches: Array<{ encoding: string | undefined, events: Array<Record<string, any>> }>, status: number }

/** A decision-log collector on loopback over TLS, accepting OPA's upload format. */
async function startCollector (t: Test): Promise<Collector> {
  const ca = await createCa('collector-test-ca', 1)
  const cert = await ca.issue({ commonName: 'collector', ipAddresses: ['127.0.0.1'], usage: 'server', days: 1 })
  const collector: Collector = { url: '', ca: ca.cert, batches: [], status: 204 }
  const server = createServer({ cert: cert.cert, key: cert.key }, (req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      if (collector.status === 204) {
        collector.batches.push({ encoding: req.headers['content-encoding'], events: JSON.parse(gunzipSync(Buffer.concat(chunks)).toString('utf8')) })
      }
      res.writeHead(collector.status).end()
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  collector.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/logs`
  return collector
}

t.test('HTTP sink: gzipped batches in OPA\'s upload format; a collector that fails drops and counts, and never blocks requests', async t => {
  const dir = t.testdir()
  const collector = await startCollector(t)
  await writeFile(join(dir, 'collector-ca.pem'), collector.ca)
  const demo = await startDemoHarness(t, {
    configure: c => {
      c.decisionLog = { http: { url: collector.url, flushIntervalMs: 50, tls: { ca: join(dir, 'collector-ca.pem') } }, maxQueuedEvents: 3 }
      c.rateLimit = {}
    }
  })
  const token = await demo.token({ sub: 'alice' })
  const ids: string[] = []
  for (let i = 0; i < 3; i++) ids.push(String((await demo.client.send(`${demo.url}/hello`, { token })).headers['x-portcullis-decision-id']))
  for (let i = 0; i < 200 && collector.batches.flatMap(b => b.events).length < 3; i++) await sleep(25)
  const uploaded = collector.batches.flatMap(b => b.events)
  t.same(uploaded.map(e => e.decision_id), ids, 'every decision uploaded once, in order')
  t.ok(collector.batches.every(b => b.encoding === 'gzip'))
  t.match(uploaded[0], { path: 'gateway/authz/decision', result: { allow: true }, input: { path: '/hello' } })

  collector.status = 500
  for (let i = 0; i < 8; i++) t.equal((await demo.client.send(`${demo.url}/hello`, { token })).status, 200, 'requests are answered while uploads fail')
  const metricsText = async (): Promise<string> => (await demo.client.send(`${demo.adminUrl}/metrics`)).text
  let metrics = await metricsText()
  for (let i = 0; i < 200 && !/sink="http",outcome="dropped"\} 5/.test(metrics); i++) { await sleep(25); metrics = await metricsText() }
  t.match(metrics, /portcullis_decision_log_events_total\{sink="http",outcome="written"\} 3/)
  t.match(metrics, /portcullis_decision_log_events_total\{sink="http",outcome="dropped"\} 5/, 'beyond the 3 kept for retry, 5 dropped')
})

t.test('the policy masks its own decision log (system.log.mask, OPA\'s convention)', async t => {
  const dir = t.testdir({
    policies: {
      gateway: { 'authz.rego': 'package gateway.authz\n\ndecision := {"allow": true, "reasons": ["all"], "headers": {"upstream": {"x-card": input.query.card[0]}}} if input.query.card\n\ndefault decision := {"allow": true, "reasons": ["all"]}\n' },
      system: { 'log.rego': 'package system.log\n\nmask contains "/input/headers/x-secret-note"\n\nmask contains {"op": "remove", "path": "/input/query/card"} if input.input.query.card\n\nmask contains "/result/headers" if input.result.headers\n\nmask contains {"op": "upsert", "path": "/input/headers/x-account", "value": "**REDACTED**"} if input.input.headers["x-account"]\n' }
    }
  })
  const bundle = join(dir, 'bundle.tar.gz')
  await buildBundle({ policiesDir: join(dir, 'policies'), out: bundle, entrypoints: ['gateway/authz/decision', 'system/log/mask'], force: true })
  const file = join(dir, 'decisions.jsonl')
  const demo = await startDemoHarness(t, { bundle, configure: c => { c.decisionLog = { file } } })
  const token = await demo.token()
  t.equal((await demo.client.send(`${demo.url}/hello?card=4111111111111111&keep=1`, { token, headers: { 'x-secret-note': 'hush', 'x-other': 'fine', 'x-account': 'DE89370400440532013000' } })).status, 200)
  t.equal((await demo.client.send(`${demo.url}/hello?keep=2`, { token })).status, 200)
  const [first, second] = await events(file, 2)
  t.same(first!.erased.sort(), ['/input/headers/x-secret-note', '/input/query/card', '/result/headers'])
  t.same(first!.input.query, { keep: ['1'] })
  t.equal(first!.input.headers['x-other'], 'fine')
  t.equal(first!.input.headers['x-account'], '**REDACTED**', 'an upsert replaces the value')
  t.same(first!.masked, ['/input/headers/x-account'], 'and is listed in masked, as OPA lists it')
  t.notOk('headers' in first!.result)
  t.notMatch(JSON.stringify(first), /4111111111111111|hush|DE89370400440532013000/, 'masked values appear nowhere in the event')
  t.notOk('erased' in second! || 'masked' in second!, 'nothing to mask, nothing erased or masked')
})
