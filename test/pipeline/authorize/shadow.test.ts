import t, { type Test } from 'tap'
import Fastify from 'fastify'
import { Registry } from 'prom-client'
import { setImmediate as turn } from 'node:timers/promises'
import { createMasker } from '../../../src/observability/decision-log.js'
import { createMetrics } from '../../../src/observability/metrics.js'
import { readBundleFile } from '../../../src/pipeline/authorize/bundle.js'
import { createFileSource } from '../../../src/pipeline/authorize/bundle-source.js'
import { createPolicyEngine } from '../../../src/pipeline/authorize/policy-engine.js'
import { createPolicyStore } from '../../../src/pipeline/authorize/policy-store.js'
import { createShadow, type ShadowJob } from '../../../src/pipeline/authorize/shadow.js'
import { opaBuild } from '../../helpers/signed-bundles.js'

// The shadow's queue, sampling and difference log lines, with real bundles built by opa.

const ACTIVE = `package gateway.authz

decision := {"allow": true, "headers": {"upstream": {"x-card": input.headers["x-card"]}}}
`
const SHADOW = `package gateway.authz

decision := {"allow": false, "status": 451, "message": "not here", "headers": {"client": {"x-card": input.headers["x-card"]}}}
`
const INPUT = { method: 'GET', path: '/hello', headers: { 'x-card': '4111111111111111' }, route: { id: 'hello', metadata: {} }, principal: null }

async function setup (t: Test, opts: { maxQueued?: number, sample?: number, random?: () => number } = {}) {
  const lines: Array<Record<string, any>> = []
  const app = Fastify({ logger: { level: 'info', stream: { write: (l: string) => { lines.push(JSON.parse(l) as Record<string, any>) } } } })
  t.teardown(() => app.close())
  const metrics = createMetrics(new Registry())
  t.teardown(() => metrics.close())
  const activeBundle = await readBundleFile(await opaBuild(t, { rego: ACTIVE, revision: 'a1' }))
  const engine = await createPolicyEngine(activeBundle, 'gateway/authz/decision')
  const file = await opaBuild(t, { rego: SHADOW, revision: 's1' })
  const store = await createPolicyStore({
    source: await createFileSource(file, 1 << 20),
    parse: {},
    entrypoints: ['gateway/authz/decision'],
    log: app.log,
    metrics,
    watchIntervalMs: 0,
    report: { loaded: () => {}, failed: () => {}, reset: () => {} }
  })
  const shadow = createShadow({
    store,
    sample: opts.sample ?? 1,
    maxQueued: opts.maxQueued ?? 100,
    metrics: metrics.shadow,
    mask: createMasker(['/input/headers', '/result/headers']),
    log: app.log,
    ...(opts.random !== undefined ? { random: opts.random } : {})
  })
  t.teardown(() => shadow.close())
  const job = (id: string): ShadowJob => ({ route: 'hello', decisionId: id, entrypoint: 'gateway/authz/decision', inputJson: JSON.stringify(INPUT), result: engine.evaluate(INPUT), engine })
  const settled = async (): Promise<void> => { while (shadow.status().queued > 0) await turn() }
  return { shadow, job, lines, settled, metrics }
}

t.test('a full queue drops and counts; what was queued is judged later, never during offer', async t => {
  const { shadow, job, settled } = await setup(t, { maxQueued: 2 })
  for (let i = 0; i < 5; i++) shadow.offer(job(`d${i}`))
  t.match(shadow.status(), { queued: 2, revisions: [{ revision: 's1', outcomes: { dropped: 3, different: 0 } }] }, 'nothing judged while the request is being answered')
  await settled()
  t.match(shadow.status(), { queued: 0, revisions: [{ revision: 's1', outcomes: { dropped: 3, different: 2, same: 0 }, differences: { allow_to_deny: 2 } }] })
})

t.test('sample: only the chosen share is judged', async t => {
  const draws = [0.1, 0.6, 0.2, 0.9]
  const { shadow, job, settled } = await setup(t, { sample: 0.5, random: () => draws.shift()! })
  for (let i = 0; i < 4; i++) shadow.offer(job(`d${i}`))
  await settled()
  t.match(shadow.status().revisions, [{ outcomes: { different: 2, dropped: 0 } }])
  const none = await setup(t, { sample: 0 })
  none.shadow.offer(none.job('x'))
  t.equal(none.shadow.status().queued, 0)
})

t.test('a difference is logged with both decision ids and both results, masked as the decision log masks', async t => {
  const { shadow, job, lines, settled } = await setup(t)
  shadow.offer(job('the-decision'))
  await settled()
  const line = lines.find(l => l.msg === 'shadow policy decided differently')
  t.match(line, {
    decision_id: 'the-decision',
    shadow_decision_id: /^[0-9a-f-]{36}$/,
    route_id: 'hello',
    kinds: ['allow_to_deny'],
    policy_revision: 'a1',
    shadow_revision: 's1',
    active: { result: { allow: true }, erased: ['/result/headers'] },
    shadow: { result: { allow: false, status: 451, message: 'not here' }, erased: ['/result/headers'] }
  })
  t.notMatch(JSON.stringify(lines), '4111111111111111', 'the masked value appears in no log line')
})
