import t from 'tap'
import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { stringify } from 'yaml'
import { buildBundle, DEFAULT_BUNDLE } from '../../scripts/opa.mjs'
import { demoConfig } from '../../src/demo/run.js'
import { startDemoHarness } from '../helpers/demo.js'

// `portcullis eval` as a policy author runs it: the built bin against a config file, with the
// demo's real issuer; the upstream points at a closed port, so forwarding would show as a 502.
const CLI = new URL('../../dist/cli.js', import.meta.url).pathname
const run = promisify(execFile)

async function evalCli (args: string[]): Promise<{ code: number, report: Record<string, any>, stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, 'eval', ...args])
    return { code: 0, report: JSON.parse(stdout) as Record<string, any>, stderr }
  } catch (err) {
    const e = err as { code: number, stdout: string, stderr: string }
    let report: Record<string, any> = {}
    try { report = JSON.parse(e.stdout) as Record<string, any> } catch {}
    return { code: e.code, report, stderr: e.stderr }
  }
}

t.test('eval prints the input, the decision and the reasons, exactly as the gateway judges, without forwarding', async t => {
  await buildBundle({})
  const demo = await startDemoHarness(t)
  const dir = t.testdir()
  const config = demoConfig(demo.paths, demo.issuer.url, 'https://127.0.0.1:1', { dir: demo.paths.dir, bundle: DEFAULT_BUNDLE, ports: { gateway: 0, admin: 0, issuer: 0, fn: 0 } })
  const file = join(dir, 'gateway.yaml')
  await writeFile(file, stringify(config))
  const reader = await demo.token({ sub: 'alice', roles: ['reader'] })

  const allowed = await evalCli(['-c', file, '--request', 'GET /hello/there?x=1', '--token', reader, '-H', 'X-Trace: abc'])
  t.equal(allowed.code, 0, allowed.stderr)
  t.match(allowed.report, {
    request: 'GET /hello/there',
    status: 200,
    would_forward: true,
    code: null,
    route: 'hello',
    entrypoint: 'gateway/authz/decision',
    decision_id: /^[0-9a-f-]{36}$/,
    input: { method: 'GET', path: '/hello/there', segments: ['hello', 'there'], query: { x: ['1'] }, headers: { 'x-trace': 'abc' }, principal: { type: 'jwt', subject: 'alice' } },
    result: { allow: true },
    reasons: ['authz.hello.authenticated']
  })
  t.notOk('authorization' in allowed.report.input.headers, 'the token is not shown')

  const denied = await evalCli(['-c', file, '--request', 'POST /orders', '--token', reader])
  t.match(denied.report, { status: 403, would_forward: false, code: 'GW_ERR_AUTHZ_DENIED', route: 'orders', reasons: ['authz.orders.write.forbidden'], result: { allow: false, status: 403 } })

  const anonymous = await evalCli(['-c', file, '--request', 'GET /hello'])
  t.match(anonymous.report, { status: 401, code: 'GW_ERR_AUTHN_MISSING', input: null, reasons: null }, 'refused before the policy')

  const unrouted = await evalCli(['-c', file, '--request', 'GET /nowhere', '--token', reader])
  t.match(unrouted.report, { status: 404, code: 'GW_ERR_ROUTE_NOT_FOUND', route: null })

  const bad = await evalCli(['-c', file, '--request', 'orders please'])
  t.equal(bad.code, 1)
  t.match(bad.stderr, /--request must look like 'GET \/orders\/7'/)

  // Issue #25: a 503 (here: no policy bundle where the config says) is no verdict, and says so.
  await writeFile(file, stringify({ ...config as object, policy: { bundle: join(dir, 'missing.tar.gz') } }))
  const unjudged = await evalCli(['-c', file, '--request', 'GET /hello', '--token', reader])
  t.equal(unjudged.code, 1, 'eval exits 1')
  t.match(unjudged.report, { status: 503, would_forward: false })
  t.match(unjudged.stderr, /could not judge this request \(503 GW_ERR_/)
})
