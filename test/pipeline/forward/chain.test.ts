import t from 'tap'
import { EventEmitter } from 'node:events'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import pino from 'pino'
import { Registry } from 'prom-client'
import type { Test } from 'tap'
import { validateConfig } from '../../../src/config/load.js'
import { GW_ERR_RATE_CONCURRENCY, GW_ERR_UPSTREAM_TOTAL_TIMEOUT } from '../../../src/errors.js'
import { createMetrics } from '../../../src/observability/metrics.js'
import { createChain } from '../../../src/pipeline/forward/chain.js'
import type { Exchange } from '../../../src/pipeline/forward/exchange.js'
import { closeUpstreams, createUpstream } from '../../../src/pipeline/forward/upstreams.js'

// The forward chain on a real pool against a real server on loopback that holds every request until
// the test answers it: the parts whose timing the end-to-end tests cannot pin down.

async function setup (t: Test, upstream: Record<string, unknown>) {
  const held: ServerResponse[] = []
  const server = createServer((req, res) => { req.resume(); held.push(res) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const dir = t.testdir({ 'server.crt': 'c\n', 'server.key': 'k\n', 'jwks.json': '{"keys":[]}\n' })
  const config = await validateConfig({
    listen: { tls: { cert: 'server.crt', key: 'server.key' } },
    issuers: [{ id: 'idp', issuer: 'https://idp.example.com', audiences: ['api'], algorithms: ['ES256'], jwks: { file: 'jwks.json' } }],
    policy: { bundle: 'bundle.tar.gz' },
    upstreams: [{ id: 'fn', url, plaintext: true, ...upstream }],
    routes: [{ id: 'r', prefix: '/r', methods: ['GET'], upstream: 'fn' }]
  }, { baseDir: dir })
  const metrics = createMetrics(new Registry())
  const log = pino({ level: 'silent' })
  const u = await createUpstream(config.upstreams[0]!, { log, metrics })
  const chain = createChain(u, { metrics })
  t.teardown(async () => {
    await closeUpstreams(new Map([['fn', u]]))
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
  })
  const client = new EventEmitter() as EventEmitter & { destroyed: boolean }
  client.destroyed = false
  const exchange = (subject: string, totalTimeoutMs = 60_000): Exchange => ({
    path: '/', method: 'GET', headers: {}, body: null, signal: new EventEmitter(), headersTimeout: 0, bodyTimeout: 0,
    routeId: 'r', host: 'fn', principal: { type: 'jwt', issuer: 'idp', subject, claims: {} } as unknown as Exchange['principal'],
    requestId: 'req', clientIp: '127.0.0.1', clientAuthorization: undefined, client: client as unknown as Exchange['client'],
    log, totalTimeoutMs, startedAt: 0
  })
  const send = async (x: Exchange) => chain.request(x).then(async r => { await r.body.text(); return r.statusCode }, (err: Error) => err)
  const arrived = async (n: number): Promise<void> => { while (held.length < n) await new Promise(resolve => setTimeout(resolve, 10)) }
  return { held, send, exchange, arrived, metrics }
}

t.test('the deadline reaches a request still waiting for a connection: 504 total timeout, not a client abort', async t => {
  const s = await setup(t, { connections: 1, maxQueue: 5, queueTimeoutMs: 60_000 })
  const first = s.send(s.exchange('alice'))
  await s.arrived(1)
  const waiting = await s.send(s.exchange('bob', 200))
  t.type(waiting, GW_ERR_UPSTREAM_TOTAL_TIMEOUT, 'the waiting request ended by its deadline')
  s.held[0]!.end('ok')
  t.equal(await first, 200, 'the request on the connection was not disturbed')
})

t.test('the per-caller cap holds a slot until the answer has ended, for that caller only', async t => {
  const s = await setup(t, { connections: 4, maxConcurrentPerIdentity: 1 })
  const first = s.send(s.exchange('alice'))
  await s.arrived(1)
  t.type(await s.send(s.exchange('alice')), GW_ERR_RATE_CONCURRENCY, 'alice\'s second request is refused')
  const bob = s.send(s.exchange('bob'))
  await s.arrived(2)
  for (const res of s.held) res.end('ok')
  t.same([await first, await bob], [200, 200])
  const again = s.send(s.exchange('alice'))
  await s.arrived(3)
  s.held[2]!.end('ok')
  t.equal(await again, 200, 'alice may send again once her answer ended')
})
