import t, { type Test } from 'tap'
import { join } from 'node:path'
import { buildBundle } from '../../../scripts/opa.mjs'
import { readBundleFile } from '../../../src/pipeline/authorize/bundle.js'
import {
  createPolicyEngine, PolicyEvaluationFault, type EngineFault, type PolicyEngine, type PolicyEngineOptions
} from '../../../src/pipeline/authorize/policy-engine.js'

// Issue 18: a trap or a runaway evaluation fails that evaluation and leaves the engine serving the
// next one. Each policy is compiled by the real OPA CLI, with OPA's own builtins (no capabilities
// file), so these test the engine whatever the gateway's capabilities allow.

const POLICY = `package gateway.authz

decision := {"allow": true, "v": "ok"} if input.k == "ok"

decision := {"allow": true, "v": json.is_valid(input.s)} if input.k == "is_valid"

decision := {"allow": true, "v": json.remove(input.o, input.paths)} if input.k == "remove"

decision := {"allow": true, "v": json.filter(input.o, input.paths)} if input.k == "filter"

decision := {"allow": true, "v": format_int(input.n, 10)} if input.k == "format_int"

decision := {"allow": false} if input.k == "conflict"

decision := {"allow": true} if input.k == "conflict"
`

const LOOPING = `package gateway.authz

decision := {"allow": true, "v": "ok"} if input.k == "ok"

decision := {"allow": true, "v": replace(input.s, input.p, "x")} if input.k == "replace"

decision := {"allow": true, "v": count(numbers.range(0, input.n))} if input.k == "range"
`

async function engineFor (t: Test, rego: string, opts: PolicyEngineOptions = {}): Promise<{ engine: PolicyEngine, resets: EngineFault[] }> {
  const dir = t.testdir({ gateway: { 'authz.rego': rego } })
  const out = join(dir, 'bundle.tar.gz')
  await buildBundle({ policiesDir: dir, out, force: true })
  const resets: EngineFault[] = []
  const engine = await createPolicyEngine(await readBundleFile(out), 'gateway/authz/decision', { ...opts, onReset: reason => resets.push(reason) })
  return { engine, resets }
}

function faultOf (t: Test, engine: PolicyEngine, input: unknown): EngineFault | null {
  try {
    engine.evaluate(input)
    return null
  } catch (err) {
    t.type(err, PolicyEvaluationFault)
    return (err as PolicyEvaluationFault).reason
  }
}

t.test('a trap fails only its own evaluation; the next one is served by a fresh instance', async t => {
  const { engine, resets } = await engineFor(t, POLICY)
  const cases: Array<[string, unknown, EngineFault]> = [
    ['json.is_valid("true")', { k: 'is_valid', s: 'true' }, 'trap'],
    ['json.remove with an empty path', { k: 'remove', o: { a: 1 }, paths: [''] }, 'trap'],
    ['json.filter with an empty path', { k: 'filter', o: { a: 1 }, paths: [''] }, 'trap'],
    ['format_int of 1e30', { k: 'format_int', n: 1e30 }, 'abort'],
    ['a conflict between rule values (the policy\'s own error)', { k: 'conflict' }, 'error']
  ]
  for (const [name, input, reason] of cases) {
    t.equal(faultOf(t, engine, input), reason, `${name} faults (${reason})`)
    // json.is_valid("true") used to leave the instance unable to evaluate anything again.
    t.same(engine.evaluate({ k: 'ok' }), { allow: true, v: 'ok' }, `after ${name}, the next evaluation is answered`)
  }
  t.same(resets, ['trap', 'trap', 'trap', 'abort', 'error'], 'one reset per fault, with its reason')
  t.same(engine.evaluate({ k: 'is_valid', s: '{"a":1}' }), { allow: true, v: true }, 'the builtin itself still works on other input')
})

t.test('the instance is also replaced in the background before the next evaluation', async t => {
  const { engine } = await engineFor(t, POLICY)
  t.equal(faultOf(t, engine, { k: 'is_valid', s: 'true' }), 'trap')
  await new Promise(resolve => setImmediate(resolve))
  t.same(engine.evaluate({ k: 'ok' }), { allow: true, v: 'ok' })
})

t.test('an evaluation that never returns is stopped after the timeout, and the engine serves the next', async t => {
  const { engine, resets } = await engineFor(t, LOOPING, { timeoutMs: 50 })
  t.equal(engine.guardedBecause, 'the module includes numbers.range, replace')
  t.same(engine.evaluate({ k: 'replace', s: 'abc', p: 'b' }), { allow: true, v: 'axc' }, 'guarded evaluations answer as before')
  const started = Date.now()
  t.equal(faultOf(t, engine, { k: 'replace', s: 'abc', p: '' }), 'timeout', 'replace(s, "", x) is cut off')
  t.ok(Date.now() - started < 10_000, 'it returned (without the watchdog it never does)')
  t.same(engine.evaluate({ k: 'ok' }), { allow: true, v: 'ok' })
  t.equal(faultOf(t, engine, { k: 'range', n: 1e9 }), 'timeout', 'numbers.range over a huge span is cut off')
  t.same(engine.evaluate({ k: 'range', n: 9 }), { allow: true, v: 10 })
  t.same(resets, ['timeout', 'timeout'])
})

const PLAIN = `package gateway.authz

decision := {"allow": json.is_valid(input.s)}
`

t.test('a policy without risky builtins runs without the watchdog', async t => {
  const { engine, resets } = await engineFor(t, PLAIN)
  t.equal(engine.guardedBecause, null)
  t.equal(faultOf(t, engine, { s: 'true' }), 'trap')
  t.same(engine.evaluate({ s: '{}' }), { allow: true })
  t.same(resets, ['trap'])
})

t.test('evaluationGuard always times every policy', async t => {
  const { engine } = await engineFor(t, PLAIN, { guard: 'always', timeoutMs: 1000 })
  t.equal(engine.guardedBecause, 'policy.evaluationGuard is always')
  t.same(engine.evaluate({ s: '{}' }), { allow: true })
  t.equal(faultOf(t, engine, { s: 'true' }), 'trap', 'a trap under the watchdog is still a trap')
  t.same(engine.evaluate({ s: '{}' }), { allow: true })
})

t.test('the decision-log mask entrypoint is recovered the same way', async t => {
  const dir = t.testdir({
    gateway: { 'authz.rego': 'package gateway.authz\n\ndecision := {"allow": true}\n' },
    system: { 'log.rego': 'package system.log\n\nmask contains "/input/secret" if json.is_valid(input.input.s)\n' }
  })
  const out = join(dir, 'bundle.tar.gz')
  await buildBundle({ policiesDir: dir, out, entrypoints: ['gateway/authz/decision', 'system/log/mask'], force: true })
  const engine = await createPolicyEngine(await readBundleFile(out), 'gateway/authz/decision')
  t.throws(() => engine.logMask!({ input: { s: 'true' }, result: null }), PolicyEvaluationFault)
  t.same(engine.logMask!({ input: { s: '{}' }, result: null }), ['/input/secret'])
  t.same(engine.evaluate({}), { allow: true })
})

t.test('the shipped policies run without the watchdog (no per-decision guard cost)', async t => {
  const { out } = await buildBundle({})
  const engine = await createPolicyEngine(await readBundleFile(out), 'gateway/authz/decision')
  t.equal(engine.guardedBecause, null)
})

t.test('inputs of any size and alphabet: the module memory grows as needed and every answer is whole', async t => {
  const { engine, resets } = await engineFor(t, `package gateway.authz

decision := {"allow": true, "v": concat("|", [input.s, input.t])} if input.k == "echo"
`)
  // Past the module's initial memory (5 pages of 64 KiB), then past what one growth gave; multibyte
  // text takes up to three bytes per UTF-16 unit, astral characters four per pair.
  for (const n of [7, 400_008, 49_994, 900_004]) { // whole repeats (7 units each): no pair cut in two
    const s = 'é€😀"\\\n'.repeat(Math.ceil(n / 7)).slice(0, n)
    const result = engine.evaluateJson(JSON.stringify({ k: 'echo', s, t: 'end' })) as { v: string }
    t.equal(result.v, `${s}|end`, `${n} UTF-16 units`)
  }
  t.same(engine.evaluate({ k: 'echo', s: 'a', t: 'b' }), { allow: true, v: 'a|b' }, 'a small one after the large ones')
  t.equal(engine.evaluate(undefined), undefined, 'no input: undefined decision')
  t.same(resets, [], 'nothing faulted')
})

t.test('results that repeat are parsed once, shared and frozen; different results stay apart', async t => {
  const { engine } = await engineFor(t, `package gateway.authz

decision := {"allow": true, "reasons": ["echo"], "headers": {"upstream": {"x-echo": input.v}}}
`)
  const a1 = engine.evaluate({ v: 'a' }) as { headers: { upstream: Record<string, string> } }
  const a2 = engine.evaluate({ v: 'a' })
  const b = engine.evaluate({ v: 'b' }) as { headers: { upstream: Record<string, string> } }
  t.equal(a1, a2, 'the same result text: the same value')
  t.not(a1, b)
  t.equal(a1.headers.upstream['x-echo'], 'a')
  t.equal(b.headers.upstream['x-echo'], 'b', 'another input\'s result is its own')
  t.ok(Object.isFrozen(a1) && Object.isFrozen(a1.headers.upstream), 'frozen all the way down')
  t.throws(() => { a1.headers.upstream['x-echo'] = 'changed' }, TypeError, 'a caller cannot change what other requests share')
  t.equal((engine.evaluate({ v: 'a' }) as typeof a1).headers.upstream['x-echo'], 'a')
  // More distinct results than the table keeps: each still the policy's own answer.
  for (let i = 0; i < 1100; i++) {
    const r = engine.evaluate({ v: `v${i}` }) as typeof a1
    if (r.headers.upstream['x-echo'] !== `v${i}`) t.fail(`result ${i} was another's`)
  }
  t.equal((engine.evaluate({ v: 'a' }) as typeof a1).headers.upstream['x-echo'], 'a', 'after it was forgotten from the table')
})
