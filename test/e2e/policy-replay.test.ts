import t from 'tap'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { runCli as cli } from '../helpers/cli.js'
import { startDemoHarness } from '../helpers/demo.js'
import { opaBuild } from '../helpers/signed-bundles.js'

/*
 * `portcullis policy replay` over a decision log the real gateway wrote: the bundles are built by
 * the real opa CLI, the replay runs the built CLI, and it must find exactly the decisions that the
 * changed rule flips, by decision id.
 */

const BEFORE = `package gateway.authz

default decision := {"allow": false, "reasons": ["nobody"], "status": 403}

decision := {"allow": true, "reasons": ["listed"], "headers": {"upstream": {"x-team": object.get(input.headers, "x-team", "none")}}} if input.principal.subject in data.allowed
`
// The change: writes to orders need the "writer" role in the token.
const AFTER = BEFORE.replace('if input.principal.subject in data.allowed', `if {
	input.principal.subject in data.allowed
	not orders_write_without_role
}

orders_write_without_role if {
	input.route.id == "orders"
	input.method != "GET"
	not "writer" in object.get(input.principal.claims, "roles", [])
}`)

t.test('replay finds exactly the decisions a changed rule flips', async t => {
  const dir = t.testdir()
  const before = await opaBuild(t, { rego: BEFORE, data: { allowed: ['alice', 'carol'] }, revision: 'before' })
  const after = await opaBuild(t, { rego: AFTER, data: { allowed: ['alice', 'carol'] }, revision: 'after' })
  const log = join(dir, 'decisions.jsonl')
  const demo = await startDemoHarness(t, {
    bundle: before,
    configure: c => {
      c.rateLimit = {}
      c.decisionLog = { file: log, mask: ['/input/headers/x-team', '/result/headers'] }
    }
  })
  const tokens = {
    alice: await demo.token({ sub: 'alice', roles: ['reader'] }),
    carol: await demo.token({ sub: 'carol', roles: ['writer'] }),
    bob: await demo.token({ sub: 'bob', roles: ['writer'] })
  }
  const flipped: string[] = []
  let sent = 0
  let masked = 0
  for (let i = 0; i < 4; i++) {
    for (const [who, token] of Object.entries(tokens)) {
      for (const [method, path] of [['GET', '/hello'], ['GET', '/orders'], ['POST', '/orders'], ['DELETE', `/orders/${i}`], ['GET', '/admin/users']] as const) {
        const headers: Record<string, string> = i % 2 === 0 ? { 'x-team': `team-${i}` } : {}
        const res = await demo.client.send(`${demo.url}${path}`, { method, token, headers, ...(method === 'POST' ? { body: '{}' } : {}) })
        t.equal(res.status < 300 ? 'forwarded' : res.status, who === 'bob' ? 403 : 'forwarded', `${who} ${method} ${path}`)
        sent++
        if (i % 2 === 0) masked++
        if (who === 'alice' && path.startsWith('/orders') && method !== 'GET') flipped.push(String(res.headers['x-portcullis-decision-id']))
      }
    }
  }
  for (let i = 0; i < 400 && (await readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean).length < sent; i++) await sleep(25)

  const replay = await cli(['policy', 'replay', '--decisions', log, '--bundle', after, '--format', 'json', '--examples', '100'])
  t.equal(replay.code, 1, 'more differences than --max-diff (0): exit 1')
  const report = JSON.parse(replay.stdout) as Record<string, any>
  t.match(report, {
    bundle: { file: after, revision: 'after' },
    decisions: sent,
    replayed: sent,
    skipped: { no_input: 0, failed_when_recorded: 0, unreadable: 0 },
    masked_inputs: masked,
    evaluation_errors: 0,
    differences: flipped.length,
    max_diff: 0,
    passed: false
  })
  t.same(report.by_route, { orders: { allow_to_deny: flipped.length } })
  t.same(report.examples.map((e: { decision_id: string }) => e.decision_id).sort(), [...flipped].sort(), 'exactly alice\'s writes to orders, by decision id')
  t.match(report.examples[0], { route: 'orders', request: /^(POST|DELETE) \/orders/, kinds: ['allow_to_deny'], recorded: { allow: true }, replayed: { allow: false, status: 403 } })
  t.notOk('headers' in report.examples[0].recorded, 'the recorded result is shown as the log has it, masked')

  t.equal((await cli(['policy', 'replay', '--decisions', log, '--bundle', after, '--max-diff', String(flipped.length)])).code, 0, 'within --max-diff: exit 0')
  const same = await cli(['policy', 'replay', '--decisions', log, '--bundle', before])
  t.equal(same.code, 0, 'the recorded bundle itself differs nowhere, masked headers and all')
  t.match(same.stdout, `replayed ${sent} of ${sent} recorded decisions`)
  t.match(same.stdout, `inputs with masked fields: ${masked} (replayed without them`)
  t.match(same.stdout, 'differences: 0 (--max-diff 0: passed)')

  const text = await cli(['policy', 'replay', '--decisions', log, '--bundle', after, '--examples', '1'])
  t.equal(text.code, 1)
  t.match(text.stdout, `differences: ${flipped.length} (--max-diff 0: FAILED)\n  orders: allow_to_deny ${flipped.length}\nfirst 1 differences:\n`)
  t.match(text.stdout, /recorded: \{"allow":true[^\n]*\n {4}replayed: \{"allow":false/)
})

t.test('replay counts what it cannot replay and refuses a bundle without the logged entrypoint', async t => {
  const dir = t.testdir()
  const bundle = await opaBuild(t, { rego: BEFORE, revision: 'before' })
  const event = (over: Record<string, unknown>): string => JSON.stringify({
    decision_id: 'd', path: 'gateway/authz/decision', input: { method: 'GET', path: '/hello', route: { id: 'hello' }, principal: { subject: 'alice' }, headers: {} }, result: { allow: true, reasons: ['listed'], headers: { upstream: { 'x-team': 'none' } } }, ...over
  })
  const log = join(dir, 'mixed.jsonl')
  await writeFile(log, [
    event({}),
    JSON.stringify({ level: 30, msg: 'decision', decision_log: JSON.parse(event({ decision_id: 'from-stdout' })) }),
    event({ input: undefined, erased: ['/input'] }),
    event({ result: undefined, error: { code: 'GW_ERR_AUTHZ_POLICY_ERROR', message: 'x' } }),
    'not json',
    ''
  ].join('\n'))
  const report = JSON.parse((await cli(['policy', 'replay', '--decisions', log, '--bundle', bundle, '--format', 'json'])).stdout) as Record<string, any>
  t.match(report, { decisions: 5, replayed: 2, skipped: { no_input: 1, failed_when_recorded: 1, unreadable: 1 }, differences: 0, passed: true })

  await writeFile(log, event({ path: 'gateway/authz/other' }))
  const missing = await cli(['policy', 'replay', '--decisions', log, '--bundle', bundle])
  t.equal(missing.code, 1)
  t.match(missing.stderr, 'bundle has no entrypoint "gateway/authz/other"')
  t.equal((await cli(['policy', 'replay', '--decisions', log, '--bundle', bundle, '--format', 'yaml'])).code, 2, 'usage errors exit 2')
})
