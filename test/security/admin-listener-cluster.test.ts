import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { gatewayFiles, startGatewayProcess, startPlainUpstream } from '../helpers/gateway-process.js'
import { adminExchange, adminGet } from '../helpers/admin-raw.js'

// Issue #20 (8): with --workers, the cluster primary holds the admin listener; it gets the same
// protections as a single process's (Host allow-list, limits, TLS with client certificates, reply
// headers), through the real CLI.

t.test('the cluster primary\'s admin listener: TLS with a client certificate, Host allow-list, header limits, reply headers', async t => {
  const upstream = await startPlainUpstream(t, 'a')
  const files = await gatewayFiles(t)
  await files.writeConfig(upstream.url)
  const operator = await files.ca.issue({ commonName: 'operator', usage: 'client' })
  writeFileSync(join(files.dir, 'gw-client-ca.crt'), files.ca.cert)
  const config = readFileSync(files.configFile, 'utf8').replace('admin: { host: 127.0.0.1, port: 0 }',
    'admin: { host: 127.0.0.1, port: 0, hosts: [prometheus.internal], tls: { cert: gw.crt, key: gw.key, clientCa: gw-client-ca.crt } }\nlimits: { maxHeaders: 30, headersTimeoutMs: 1000 }')
  writeFileSync(files.configFile, config)
  const gw = await startGatewayProcess(t, files.configFile, ['--workers', '2'])
  t.match(gw.adminUrl, /^https:\/\/127\.0\.0\.1:\d+$/)
  const port = Number(new URL(gw.adminUrl).port)
  const tls = { ca: files.ca.cert, cert: operator.cert, key: operator.key }

  const anonymous = await adminExchange(port, adminGet('/healthz', '127.0.0.1'), { tls: { ca: files.ca.cert } })
  t.equal(anonymous.responses.length, 0, 'no client certificate, no answer')
  const live = (await adminExchange(port, adminGet('/healthz', '127.0.0.1'), { tls })).responses[0]
  t.equal(live?.status, 200, 'the operator is served')
  t.equal(live?.headers['x-content-type-options'], 'nosniff')
  t.equal(live?.headers['cache-control'], 'no-store')
  for (const host of ['evil.example', `evil.example:${port}`, 'prometheus.internal.evil.example', '203.0.113.9']) {
    const res = (await adminExchange(port, adminGet('/metrics', host), { tls })).responses[0]
    t.equal(res?.status, 421, `Host ${host} refused`)
    t.equal(res?.headers['cache-control'], 'no-store')
  }
  const named = (await adminExchange(port, adminGet('/healthz', `prometheus.internal:${port}`), { tls })).responses[0]
  t.equal(named?.status, 200, 'a name from admin.hosts is served')
  const many = (await adminExchange(port, adminGet('/healthz', '127.0.0.1', Array.from({ length: 31 }, (_, i) => `X-H${i}: v`)), { tls })).responses[0]
  t.equal(many?.status, 431, 'too many header fields')
  const silent = await adminExchange(port, '', { timeoutMs: 5000 })
  t.ok(silent.closed, 'a silent connection is closed')

  gw.child.kill('SIGTERM')
  t.equal(await gw.exited, 0)
})
