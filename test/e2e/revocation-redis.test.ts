import t from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startDemoHarness } from '../helpers/demo.js'
import { startRedis } from '../helpers/redis.js'

// Revocations shared through a real Redis that goes away: a gateway that never read the shared set
// refuses (it cannot tell who is revoked), recovers when Redis comes back, and a Redis that restarts
// empty gets the revocations back from the gateway instead of forgetting them.

const sleep = async (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

t.test('Redis down at start: fail closed; back: serving; restarted empty: the revocations are restored', async t => {
  const redis = await startRedis(t)
  await redis.stop()
  const secrets = mkdtempSync(join(tmpdir(), 'portcullis-admin-'))
  t.teardown(() => rmSync(secrets, { recursive: true, force: true }))
  const adminToken = randomBytes(32).toString('base64url')
  writeFileSync(join(secrets, 'token'), adminToken)
  const demo = await startDemoHarness(t, {
    configure: raw => {
      raw.admin.tokenFile = join(secrets, 'token')
      raw.rateLimit = { store: { type: 'redis', url: redis.url, commandTimeoutMs: 500 } }
      raw.routes = [{ id: 'hello', prefix: '/hello', methods: ['GET'], upstream: 'demo-function', rateLimit: { max: 1000, windowSeconds: 60, onStoreError: 'local' } }]
    }
  })
  const alice = await demo.token({ sub: 'alice' })
  const bob = await demo.token({ sub: 'bob' })
  const hello = async (token: string): Promise<number> => (await demo.client.send(`${demo.url}/hello`, { token })).status

  const refused = await demo.client.send(`${demo.url}/hello`, { token: alice })
  t.equal(refused.status, 503, 'never read the shared set: refused')
  t.equal(refused.json().code, 'GW_ERR_AUTHN_REVOCATION_UNAVAILABLE')
  const ready = await demo.client.send(`${demo.adminUrl}/readyz`)
  t.equal(ready.status, 503)
  t.equal(ready.json<{ checks: Record<string, boolean> }>().checks.revocations, false, '/readyz says why')
  const revoke = async (): Promise<number> => (await demo.client.send(`${demo.adminUrl}/admin/revocations`, {
    method: 'POST', token: adminToken, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ kind: 'sub', value: 'alice', ttlSeconds: 600 })
  })).status
  t.equal(await revoke(), 503, 'a revocation that cannot be shared is refused, not kept quietly in one process')

  await redis.start()
  while (await hello(bob) !== 200) await sleep(100)
  t.pass('serving once Redis answers')
  t.equal(await revoke(), 201)
  t.equal(await hello(alice), 401)
  t.equal((await redis.command('HLEN portcullis:revoked')).trim(), ':1', 'stored in Redis')

  // Redis restarts with nothing in it (no persistence).
  await redis.stop()
  t.equal(await hello(alice), 401, 'while Redis is down, the last copy still holds')
  t.equal(await hello(bob), 200, 'and others are served')
  await redis.start()
  while ((await redis.command('HLEN portcullis:revoked')).trim() !== ':1') await sleep(100)
  t.pass('the gateway put its copy back into the empty Redis')
  t.equal(await hello(alice), 401, 'alice is still refused')
})
