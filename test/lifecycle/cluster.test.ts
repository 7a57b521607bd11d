import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { httpsClient } from '../helpers/http.js'
import { gatewayFiles, sharedStoreSetup, startGatewayProcess, startPlainUpstream } from '../helpers/gateway-process.js'

// `portcullis start --workers 2`: two worker processes behind one port, one admin listener.

t.test('workers share the port; the primary\'s /metrics sums every worker; SIGTERM drains them all', async t => {
  const upstream = await startPlainUpstream(t, 'a')
  const files = await gatewayFiles(t)
  await files.writeConfig(upstream.url)
  const gw = await startGatewayProcess(t, files.configFile, ['--workers', '2'])
  const admin = httpsClient(t)
  // Ready (200) once one worker is; "ready" rather than "degraded" once both are.
  while ((await admin.send(`${gw.adminUrl}/readyz`)).json<{ status: string }>().status !== 'ready') await new Promise(resolve => setTimeout(resolve, 100))
  const readyz = (await admin.send(`${gw.adminUrl}/readyz`)).json<{ workers: Array<{ pid: number, readiness: { ready: boolean } }> }>()
  t.equal(readyz.workers.length, 2)
  t.ok(readyz.workers.every(w => w.readiness.ready), 'each worker reports its own readiness')

  const status = (await admin.send(`${gw.adminUrl}/status`)).json<{ workers: Array<{ pid: number }>, routes: Array<{ id: string }> }>()
  t.equal(new Set(status.workers.map(w => w.pid)).size, 2, 'two worker processes')
  t.same(status.routes.map(r => r.id), ['hello'])

  // A new connection per request, so the primary spreads them over the workers.
  const token = await files.token()
  for (let i = 0; i < 10; i++) t.equal((await httpsClient(t, files.caFile).send(`${gw.url}/hello/${i}`, { token })).status, 200)
  const metrics = (await admin.send(`${gw.adminUrl}/metrics`)).text
  t.match(metrics, /^portcullis_requests_total\{route="hello",method="GET",outcome="forwarded",status_class="2xx"\} 10$/m, 'one total across workers')
  // The request histograms (observability/histogram.ts) are summed as prom-client's own were.
  t.match(metrics, /^portcullis_request_duration_seconds_bucket\{le="\+Inf",route="hello",method="GET",outcome="forwarded"\} 10$/m)
  t.match(metrics, /^portcullis_request_duration_seconds_count\{route="hello",method="GET",outcome="forwarded"\} 10$/m)
  t.match(metrics, /^portcullis_policy_evaluation_seconds_count 10$/m)
  t.match(metrics, /^portcullis_upstream_duration_seconds_count\{upstream="fn",status_class="2xx"\} 10$/m)

  gw.child.kill('SIGTERM')
  t.equal(await gw.exited, 0)
})

t.test('with Redis, the primary serves the admin API: a revocation or an unban there reaches every worker', async t => {
  const { files, adminToken, tokenFile, client } = await sharedStoreSetup(t, 'bans: { default: { failures: 2, windowSeconds: 60, on: [authn], banSeconds: 600 } }')
  const gw = await startGatewayProcess(t, files.configFile, ['--workers', '2'])
  while ((await client.send(`${gw.adminUrl}/readyz`)).json<{ status: string }>().status !== 'ready') await new Promise(resolve => setTimeout(resolve, 100))
  const token = await files.token() // subject carol
  // A new connection per request, so the primary spreads them over both workers.
  // The revoked requests go to /quiet, a route whose failures never ban, so that they do not ban this client.
  const statuses = async (bearer: string, path = '/quiet'): Promise<number[]> => {
    const out: number[] = []
    for (let i = 0; i < 6; i++) out.push((await httpsClient(t, files.caFile).send(`${gw.url}${path}`, { token: bearer })).status)
    return out
  }
  const untilAll = async (bearer: string, status: number): Promise<number[]> => {
    const start = performance.now()
    let seen = await statuses(bearer)
    while (!seen.every(s => s === status) && performance.now() - start < 15_000) seen = await statuses(bearer)
    return seen
  }
  t.same(await statuses(token), Array(6).fill(200))

  const revoke = await client.send(`${gw.adminUrl}/admin/revocations`, {
    method: 'POST', token: adminToken, headers: { 'content-type': 'application/json' }, body: '{"kind":"sub","value":"carol","ttlSeconds":600}'
  })
  t.equal(revoke.status, 201, revoke.text)
  t.same(await untilAll(token, 401), Array(6).fill(401), 'revoked through the primary: refused by every worker')
  t.match((await client.send(`${gw.adminUrl}/admin/revocations`, { token: adminToken })).json(), { revocations: [{ kind: 'sub', value: 'carol' }] })
  t.equal((await client.send(`${gw.adminUrl}/admin/revocations/sub/carol`, { method: 'DELETE', token: adminToken })).status, 204)
  t.same(await untilAll(token, 200), Array(6).fill(200), 'and let in again once lifted')

  // Each worker counts its own failures: bad tokens until one of them bans this client (two there).
  // The ban reaches the other worker; the primary lists it and lifts it for all.
  for (let i = 0; i < 20 && (await httpsClient(t, files.caFile).send(`${gw.url}/hello`, { token: 'not-a-token' })).status !== 429; i++);
  t.same(await untilAll(token, 429), Array(6).fill(429), 'banned: refused by both workers')
  const listed = (await client.send(`${gw.adminUrl}/admin/bans`, { token: adminToken })).json<{ bans: Array<{ scope: string, value: string }> }>()
  t.match(listed.bans, [{ scope: 'ip', value: '127.0.0.1' }], 'the primary, which saw no request, lists it: the ban came through Redis')
  t.equal((await client.send(`${gw.adminUrl}/admin/bans/ip/127.0.0.1`, { method: 'DELETE', token: adminToken })).status, 204)
  t.same(await untilAll(token, 200), Array(6).fill(200), 'one unban at the primary lifts it on every worker')

  // A rotated admin token takes effect on SIGHUP, as it does for a single process on reload.
  const rotated = 'rotated-'.padEnd(48, 'x')
  writeFileSync(tokenFile, rotated)
  gw.child.kill('SIGHUP')
  await gw.waitForLog(/admin token re-read/)
  t.equal((await client.send(`${gw.adminUrl}/admin/bans`, { token: adminToken })).status, 401, 'the old admin token is refused')
  t.equal((await client.send(`${gw.adminUrl}/admin/bans`, { token: rotated })).status, 200, 'the new one works')

  gw.child.kill('SIGTERM')
  t.equal(await gw.exited, 0)
})

t.test('the admin API with workers but without a shared store is refused at start', async t => {
  const upstream = await startPlainUpstream(t, 'a')
  const files = await gatewayFiles(t)
  await files.writeConfig(upstream.url)
  writeFileSync(`${files.dir}/admin-token`, 'x'.repeat(40))
  writeFileSync(files.configFile, readFileSync(files.configFile, 'utf8').replace('admin: { host: 127.0.0.1, port: 0 }', 'admin: { host: 127.0.0.1, port: 0, tokenFile: admin-token }'))
  await t.rejects(startGatewayProcess(t, files.configFile, ['--workers', '2']), /exited before .*needs rateLimit\.store\.type: redis/s,
    'an API that could reach no worker\'s lists is not started')
})
