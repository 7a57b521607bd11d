import t from 'tap'
import { join } from 'node:path'
import { buildBundle } from '../../scripts/opa.mjs'
import { startDemoHarness } from '../helpers/demo.js'

// Routes may name their own policy entrypoint; the others use the default one.

const POLICY = `package gateway.authz

default decision := {"allow": false, "reasons": ["default.deny"]}

decision := {"allow": true, "reasons": ["default.allow"]} if input.principal.subject == "alice"

default admin_decision := {"allow": false, "reasons": ["admin.deny"], "status": 403, "message": "admins only"}

admin_decision := {"allow": true, "reasons": ["admin.allow"]} if "admin" in input.principal.claims.roles
`

t.test('a route with its own entrypoint is judged by it; the others by the default', async t => {
  const dir = t.testdir({ policies: { gateway: { 'authz.rego': POLICY } } })
  const both = join(dir, 'both.tar.gz')
  await buildBundle({ policiesDir: join(dir, 'policies'), out: both, entrypoints: ['gateway/authz/decision', 'gateway/authz/admin_decision'], force: true })
  const demo = await startDemoHarness(t, {
    bundle: both,
    configure: c => { c.routes.find((r: { id: string }) => r.id === 'admin').entrypoint = 'gateway/authz/admin_decision' }
  })
  const alice = await demo.token({ sub: 'alice', roles: ['reader'] })
  t.equal((await demo.client.send(`${demo.url}/hello`, { token: alice })).status, 200, 'default entrypoint allows alice')
  const denied = await demo.client.send(`${demo.url}/admin/users`, { token: alice })
  t.equal(denied.status, 403)
  t.equal(denied.json().error, 'admins only', 'the admin entrypoint decided')
  t.equal((await demo.client.send(`${demo.url}/admin/users`, { token: await demo.token({ sub: 'root', roles: ['admin'] }) })).status, 200)
  t.equal((await demo.client.send(`${demo.url}/hello`, { token: await demo.token({ sub: 'root', roles: ['admin'] }) })).status, 403, 'hello still uses the default')

  // A bundle without the route's entrypoint is never activated.
  const onlyDefault = join(dir, 'only-default.tar.gz')
  await buildBundle({ policiesDir: join(dir, 'policies'), out: onlyDefault, force: true })
  const partial = await startDemoHarness(t, {
    bundle: onlyDefault,
    configure: c => { c.routes.find((r: { id: string }) => r.id === 'admin').entrypoint = 'gateway/authz/admin_decision' }
  })
  const status = (await partial.client.send(`${partial.adminUrl}/status`)).json<{ policy: { revision: null, last_error: { message: string } } }>().policy
  t.equal(status.revision, null)
  t.match(status.last_error.message, 'bundle has no entrypoint "gateway/authz/admin_decision"')
  t.equal((await partial.client.send(`${partial.url}/hello`, { token: await partial.token({ sub: 'alice' }) })).status, 503)
})
