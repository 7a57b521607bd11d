import t, { type Test } from 'tap'
import { copyFile, mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { buildBundle, DEFAULT_BUNDLE } from '../../scripts/opa.mjs'
import { upstreamCalls } from '../helpers/authn.js'
import { startDemoHarness } from '../helpers/demo.js'

// Fail closed: whatever goes wrong with the policy, the request is refused and the function is not called.

async function compile (t: Test, rego: string): Promise<string> {
  const dir = t.testdir({ gateway: { 'authz.rego': rego } })
  const out = join(dir, 'bundle.tar.gz')
  await buildBundle({ policiesDir: dir, out, force: true })
  return out
}

t.test('a policy that errors at evaluation denies with 500', async t => {
  const bundle = await compile(t, `package gateway.authz

decision := {"allow": true} if input.method == "GET"

decision := {"allow": false} if startswith(input.path, "/hello")
`)
  const demo = await startDemoHarness(t, { bundle })
  const res = await demo.client.send(`${demo.url}/hello`, { token: await demo.token() })
  t.equal(res.status, 500)
  t.equal(res.json().code, 'GW_ERR_AUTHZ_POLICY_ERROR')
  t.notMatch(res.text, /conflict|\.rego|assignment/i, 'no policy source or OPA error text leaks to the client')
  t.equal(await upstreamCalls(demo), 0)
  const metrics = (await demo.client.send(`${demo.adminUrl}/metrics`)).text
  t.match(metrics, /portcullis_policy_decisions_total\{route="hello",result="error"\} 1/)
})

t.test('an undefined or malformed decision denies', async t => {
  const bundle = await compile(t, `package gateway.authz

decision := {"allow": true} if input.method == "POST"

decision := {"allow": "yes"} if input.method == "DELETE"
`)
  const demo = await startDemoHarness(t, { bundle })
  const token = await demo.token({ roles: ['admin'] })
  const undefinedDecision = await demo.client.send(`${demo.url}/orders`, { token })
  t.equal(undefinedDecision.status, 500)
  t.equal(undefinedDecision.json().code, 'GW_ERR_AUTHZ_BAD_DECISION')
  const malformed = await demo.client.send(`${demo.url}/orders`, { method: 'DELETE', token })
  t.equal(malformed.status, 500)
  t.equal(malformed.json().code, 'GW_ERR_AUTHZ_BAD_DECISION')
  t.equal(await upstreamCalls(demo), 0)
  t.equal((await demo.client.send(`${demo.url}/orders`, { method: 'POST', token })).status, 201, 'the defined case still works')
})

t.test('a bare boolean decision is read as {allow}', async t => {
  const bundle = await compile(t, `package gateway.authz

default decision := false

decision if input.principal.subject == "alice"
`)
  const demo = await startDemoHarness(t, { bundle })
  t.equal((await demo.client.send(`${demo.url}/hello`, { token: await demo.token({ sub: 'alice' }) })).status, 200)
  t.equal((await demo.client.send(`${demo.url}/hello`, { token: await demo.token({ sub: 'bob' }) })).status, 403)
})

t.test('no bundle: not ready and 503; a good bundle makes it ready; a bad one never replaces it', async t => {
  const dir = t.testdir()
  const bundle = join(dir, 'active', 'bundle.tar.gz')
  const demo = await startDemoHarness(t, { bundle })
  const token = await demo.token()

  const notReady = await demo.client.send(`${demo.adminUrl}/readyz`)
  t.equal(notReady.status, 503)
  t.equal(notReady.json<{ checks: { policy: boolean } }>().checks.policy, false)
  const refused = await demo.client.send(`${demo.url}/hello`, { token })
  t.equal(refused.status, 503)
  t.equal(refused.json().code, 'GW_ERR_AUTHZ_NOT_READY')
  t.equal(await upstreamCalls(demo), 0)

  await mkdir(join(dir, 'active'))
  await buildBundle({})
  await copyFile(DEFAULT_BUNDLE, bundle)
  t.equal(await demo.gateway.gateway.policy.reload(), true)
  t.equal((await demo.client.send(`${demo.adminUrl}/readyz`)).status, 200)
  t.equal((await demo.client.send(`${demo.url}/hello`, { token })).status, 200)
  const revision = demo.gateway.gateway.policy.current?.revision

  await writeFile(bundle, 'not a bundle')
  t.equal(await demo.gateway.gateway.policy.reload(), false)
  t.equal(demo.gateway.gateway.policy.current?.revision, revision, 'the good bundle stays active')
  t.equal((await demo.client.send(`${demo.url}/hello`, { token })).status, 200)
  const metrics = (await demo.client.send(`${demo.adminUrl}/metrics`)).text
  t.match(metrics, /portcullis_policy_bundle_load_failures_total 2/, 'the missing and the corrupt bundle were counted')
})

t.test('a bundle without the configured entrypoint is rejected', async t => {
  const dir = t.testdir({ gateway: { 'other.rego': 'package gateway.other\n\nallow := true\n' } })
  const out = join(dir, 'bundle.tar.gz')
  await buildBundle({ policiesDir: dir, out, entrypoints: ['gateway/other/allow'], force: true })
  const demo = await startDemoHarness(t, { bundle: out })
  t.equal(demo.gateway.gateway.policy.current, null)
  t.equal((await demo.client.send(`${demo.url}/hello`, { token: await demo.token() })).status, 503)
})
