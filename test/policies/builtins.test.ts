import t from 'tap'
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { resolveOpa } from '../../scripts/opa.mjs'
import { REFUSED_BUILTINS } from '../../src/pipeline/authorize/builtins.js'
import { NOT_GENERATED, type BuiltinDecl } from '../helpers/builtin-cases.js'
import { CAPABILITIES, runBuiltinDifferential } from '../helpers/builtin-differential.js'

// Issue #18: every builtin a gateway policy may call decides as `opa eval` decides. A fixed seed,
// so a failure here is the same on every machine; test/policies/differential.property.test.ts
// runs the same suite with a new seed on every run.

const SEED = 18
const PER_BUILTIN = 40
const run = promisify(execFile)
const capabilities = JSON.parse(readFileSync(CAPABILITIES, 'utf8')) as { builtins: BuiltinDecl[] }

t.test('every allowed builtin gives the same value, or the same undefined, in WASM and in opa eval', async t => {
  const result = await runBuiltinDifferential(t.testdir(), PER_BUILTIN, SEED)
  const generated = new Set(result.builtins)
  for (const b of capabilities.builtins) {
    t.ok(generated.has(b.name) || b.name in NOT_GENERATED, `${b.name} is exercised (or says why not)`)
  }
  for (const k of result.known) t.comment(`known (docs/policy-authoring.md#builtins): ${k.fn}(${k.args}): ${k.why}`)
  t.same(result.mismatches.slice(0, 10), [], `no divergence in ${result.cases} cases (${result.mismatches.length} found)`)
})

t.test('a refused builtin fails opa build with the gateway\'s capabilities, naming the builtin', async t => {
  const opa = await resolveOpa()
  const allowed = new Set(capabilities.builtins.map(b => b.name))
  const infix: Readonly<Record<string, string>> = { div: 'input.a / input.b' }
  for (const name of Object.keys(REFUSED_BUILTINS)) {
    t.notOk(allowed.has(name), `${name} is not in policies/capabilities.json`)
    const dir = t.testdir({ 'p.rego': `package p\n\nx := ${infix[name] ?? `${name}(input.a, input.b, input.c)`}\n` })
    const err = await run(opa, ['build', '-t', 'wasm', '-e', 'p/x', '--capabilities', CAPABILITIES, '-o', join(dir, 'b.tar.gz'), join(dir, 'p.rego')])
      .then(() => null, (e: { stdout: string }) => e.stdout)
    t.match(err, `undefined function ${name}`, `opa build refuses ${name}`)
  }
})
