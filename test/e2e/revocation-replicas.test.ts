import t from 'tap'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { sharedStoreSetup, startGatewayProcess, type GatewayProcess } from '../helpers/gateway-process.js'

// Two `portcullis start` processes sharing one real Redis, as two replicas behind a load balancer:
// a revocation made with `portcullis revoke` through one replica's admin API is refused at the other,
// survives a restart of that other replica, and is lifted everywhere by one call. Every admin call is
// in the audit log, and the admin token never is.

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname
const exec = promisify(execFile)

t.test('two replicas, one Redis: revocations reach both, and a replica that restarts', async t => {
  const { files, adminToken, tokenFile, client } = await sharedStoreSetup(t)
  const token = await files.token() // subject carol
  const hello = async (gw: GatewayProcess): Promise<{ status: number, code?: string }> => {
    const res = await client.send(`${gw.url}/hello`, { token })
    return { status: res.status, ...(res.status !== 200 ? { code: res.json<{ code: string }>().code } : {}) }
  }
  // Polls until `gw` answers `status`; the time it took is reported, not judged (timing never decides a test here).
  const until = async (gw: GatewayProcess, status: number): Promise<number> => {
    const start = performance.now()
    while ((await hello(gw)).status !== status) {
      if (performance.now() - start > 15_000) break
    }
    return performance.now() - start
  }

  const a = await startGatewayProcess(t, files.configFile)
  let b = await startGatewayProcess(t, files.configFile)
  t.same(await hello(a), { status: 200 })
  t.same(await hello(b), { status: 200 })

  const unauthenticated = await client.send(`${a.adminUrl}/admin/revocations`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"kind":"sub","value":"carol","ttlSeconds":60}' })
  t.equal(unauthenticated.status, 401, 'the admin API refuses a call without the admin token')
  t.same(await hello(b), { status: 200 }, 'and nothing was revoked')

  const revoke = await exec(process.execPath, [CLI, 'revoke', '--sub', 'carol', '--ttl', '10m', '--reason', 'token leaked',
    '--admin-url', a.adminUrl, '--token-file', tokenFile, '--actor', 'oncall-dana'])
  t.match(JSON.parse(revoke.stdout), { kind: 'sub', value: 'carol', reason: 'token leaked' }, 'portcullis revoke through replica A')
  const reachedB = await until(b, 401)
  t.same(await hello(b), { status: 401, code: 'GW_ERR_AUTHN_REVOKED' }, 'replica B refuses the revoked subject')
  t.same(await hello(a), { status: 401, code: 'GW_ERR_AUTHN_REVOKED' }, 'and so does replica A')
  t.comment(`replica B refused the revoked subject ${Math.round(reachedB)} ms after portcullis revoke returned`)

  // B restarts: it reads the stored set before it listens, so its very first answer is a refusal.
  b.child.kill('SIGTERM')
  t.equal(await b.exited, 0, 'replica B drained and exited')
  b = await startGatewayProcess(t, files.configFile)
  t.same(await hello(b), { status: 401, code: 'GW_ERR_AUTHN_REVOKED' }, 'the restarted replica refuses it from its first request')
  const listed = await client.send(`${b.adminUrl}/admin/revocations`, { token: adminToken })
  t.match(listed.json(), { revocations: [{ kind: 'sub', value: 'carol' }] }, 'and lists it')

  // Lifted through B: A lets the subject in again.
  const lifted = await client.send(`${b.adminUrl}/admin/revocations/sub/carol`, { method: 'DELETE', token: adminToken })
  t.equal(lifted.status, 204)
  await until(a, 200)
  t.same(await hello(a), { status: 200 }, 'replica A accepts the subject again')
  t.same(await hello(b), { status: 200 })

  // The audit trail: who, what, when, the outcome; never the token.
  await a.waitForLog(/"action":"revoke","result":"ok"/)
  const audit = a.log().split('\n').filter(l => l.includes('"admin audit"')).map(l => JSON.parse(l) as { audit: Record<string, unknown> })
  t.match(audit.map(l => l.audit), [
    { action: 'POST /admin/revocations', result: 'unauthenticated', remote_address: '127.0.0.1' },
    { action: 'revoke', result: 'ok', kind: 'sub', value: 'carol', actor: 'oncall-dana', reason: 'token leaked', at: String, until: String }
  ])
  // The CLI's refusals: usage errors exit 2, an admin API refusal exits 1 with its message.
  const cli = async (...args: string[]): Promise<{ code: number, stderr: string }> => exec(process.execPath, [CLI, ...args]).then(
    () => ({ code: 0, stderr: '' }), (err: { code: number, stderr: string }) => ({ code: err.code, stderr: err.stderr }))
  t.match(await cli('revoke', '--sub', 'carol', '--jti', 'x', '--ttl', '1m', '--admin-url', a.adminUrl, '--token-file', tokenFile), { code: 2, stderr: /exactly one of/ })
  t.match(await cli('revoke', '--sub', 'carol', '--ttl', 'soon', '--admin-url', a.adminUrl, '--token-file', tokenFile), { code: 2 })
  const wrongToken = join(files.dir, 'wrong-token')
  writeFileSync(wrongToken, randomBytes(32).toString('base64url'))
  t.match(await cli('revoke', '--sub', 'carol', '--ttl', '1m', '--admin-url', a.adminUrl, '--token-file', wrongToken), { code: 1, stderr: /admin API answered 401/ })
  t.same(await hello(a), { status: 200 }, 'none of them revoked anything')

  await b.waitForLog(/"action":"unrevoke","result":"ok"/)
  for (const gw of [a, b]) t.notOk(gw.log().includes(adminToken), 'the admin token is never logged')
})

t.test('two replicas, one Redis: a ban imposed by one is in force at the other, and one unban lifts it everywhere', async t => {
  const { files, tokenFile, client } = await sharedStoreSetup(t, 'bans: { default: { failures: 3, windowSeconds: 60, on: [authn], banSeconds: 600 } }')
  const token = await files.token()
  const hello = async (gw: GatewayProcess, bearer = token): Promise<{ status: number, code?: string }> => {
    const res = await client.send(`${gw.url}/hello`, { token: bearer })
    return { status: res.status, ...(res.status !== 200 ? { code: res.json<{ code: string }>().code } : {}) }
  }
  const until = async (gw: GatewayProcess, status: number): Promise<number> => {
    const start = performance.now()
    while ((await hello(gw)).status !== status && performance.now() - start < 15_000);
    return performance.now() - start
  }
  const a = await startGatewayProcess(t, files.configFile)
  const b = await startGatewayProcess(t, files.configFile)
  t.same(await hello(b), { status: 200 })

  // Three refused tokens at A: A bans this client IP, and tells B.
  for (let i = 0; i < 3; i++) t.equal((await hello(a, 'not-a-token')).status, 401)
  t.same(await hello(a), { status: 429, code: 'GW_ERR_RATE_BANNED' }, 'A bans the client IP')
  const reachedB = await until(b, 429)
  t.same(await hello(b), { status: 429, code: 'GW_ERR_RATE_BANNED' }, 'B refuses it too, though it saw no failure')
  t.comment(`replica B refused the banned IP ${Math.round(reachedB)} ms after A imposed the ban`)
  // A replica that starts later reads the shared bans before it serves.
  const c = await startGatewayProcess(t, files.configFile)
  t.same(await hello(c), { status: 429, code: 'GW_ERR_RATE_BANNED' }, 'a replica started afterwards refuses it from its first request')

  // One `portcullis unban` through B lifts it on A and C as well.
  const unban = await exec(process.execPath, [CLI, 'unban', '--ip', '127.0.0.1', '--admin-url', b.adminUrl, '--token-file', tokenFile])
  t.match(unban.stdout, /ban on ip 127\.0\.0\.1 lifted/)
  await until(a, 200)
  await until(c, 200)
  for (const [name, gw] of [['A', a], ['B', b], ['C', c]] as const) t.same(await hello(gw), { status: 200 }, `${name} lets the client in again`)
})
