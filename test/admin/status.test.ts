import t from 'tap'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { startDemoHarness } from '../helpers/demo.js'
import { systemTool } from '../helpers/system-tools.js'

// /status for tools (JSON) and for people (HTML, rendered by a real headless Chromium), and the
// per-dependency detail of /readyz.

const run = promisify(execFile)

interface Status {
  ready: boolean
  version: string
  config: { hash: string, loaded_at: string }
  policy: { revision: string, activated_at: string, age_seconds: number }
  routes: Array<{ id: string }>
  upstreams: Array<{ id: string }>
  certificates: Array<{ name: string, not_after: string }>
}

t.test('/status reports version, config hash, routes, bundle revision and age, upstreams and certificate expiry', async t => {
  const demo = await startDemoHarness(t)
  const res = await demo.client.send(`${demo.adminUrl}/status`)
  t.equal(res.status, 200)
  t.match(res.headers['content-type'], /application\/json/)
  const status = res.json<Status>()
  t.equal(status.ready, true)
  t.match(status.version, /^\d+\.\d+\.\d+/)
  t.match(status.config.hash, /^[0-9a-f]{16}$/)
  t.equal(status.config.hash, demo.gateway.configHash)
  t.same(status.routes.map(r => r.id), ['hello', 'orders', 'admin'])
  t.same(status.upstreams.map(u => u.id), ['demo-function'])
  t.equal(status.policy.revision, demo.gateway.gateway.policy.current?.revision)
  t.ok(status.policy.age_seconds >= 0 && Date.parse(status.policy.activated_at) <= Date.now(), 'bundle age from its activation time')
  t.equal(status.certificates[0]?.name, 'listener')
  t.ok(Date.parse(status.certificates[0]!.not_after) > Date.now(), 'listener certificate expiry')

  const ready = (await demo.client.send(`${demo.adminUrl}/readyz`)).json<{ details: Record<string, { ok: boolean, detail?: string }> }>()
  t.match(ready.details, {
    policy: { ok: true, detail: `revision ${status.policy.revision}` },
    'issuer:demo': { ok: true },
    'certificate:listener': { ok: true, detail: /^valid; expires / },
    accepting: { ok: true }
  })
})

t.test('a reload with the same config keeps serving and shows a new load time; /status follows the active config', async t => {
  const demo = await startDemoHarness(t)
  const before = (await demo.client.send(`${demo.adminUrl}/status`)).json<Status>()
  const result = await demo.gateway.reload()
  t.same(result, { ok: true, configHash: before.config.hash }, 'same config, same hash')
  const after = (await demo.client.send(`${demo.adminUrl}/status`)).json<Status>()
  t.not(after.config.loaded_at, before.config.loaded_at)
  t.equal((await demo.client.send(`${demo.url}/hello`, { token: await demo.token() })).status, 200)
})

t.test('the HTML view shows the same status in a real browser', async t => {
  const demo = await startDemoHarness(t)
  const status = (await demo.client.send(`${demo.adminUrl}/status`)).json<Status>()
  const profile = t.testdir()
  const { stdout } = await run(systemTool('chromium'), [
    '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-extensions', `--user-data-dir=${profile}`,
    '--dump-dom', `${demo.adminUrl}/status.html`
  ], { timeout: 60_000, maxBuffer: 4 * 1024 * 1024 })
  t.match(stdout, /<span id="ready" class="ready">ready<\/span>/, 'the page says ready')
  for (const value of [status.config.hash, status.policy.revision, status.version, 'demo-function', 'listener']) {
    t.ok(stdout.includes(value), `the page shows ${value}`)
  }
  for (const id of ['hello', 'orders', 'admin']) t.match(stdout, `<td>${id}</td>`, `route ${id} in the routes table`)
})
