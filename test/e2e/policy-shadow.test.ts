import t from 'tap'
import { copyFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { startDemoHarness, type DemoHarness } from '../helpers/demo.js'
import { makeSigningKey, opaBuild } from '../helpers/signed-bundles.js'

/*
 * The shadow policy on live traffic through the real gateway: a shadow bundle that denies one route
 * sees exactly that route's decisions counted as different, and no answer changes, compared request
 * by request with the same gateway run without a shadow.
 */

const ACTIVE = `package gateway.authz

default decision := {"allow": false, "reasons": ["nobody"], "status": 403}

decision := {"allow": true, "reasons": ["listed"], "headers": {"upstream": {"x-who": input.principal.subject}}} if input.principal.subject in data.allowed
`
// The change under test: orders is closed to everyone.
const SHADOW = ACTIVE.replace('if input.principal.subject in data.allowed', 'if {\n\tinput.principal.subject in data.allowed\n\tinput.route.id != "orders"\n}')
// Fails at run time on /hello only (two values for one complete rule), so it still loads.
const FAILING = `package gateway.authz

default decision := {"allow": false}

decision := {"allow": true} if input.route.id == "hello"

decision := {"allow": false, "status": 401} if input.route.id == "hello"
`

type Answer = { status: number, body: string, headers: Record<string, unknown> }

/** Every route for an allowed and a refused principal, `rounds` times, 8 at a time. */
async function load (demo: DemoHarness, rounds: number): Promise<Answer[]> {
  const tokens = { alice: await demo.token({ sub: 'alice' }), bob: await demo.token({ sub: 'bob' }) }
  const requests: Array<() => Promise<Answer>> = []
  for (let i = 0; i < rounds; i++) {
    for (const path of ['/hello', '/orders', '/admin/users']) {
      for (const token of Object.values(tokens)) {
        requests.push(async () => {
          const res = await demo.client.send(`${demo.url}${path}?i=${i}`, { token })
          const { 'x-portcullis-decision-id': _id, 'x-request-id': _rid, date: _date, ...headers } = res.headers
          // The demo function echoes the request, and refusals carry the request id: both vary.
          return { status: res.status, body: res.status === 200 ? 'forwarded' : res.text.replace(/"request_id":"[^"]+"/, ''), headers }
        })
      }
    }
  }
  const answers: Answer[] = new Array(requests.length)
  let next = 0
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (next < requests.length) {
      const i = next++
      answers[i] = await requests[i]!()
    }
  }))
  return answers
}

async function metrics (demo: DemoHarness): Promise<string> {
  return (await demo.client.send(`${demo.adminUrl}/metrics`)).text
}

/** Waits (bounded) until the shadow has judged `count` decisions; the pass/fail is in the counts. */
async function judged (demo: DemoHarness, count: number): Promise<string> {
  let text = ''
  for (let i = 0; i < 400; i++) {
    text = await metrics(demo)
    const sum = [...text.matchAll(/^portcullis_policy_shadow_evaluations_total\{outcome="[a-z_]+"\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0)
    if (sum >= count) return text
    await sleep(25)
  }
  throw new Error(`the shadow did not judge ${count} decisions:\n${text}`)
}

t.test('a shadow that closes one route: exactly that route differs, and every answer is unchanged', async t => {
  const dir = t.testdir()
  const key = await makeSigningKey(dir, 'ES256')
  const sign = { key: key.priv, alg: 'ES256' as const }
  const active = await opaBuild(t, { rego: ACTIVE, sign, revision: 'active-1' })
  const shadow = await opaBuild(t, { rego: SHADOW, sign, revision: 'shadow-1' })
  const verification = { keys: { default: { algorithm: 'ES256', key: key.pub } } }
  const base = (c: Record<string, any>): void => {
    c.rateLimit = {}
    c.policy.verification = verification
  }
  const plain = await startDemoHarness(t, { bundle: active, configure: base })
  const shadowed = await startDemoHarness(t, { bundle: active, configure: c => { base(c); c.policy.shadow = { bundle: shadow } } })

  const rounds = 20
  const expected = await load(plain, rounds)
  const answers = await load(shadowed, rounds)
  t.equal(answers.length, rounds * 6)
  t.same(answers, expected, 'every answer equals the one the gateway gives without a shadow')
  t.equal(answers.filter(a => a.status === 200).length, rounds * 3, 'alice is forwarded on every route, orders included')

  const text = await judged(shadowed, rounds * 6)
  const differences = [...text.matchAll(/^portcullis_policy_shadow_differences_total\{(.*)\} (\d+)$/gm)].map(m => [m[1], Number(m[2])])
  t.same(differences, [['route="orders",kind="allow_to_deny"', rounds]], 'only alice on orders differs')
  t.match(text, new RegExp(`portcullis_policy_shadow_evaluations_total\\{outcome="same"\\} ${rounds * 5}\\n`))
  t.match(text, new RegExp(`portcullis_policy_shadow_evaluations_total\\{outcome="different"\\} ${rounds}\\n`))
  t.match(text, /portcullis_policy_shadow_bundle_info\{revision="shadow-1"\} 1/)
  t.match(text, /portcullis_policy_bundle_info\{revision="active-1"\} 1/, 'the active policy\'s own metrics are the active bundle\'s')

  const status = (await shadowed.client.send(`${shadowed.adminUrl}/status`)).json<Record<string, any>>()
  t.equal(status.policy.revision, 'active-1')
  t.match(status.policy_shadow, { revision: 'shadow-1', signed_by: 'default', sample: 1, max_queued: 1024, queued: 0, last_error: null })
  t.match(status.policy_shadow.revisions, [{ revision: 'shadow-1', outcomes: { same: rounds * 5, different: rounds, dropped: 0, error: 0 }, differences: { allow_to_deny: rounds, deny_to_allow: 0 } }])
})

t.test('a shadow that fails, or is not signed, is counted and never changes an answer', async t => {
  const dir = t.testdir()
  const key = await makeSigningKey(dir, 'ES256')
  const active = await opaBuild(t, { rego: ACTIVE, sign: { key: key.priv, alg: 'ES256' }, revision: 'active-1' })
  const failing = await opaBuild(t, { rego: FAILING, sign: { key: key.priv, alg: 'ES256' }, revision: 'failing-1' })
  const unsigned = await opaBuild(t, { rego: ACTIVE, revision: 'unsigned-1' })
  const configure = (shadow: string) => (c: Record<string, any>): void => {
    c.rateLimit = {}
    c.policy.verification = { keys: { default: { algorithm: 'ES256', key: key.pub } } }
    c.policy.shadow = { bundle: shadow }
  }
  const plain = await startDemoHarness(t, { bundle: active, configure: c => { c.rateLimit = {}; c.policy.verification = { keys: { default: { algorithm: 'ES256', key: key.pub } } } } })
  const expected = await load(plain, 3)

  const broken = await startDemoHarness(t, { bundle: active, configure: configure(failing) })
  t.same(await load(broken, 3), expected, 'a shadow that fails at run time changes no answer')
  const text = await judged(broken, 18)
  t.match(text, /portcullis_policy_shadow_evaluations_total\{outcome="error"\} 6\n/, 'its failures on /hello are counted')
  t.notMatch(text, /portcullis_policy_shadow_differences_total\{route="hello"/, 'a failure is not a difference')
  t.match((await broken.client.send(`${broken.adminUrl}/status`)).json<Record<string, any>>().policy_shadow, { revision: 'failing-1', last_evaluation_error: { message: /conflict|multiple|output/i } })

  const refused = await startDemoHarness(t, { bundle: active, configure: configure(unsigned) })
  t.same(await load(refused, 3), expected, 'an unsigned shadow is refused; the gateway serves as before')
  t.match(await judged(refused, 18), /portcullis_policy_shadow_evaluations_total\{outcome="not_ready"\} 18\n/)
  const status = (await refused.client.send(`${refused.adminUrl}/status`)).json<Record<string, any>>()
  t.match(status.policy_shadow, { revision: null, failures: 1, last_error: { message: /signature/i } })
  t.equal(status.policy.revision, 'active-1')
})

t.test('a new shadow bundle starts its own tally; the last revision\'s counts stay', async t => {
  const dir = t.testdir()
  const active = await opaBuild(t, { rego: ACTIVE, revision: 'active-1' })
  const first = await opaBuild(t, { rego: SHADOW, revision: 'shadow-1' })
  const second = await opaBuild(t, { rego: ACTIVE, revision: 'shadow-2' })
  const file = join(dir, 'shadow.tar.gz')
  await copyFile(first, file)
  const demo = await startDemoHarness(t, { bundle: active, bundleWatchIntervalMs: 50, configure: c => { c.rateLimit = {}; c.policy.shadow = { bundle: file } } })
  await load(demo, 2)
  await judged(demo, 12)
  await copyFile(second, file)
  const statusOf = async (): Promise<Record<string, any>> => (await demo.client.send(`${demo.adminUrl}/status`)).json<Record<string, any>>().policy_shadow
  for (let i = 0; i < 400 && (await statusOf()).revision !== 'shadow-2'; i++) await sleep(25)
  await load(demo, 1)
  await judged(demo, 18)
  const status = await statusOf()
  t.equal(status.revision, 'shadow-2')
  t.match(status.revisions, [
    { revision: 'shadow-1', outcomes: { same: 10, different: 2 }, differences: { allow_to_deny: 2 } },
    { revision: 'shadow-2', outcomes: { same: 6, different: 0 } }
  ])

  // A config reload builds a new generation, shadow included; the tallies belong to the process.
  t.match(await demo.gateway.reload(), { ok: true })
  await load(demo, 1)
  await judged(demo, 24)
  t.match((await statusOf()).revisions, [
    { revision: 'shadow-1', outcomes: { same: 10, different: 2 } },
    { revision: 'shadow-2', outcomes: { same: 12, different: 0 } }
  ], 'counts per revision survive the reload')
})
