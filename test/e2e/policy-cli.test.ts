import t from 'tap'
import { execFile } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { cp, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { DEFAULT_POLICIES_DIR, resolveOpa } from '../../scripts/opa.mjs'
import { readBundleFile } from '../../src/pipeline/authorize/bundle.js'
import { REFUSED_BUILTINS } from '../../src/pipeline/authorize/builtins.js'
import { createPolicyEngine, PROVIDED_BUILTINS } from '../../src/pipeline/authorize/policy-engine.js'
import { runCli as cli } from '../helpers/cli.js'

const run = promisify(execFile)
const ROOT = new URL('../..', import.meta.url).pathname

const USES_HTTP_SEND = `package gateway.authz

decision := {"allow": http.send({"method": "GET", "url": "https://127.0.0.1:1/"}).status_code == 200}
`

const USES_PROVIDED = `package gateway.authz

decision := {"allow": true, "reasons": [sprintf("at-%d", [time.now_ns()])]}
`

t.test('policy build compiles a bundle the gateway loads', async t => {
  const dir = t.testdir({ policies: { gateway: { 'authz.rego': USES_PROVIDED } } })
  const out = join(dir, 'bundle.tar.gz')
  const res = await cli(['policy', 'build', '-d', join(dir, 'policies'), '-o', out])
  t.equal(res.code, 0, res.stderr)
  t.match(res.stdout, /^built .*bundle\.tar\.gz \(revision sha256:[0-9a-f]{12}; entrypoints gateway\/authz\/decision\)/)
  const engine = await createPolicyEngine(await readBundleFile(out), 'gateway/authz/decision')
  t.match(engine.evaluate({}), { allow: true, reasons: [/^at-\d+$/] }, 'time.now_ns (the gateway\'s) and sprintf (the SDK\'s) work')
})

t.test('a builtin the gateway cannot run (http.send) fails the build with a clear message, and no bundle is written', async t => {
  const dir = t.testdir({ policies: { gateway: { 'authz.rego': USES_HTTP_SEND } } })
  const out = join(dir, 'bundle.tar.gz')
  const res = await cli(['policy', 'build', '-d', join(dir, 'policies'), '-o', out])
  t.equal(res.code, 1)
  t.match(res.stderr, 'rego_type_error: undefined function http.send', 'opa refuses it, given the gateway\'s capabilities')
  t.match(res.stderr, 'docs/policy-authoring.md#builtins', 'and the message points to the list of refused builtins')
  t.notOk(existsSync(out))
  t.same(readdirSync(dir).sort(), ['policies'], 'no temporary file left behind')
})

t.test('issue #18: a builtin OPA has but the gateway refuses (json.unmarshal, regex.split) fails the build by name, pointing to the docs', async t => {
  for (const [name, call] of [['json.unmarshal', 'json.unmarshal(input.body)'], ['regex.split', 'regex.split("a", input.s)']]) {
    const dir = t.testdir({ policies: { gateway: { 'authz.rego': `package gateway.authz\n\ndecision := {"allow": count(${call}) > 0}\n` } } })
    const out = join(dir, 'bundle.tar.gz')
    const res = await cli(['policy', 'build', '-d', join(dir, 'policies'), '-o', out])
    t.equal(res.code, 1, `${name}: the build fails`)
    t.match(res.stderr, `undefined function ${name}`, `${name}: the message names it`)
    t.match(res.stderr, 'docs/policy-authoring.md#builtins', `${name}: and says where to read why`)
    t.notOk(existsSync(out))
  }
})

t.test('with capabilities that allow it, the gateway\'s own loader still refuses http.send', async t => {
  const { stdout } = await run(await resolveOpa(), ['capabilities', '--current'])
  const dir = t.testdir({ policies: { gateway: { 'authz.rego': USES_HTTP_SEND }, 'capabilities.json': stdout } })
  const out = join(dir, 'bundle.tar.gz')
  const res = await cli(['policy', 'build', '-d', join(dir, 'policies'), '-o', out])
  t.equal(res.code, 1)
  t.match(res.stderr, 'policy uses builtins the gateway does not provide: http.send')
  t.match(res.stderr, 'docs/policy-authoring.md#builtins')
  t.notOk(existsSync(out))
})

t.test('issue #18: with capabilities that allow it, the gateway\'s loader refuses regex.split, whose SDK version is not RE2', async t => {
  const { stdout } = await run(await resolveOpa(), ['capabilities', '--current'])
  const rego = 'package gateway.authz\n\ndecision := {"allow": count(regex.split("(?i)b", input.path)) == 2}\n'
  const dir = t.testdir({ policies: { gateway: { 'authz.rego': rego }, 'capabilities.json': stdout } })
  const res = await cli(['policy', 'build', '-d', join(dir, 'policies'), '-o', join(dir, 'bundle.tar.gz')])
  t.equal(res.code, 1)
  t.match(res.stderr, 'policy uses builtins the gateway does not provide: regex.split')
  t.match(res.stderr, 'docs/policy-authoring.md#builtins')
})

t.test('the committed capabilities list every builtin the gateway can run and nothing it cannot', async t => {
  const capabilities = JSON.parse(readFileSync(join(DEFAULT_POLICIES_DIR, 'capabilities.json'), 'utf8')) as { builtins: Array<{ name: string }> }
  const names = new Set(capabilities.builtins.map(b => b.name))
  for (const b of PROVIDED_BUILTINS) t.ok(names.has(b), `${b} (provided by the SDK or the gateway) is listed`)
  for (const b of ['http.send', 'net.lookup_ip_addr', 'opa.runtime', 'rand.intn']) t.notOk(names.has(b), `${b} is not listed`)
  for (const b of Object.keys(REFUSED_BUILTINS)) t.notOk(names.has(b) || PROVIDED_BUILTINS.has(b), `${b} (refused, issue #18) is not listed nor provided`)
  for (const b of ['startswith', 'concat', 'sort', 'count', 'regex.match']) t.ok(names.has(b), `${b} (compiled into the WASM) is listed`)
})

t.test('policy build reports a missing entrypoint and Rego errors', async t => {
  const dir = t.testdir({ policies: { gateway: { 'authz.rego': USES_PROVIDED } }, broken: { gateway: { 'authz.rego': 'package gateway.authz\n\ndecision := {' } } })
  const missing = await cli(['policy', 'build', '-d', join(dir, 'policies'), '-o', join(dir, 'a.tar.gz'), '-e', 'gateway/authz/decision', '-e', 'gateway/authz/other'])
  t.equal(missing.code, 1)
  t.match(missing.stderr, /other/)
  const broken = await cli(['policy', 'build', '-d', join(dir, 'broken'), '-o', join(dir, 'b.tar.gz')])
  t.equal(broken.code, 1)
  t.match(broken.stderr, /rego_parse_error/)
})

t.test('policy test runs opa test and reports coverage; a failing test fails it', async t => {
  const ok = await cli(['policy', 'test'])
  t.equal(ok.code, 0, ok.stderr)
  t.match(ok.stdout, /PASS: \d+\/\d+/)
  t.match(ok.stdout, /coverage \d+\.\d% in total/)
  const dir = t.testdir({
    gateway: {
      'authz.rego': USES_PROVIDED,
      'authz_test.rego': 'package gateway.authz_test\n\nimport data.gateway.authz\n\ntest_denied if not authz.decision.allow\n'
    }
  })
  const failing = await cli(['policy', 'test', '-d', dir])
  t.not(failing.code, 0)
  t.match(failing.stdout, /FAIL/)
})

t.test('issue #25: a failing policy test is reported first and briefly, with the way to its trace', async t => {
  // The repository's policies (over a hundred tests) with one test broken: one FAIL, not every trace.
  const dir = t.testdir()
  await cp(DEFAULT_POLICIES_DIR, join(dir, 'policies'), { recursive: true })
  await writeFile(join(dir, 'policies', 'gateway', 'broken_test.rego'), 'package gateway.broken_test\n\nimport data.gateway.authz\n\ntest_everyone_allowed if authz.decision.allow\n')
  const failing = await cli(['policy', 'test', '-d', join(dir, 'policies')])
  t.equal(failing.code, 2)
  const lines = failing.stdout.trim().split('\n')
  t.ok(lines.length <= 8, `${lines.length} lines:\n${failing.stdout}`)
  t.match(lines[0], /broken_test\.rego:5:$/, 'the failing test\'s file and line come first')
  t.match(lines[1], /^data\.gateway\.broken_test\.test_everyone_allowed: FAIL/)
  t.match(failing.stdout, /^FAIL: 1\/\d+$/m)
  t.match(failing.stdout, '--verbose', 'and how to see the trace')
  const verbose = await cli(['policy', 'test', '--verbose', '-d', join(dir, 'policies')])
  t.equal(verbose.code, 2)
  t.ok(verbose.stdout.split('\n').length > 100, '--verbose lists every test')
})

// Issue #25: `policy:check` refused a `claims` -> `claim` typo, but both builds compiled it and a running
// gateway (which watches the bundle) loaded it and denied everything. Both builds now run that check.
const withTypo = async (policies: string): Promise<void> => {
  const file = join(policies, 'gateway', 'authz.rego')
  const rego = await readFile(file, 'utf8')
  t.ok(rego.includes('input.principal.claims.roles'), 'the demo policy reads input.principal.claims')
  await writeFile(file, rego.replace('input.principal.claims.roles', 'input.principal.claim.roles'))
}

t.test('issue #25: portcullis policy build refuses a typo that policy:check refuses, and writes nothing', async t => {
  const dir = t.testdir()
  await cp(DEFAULT_POLICIES_DIR, join(dir, 'policies'), { recursive: true })
  await withTypo(join(dir, 'policies'))
  const out = join(dir, 'bundle.tar.gz')
  const res = await cli(['policy', 'build', '-d', join(dir, 'policies'), '-o', out])
  t.equal(res.code, 1, 'the build fails')
  t.match(res.stderr, 'rego_type_error: undefined ref: input.principal.claim.roles', 'with opa check\'s message')
  t.match(res.stderr, 'want (one of): ["claims" "issuer" "subject" "type"]', 'naming what the input schema has')
  t.notOk(existsSync(out), 'no bundle')
})

t.test('issue #25: npm run policy:build refuses the same typo and leaves the running bundle as it was', async t => {
  // A copy of the scripts and policies: the script builds <its folder>/../policies into ../build.
  const dir = t.testdir()
  for (const part of ['scripts', 'policies']) await cp(join(ROOT, part), join(dir, part), { recursive: true })
  const build = async (): Promise<{ code: number, stdout: string, stderr: string }> =>
    run(process.execPath, ['scripts/opa.mjs', 'build'], { cwd: dir }).then(r => ({ code: 0, ...r }), (e: { code: number, stdout: string, stderr: string }) => e)
  const first = await build()
  t.equal(first.code, 0, first.stderr)
  t.equal(first.stdout, 'built build/bundle.tar.gz\n')
  const before = await readFile(join(dir, 'build', 'bundle.tar.gz'))
  await withTypo(join(dir, 'policies'))
  const res = await build()
  t.equal(res.code, 1, 'the build fails')
  t.match(res.stderr, 'undefined ref: input.principal.claim.roles')
  t.same(await readFile(join(dir, 'build', 'bundle.tar.gz')), before, 'the bundle a gateway watches is unchanged')
  t.same(readdirSync(join(dir, 'build')), ['bundle.tar.gz'], 'no temporary file left behind')
})
