import t from 'tap'
import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isDeepStrictEqual, promisify } from 'node:util'
import fc from 'fast-check'
import { buildBundle, DEFAULT_BUNDLE, DEFAULT_POLICIES_DIR, resolveOpa } from '../../scripts/opa.mjs'
import { readBundleFile } from '../../src/pipeline/authorize/bundle.js'
import { createPolicyEngine } from '../../src/pipeline/authorize/policy-engine.js'

// Differential: the repository's policy, compiled to WASM and run by the gateway's engine, decides
// exactly as `opa eval` of the same Rego with the same data, for a thousand generated inputs.
// The seed is printed; set PORTCULLIS_DIFF_SEED to replay a run.

const RUNS = 1000
const seed = Number(process.env.PORTCULLIS_DIFF_SEED ?? Date.now() % 2 ** 31)
const run = promisify(execFile)

const text = fc.oneof(fc.string(), fc.string({ unit: 'grapheme', maxLength: 8 }))
const role = fc.oneof(fc.constantFrom('reader', 'writer', 'admin', 'Admin', 'admin ', 'reader,admin'), text, fc.integer(), fc.boolean(), fc.constant(null))
const claims = fc.record({
  roles: fc.oneof(fc.array(role, { maxLength: 4 }), text, fc.integer(), fc.constant(null)),
  tenant: text
}, { requiredKeys: [] })
const principal = fc.oneof(
  fc.constant(null),
  fc.record({
    type: fc.constantFrom('jwt', 'mtls', 'anonymous', 'other'),
    issuer: fc.constantFrom('https://issuer.example', ''),
    subject: fc.oneof(fc.constantFrom('alice', 'bob', ''), text),
    claims
  })
)
const segment = fc.oneof(fc.constantFrom('hello', 'orders', 'admin', 'users', '7'), fc.stringMatching(/^[A-Za-z0-9._~-]{1,8}$/))
const input = fc.record({
  method: fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'),
  segments: fc.array(segment, { maxLength: 4 }),
  query: fc.dictionary(fc.stringMatching(/^[a-z]{1,5}$/), fc.array(text, { minLength: 1, maxLength: 2 }), { maxKeys: 2 }),
  headers: fc.dictionary(fc.stringMatching(/^[a-z-]{1,10}$/), text, { maxKeys: 3 }),
  client: fc.record({ ip: fc.ipV4() }),
  tls: fc.constant({ client_certificate: null }),
  principal,
  route: fc.record({ id: fc.oneof(fc.constantFrom('hello', 'orders', 'admin'), fc.stringMatching(/^[a-z0-9_-]{1,8}$/)), metadata: fc.dictionary(fc.stringMatching(/^[a-z]{1,5}$/), text, { maxKeys: 2 }) }),
  time_ns: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })
}).map(i => ({ ...i, path: `/${i.segments.join('/')}` }))

t.test(`WASM decisions equal opa eval for ${RUNS} generated inputs (seed ${seed})`, async t => {
  await buildBundle({})
  const bundle = await readBundleFile(DEFAULT_BUNDLE)
  const engine = await createPolicyEngine(bundle, 'gateway/authz/decision')
  const cases = fc.sample(input, { numRuns: RUNS, seed })

  const dir = t.testdir()
  await writeFile(join(dir, 'input.json'), JSON.stringify({ cases }))
  await writeFile(join(dir, 'data.json'), JSON.stringify(bundle.data))
  // One opa process for all inputs; an undefined decision is [] on both sides.
  const query = 'results := [r | some c in input.cases; r := [d | d := data.gateway.authz.decision] with input as c]'
  const { stdout } = await run(await resolveOpa(), [
    'eval', '--format', 'json', '--input', join(dir, 'input.json'), '-d', join(dir, 'data.json'),
    '-d', join(DEFAULT_POLICIES_DIR, 'gateway', 'authz.rego'), query
  ], { maxBuffer: 64 * 1024 * 1024 })
  const expected = (JSON.parse(stdout) as { result: Array<{ bindings: { results: unknown[][] } }> }).result[0]!.bindings.results
  t.equal(expected.length, RUNS)

  const mismatches: Array<{ input: unknown, wasm: unknown, opa: unknown }> = []
  const outcomes = new Set<string>()
  cases.forEach((c, i) => {
    const value = engine.evaluate(c)
    const wasm = value === undefined ? [] : [value]
    if (!isDeepStrictEqual(wasm, expected[i])) mismatches.push({ input: c, wasm, opa: expected[i] })
    const d = value as { allow: boolean, reasons: string[] }
    outcomes.add(`${d.allow}:${d.reasons.join(',')}`)
  })
  t.same(mismatches.slice(0, 3), [], `no input where WASM and opa eval disagree (${mismatches.length} of ${RUNS})`)
  // The generator must reach the policy's branches, or agreement would mean little.
  t.ok([...outcomes].some(o => o.startsWith('true:')), 'some inputs are allowed')
  t.ok(outcomes.size >= 6, `many distinct decisions (${[...outcomes].sort().join(' | ')})`)
})
