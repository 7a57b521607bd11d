import t from 'tap'
import { httpsClient } from '../helpers/http.js'
import { gatewayFiles, startGatewayProcess, startPlainUpstream } from '../helpers/gateway-process.js'

// `portcullis start --workers 2`: two worker processes behind one port, one admin listener.

t.test('workers share the port; the primary\'s /metrics sums every worker; SIGTERM drains them all', async t => {
  const upstream = await startPlainUpstream(t, 'a')
  const files = await gatewayFiles(t)
  await files.writeConfig(upstream.url)
  const gw = await startGatewayProcess(t, files.configFile, ['--workers', '2'])
  const admin = httpsClient(t)
  while ((await admin.send(`${gw.adminUrl}/readyz`)).status !== 200) await new Promise(resolve => setTimeout(resolve, 100))
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

  gw.child.kill('SIGTERM')
  t.equal(await gw.exited, 0)
})
