import t from 'tap'
import { readFileSync } from 'node:fs'
import { httpsClient } from '../helpers/http.js'
import { startDemoHarness } from '../helpers/demo.js'

// The demo function trusts nothing, not even the gateway's mTLS connection alone: every request must
// carry a fresh assertion for itself, checked with portcullis/verify, and the result is shown.

interface Seen {
  method: string
  path: string
  headers: Record<string, string>
  assertion: { verified: boolean, reason?: string, claims?: Record<string, any> }
}

t.test('through the gateway: the function verifies the assertion and shows who called and for what', async t => {
  const demo = await startDemoHarness(t)
  const res = await demo.client.send(`${demo.url}/orders/7?x=1`, { token: await demo.token({ sub: 'walt', roles: ['writer'] }), method: 'POST', body: '{"qty":2}', headers: { 'content-type': 'application/json' } })
  t.equal(res.status, 201)
  const seen = res.json<Seen>()
  t.equal(seen.assertion.verified, true)
  t.equal(seen.assertion.claims?.sub, 'walt')
  t.equal(seen.assertion.claims?.method, 'POST')
  t.equal(seen.assertion.claims?.path, '/orders/7?x=1')
  t.same(seen.assertion.claims?.claims, { roles: ['writer'] })
  t.type(seen.assertion.claims?.body_sha256, 'string', 'the demo binds bodies')
})

t.test('straight to the function with the gateway client certificate: no assertion, a replayed one, or one for another path are refused', async t => {
  const demo = await startDemoHarness(t)
  const through = await demo.client.send(`${demo.url}/hello/a`, { token: await demo.token() })
  const captured = through.json<Seen>().headers['x-portcullis-assertion']!
  t.ok(captured, 'the function received an assertion')
  // Someone holding the gateway's client key (or a confused deputy inside the network) calls directly.
  const direct = httpsClient(t, demo.paths.caCert, { cert: readFileSync(demo.paths.gatewayClientCert, 'utf8'), key: readFileSync(demo.paths.gatewayClientKey, 'utf8') })
  const cases: Array<[string, string, Record<string, string>, string]> = [
    ['no assertion', '/hello/a', {}, 'missing'],
    ['replayed', '/hello/a', { 'x-portcullis-assertion': captured }, 'replayed'],
    ['another path', '/admin/users', { 'x-portcullis-assertion': captured }, 'path_mismatch']
  ]
  for (const [name, path, headers, reason] of cases) {
    const res = await direct.send(`${demo.fn.url}${path}`, { headers })
    t.equal(res.status, 401, name)
    t.equal(res.json<Seen>().assertion.reason, reason, `${name}: ${reason}`)
  }
})
