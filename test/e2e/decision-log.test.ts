import t from 'tap'
import { readFile } from 'node:fs/promises'
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
