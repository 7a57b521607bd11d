import t from 'tap'
import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { buildBundle, DEFAULT_BUNDLE, DEFAULT_POLICIES_DIR, resolveOpa } from '../../scripts/opa.mjs'
import { readBundleFile } from '../../src/pipeline/authorize/bundle.js'
import { createPolicyEngine } from '../../src/pipeline/authorize/policy-engine.js'

// Issue 18: gateway/authz forwards x-portcullis-roles built from a sorted list, so the gateway's WASM
// and `opa eval` agree whether the roles claim is an array or an object (whose values OPA and the
// WASM runtime iterate in different orders), and the order of the claim does not matter.

const run = promisify(execFile)
const ROLES: Array<[string, unknown]> = [
  ['array', ['writer', 'reader', 'admin']],
  ['array, other order, repeats', ['admin', 'reader', 'writer', 'reader']],
  ['object', { z: 'writer', a: 'reader', m: 'admin' }],
  ['object, other key order', { a: 'admin', b: 'writer', c: 'reader' }]
]

t.test('x-portcullis-roles is the same sorted list in WASM and opa eval, whatever the claim shape', async t => {
  await buildBundle({})
  const bundle = await readBundleFile(DEFAULT_BUNDLE)
  const engine = await createPolicyEngine(bundle, 'gateway/authz/decision')
  const cases = ROLES.map(([, roles]) => ({
    method: 'GET', path: '/orders', segments: ['orders'], query: {}, headers: {}, client: { ip: '192.0.2.10' },
    tls: { client_certificate: null }, principal: { type: 'jwt', issuer: 'https://issuer.example', subject: 'alice', claims: { roles } },
    route: { id: 'orders', metadata: {} }, time_ns: 0
  }))
  const dir = t.testdir()
  await writeFile(join(dir, 'input.json'), JSON.stringify({ cases }))
  await writeFile(join(dir, 'data.json'), JSON.stringify(bundle.data))
  const { stdout } = await run(await resolveOpa(), [
    'eval', '--format', 'json', '--input', join(dir, 'input.json'), '-d', join(dir, 'data.json'),
    '-d', join(DEFAULT_POLICIES_DIR, 'gateway', 'authz.rego'),
    'results := [r | some c in input.cases; r := data.gateway.authz.decision with input as c]'
  ])
  const expected = (JSON.parse(stdout) as { result: Array<{ bindings: { results: unknown[] } }> }).result[0]!.bindings.results
  ROLES.forEach(([name], i) => {
    const wasm = engine.evaluate(cases[i]) as { headers?: { upstream?: Record<string, string> } }
    t.same(wasm, expected[i], `${name}: the gateway decides as opa eval`)
    t.equal(wasm.headers?.upstream?.['x-portcullis-roles'], 'admin,reader,writer', `${name}: sorted, without repeats`)
  })
})
