import t from 'tap'
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import pino from 'pino'
import { Registry } from 'prom-client'
import type { Test } from 'tap'
import { validateConfig } from '../../../src/config/load.js'
import { createMetrics } from '../../../src/observability/metrics.js'
import { closeUpstreams, createUpstream } from '../../../src/pipeline/forward/upstreams.js'
import { createCa } from '../../../src/tls/pki.js'

// How long the gateway keeps an idle connection to a function open, against a real TLS server that
// counts the connections it accepts: a connection opened again is a new TLS handshake for the function.

const ca = await createCa('keep-alive test CA')
const cert = await ca.issue({ commonName: 'fn', ipAddresses: ['127.0.0.1'], usage: 'server' })

async function setup (t: Test, upstream: Record<string, unknown>, keepAliveHint?: number) {
  let connections = 0
  const server = createServer({ cert: cert.cert, key: cert.key }, (req, res) => {
    req.resume()
    if (keepAliveHint !== undefined) res.setHeader('keep-alive', `timeout=${keepAliveHint}`)
    res.end('ok')
  })
  // No idle timeout of the function's own, so only the gateway closes; 0 also keeps Node from sending a
  // Keep-Alive header of its own (most function platforms send none).
  server.keepAliveTimeout = 0
  server.on('secureConnection', () => { connections++ })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const dir = t.testdir({ 'server.crt': 'c\n', 'server.key': 'k\n', 'jwks.json': '{"keys":[]}\n', 'ca.crt': ca.cert })
  const config = await validateConfig({
    listen: { tls: { cert: 'server.crt', key: 'server.key' } },
    issuers: [{ id: 'idp', issuer: 'https://idp.example.com', audiences: ['api'], algorithms: ['ES256'], jwks: { file: 'jwks.json' } }],
    policy: { bundle: 'bundle.tar.gz' },
    upstreams: [{ id: 'fn', url: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, tls: { ca: 'ca.crt' }, ...upstream }],
    routes: [{ id: 'r', prefix: '/r', methods: ['GET'], upstream: 'fn' }]
  }, { baseDir: dir })
  const u = await createUpstream(config.upstreams[0]!, { log: pino({ level: 'silent' }), metrics: createMetrics(new Registry()) })
  t.teardown(async () => {
    await closeUpstreams(new Map([['fn', u]]))
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
  })
  const get = async (): Promise<number> => {
    const res = await u.pool.request({ path: '/', method: 'GET' })
    await res.body.text()
    return res.statusCode
  }
  return { get, connections: () => connections }
}

t.test('an idle connection outlives undici\'s 4 s by default, is closed after keepAliveTimeoutMs, and after a shorter Keep-Alive hint', async t => {
  const byDefault = await setup(t, {})
  const configured = await setup(t, { keepAliveTimeoutMs: 1000 })
  const hinted = await setup(t, {}, 3) // timeout=3: closed 2 s early, after 1 s
  for (const s of [byDefault, configured, hinted]) t.equal(await s.get(), 200)
  await sleep(2500)
  for (const s of [configured, hinted]) t.equal(await s.get(), 200)
  t.equal(configured.connections(), 2, 'keepAliveTimeoutMs 1000: a new connection 2.5 s later')
  t.equal(hinted.connections(), 2, 'Keep-Alive: timeout=3 from the function: a new connection 2.5 s later')
  // undici's idle timers are coarse: its own 4 s default closes at 4 to 5 s.
  await sleep(3500)
  t.equal(await byDefault.get(), 200)
  t.equal(byDefault.connections(), 1, 'default: the second request, 6 s later, went over the same connection')
})
