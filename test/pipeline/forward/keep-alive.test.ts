import t from 'tap'
import { EventEmitter } from 'node:events'
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { createServer as createTlsServer } from 'node:tls'
import pino from 'pino'
import { Registry } from 'prom-client'
import type { Test } from 'tap'
import { validateConfig } from '../../../src/config/load.js'
import { createMetrics } from '../../../src/observability/metrics.js'
import { createChain } from '../../../src/pipeline/forward/chain.js'
import type { Exchange } from '../../../src/pipeline/forward/exchange.js'
import { closeUpstreams, createUpstream } from '../../../src/pipeline/forward/upstreams.js'
import { createCa } from '../../../src/tls/pki.js'

// How long the gateway keeps an idle connection to a function open, and what happens when the function
// closes one as a request goes out: against real TLS servers that count the connections they accept (a
// connection opened again is a new TLS handshake for the function), through the forward chain.

const ca = await createCa('keep-alive test CA')
const cert = await ca.issue({ commonName: 'fn', ipAddresses: ['127.0.0.1'], usage: 'server' })
const sleep = async (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** A real TLS function that answers every request, optionally with a Keep-Alive hint, and counts its connections. */
async function answeringFunction (t: Test, keepAliveHint?: number) {
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
  t.teardown(async () => {
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
  })
  return { port: (server.address() as AddressInfo).port, connections: () => connections }
}

/** The upstream `fn` at `port` and its forward chain (retry included), as the gateway builds them. */
async function gatewayTo (t: Test, port: number, upstream: Record<string, unknown> = {}) {
  const dir = t.testdir({ 'server.crt': 'c\n', 'server.key': 'k\n', 'jwks.json': '{"keys":[]}\n', 'ca.crt': ca.cert })
  const config = await validateConfig({
    listen: { tls: { cert: 'server.crt', key: 'server.key' } },
    issuers: [{ id: 'idp', issuer: 'https://idp.example.com', audiences: ['api'], algorithms: ['ES256'], jwks: { file: 'jwks.json' } }],
    policy: { bundle: 'bundle.tar.gz' },
    upstreams: [{ id: 'fn', url: `https://127.0.0.1:${port}`, tls: { ca: 'ca.crt' }, ...upstream }],
    routes: [{ id: 'r', prefix: '/r', methods: ['GET'], upstream: 'fn' }]
  }, { baseDir: dir })
  const registry = new Registry()
  const metrics = createMetrics(registry)
  const log = pino({ level: 'silent' })
  const u = await createUpstream(config.upstreams[0]!, { log, metrics })
  const chain = createChain(u, { metrics })
  t.teardown(async () => { await closeUpstreams(new Map([['fn', u]])) })
  const client = Object.assign(new EventEmitter(), { destroyed: false })
  const exchange = (): Exchange => ({
    path: '/', method: 'GET', headers: {}, body: null, signal: new EventEmitter(), headersTimeout: 0, bodyTimeout: 0,
    routeId: 'r', host: 'fn', principal: { type: 'anonymous', claims: {} } as unknown as Exchange['principal'],
    requestId: 'req', clientIp: '127.0.0.1', clientAuthorization: undefined, client: client as unknown as Exchange['client'],
    log, totalTimeoutMs: 10_000, startedAt: 0
  })
  const get = async (): Promise<number> => {
    const res = await chain.request(exchange())
    await res.body.text()
    return res.statusCode
  }
  const retries = async (): Promise<number> => (await registry.getSingleMetric('portcullis_upstream_retries_total')!.get()).values[0]?.value ?? 0
  return { get, retries }
}

t.test('an idle connection outlives undici\'s 4 s by default, is closed after keepAliveTimeoutMs, and after a shorter Keep-Alive hint', async t => {
  const fns = { byDefault: await answeringFunction(t), configured: await answeringFunction(t), hinted: await answeringFunction(t, 3) }
  const byDefault = await gatewayTo(t, fns.byDefault.port)
  const configured = await gatewayTo(t, fns.configured.port, { keepAliveTimeoutMs: 1000 })
  const hinted = await gatewayTo(t, fns.hinted.port) // timeout=3: closed 2 s early, after 1 s
  for (const g of [byDefault, configured, hinted]) t.equal(await g.get(), 200)
  await sleep(2500)
  for (const g of [configured, hinted]) t.equal(await g.get(), 200)
  t.equal(fns.configured.connections(), 2, 'keepAliveTimeoutMs 1000: a new connection 2.5 s later')
  t.equal(fns.hinted.connections(), 2, 'Keep-Alive: timeout=3 from the function: a new connection 2.5 s later')
  // undici's idle timers are coarse: its own 4 s default closes at 4 to 5 s.
  await sleep(3500)
  t.equal(await byDefault.get(), 200)
  t.equal(fns.byDefault.connections(), 1, 'default: the second request, 6 s later, went over the same connection')
})

/**
 * A function that answers the first request on each connection and closes the connection when the
 * next one arrives: without answering (`kept`, what a kept-alive connection looks like when the
 * function's server closes it as a request goes out), or half way through the answer (`mid-answer`).
 * `new` closes on the first request already, without answering.
 */
async function closingFunction (t: Test, mode: 'kept' | 'mid-answer' | 'new') {
  let connections = 0
  let requests = 0
  const server = createTlsServer({ cert: cert.cert, key: cert.key }, socket => {
    connections++
    let served = 0
    let seen = ''
    socket.on('data', (chunk: Buffer) => {
      seen += chunk.toString('latin1')
      while (seen.includes('\r\n\r\n')) {
        seen = seen.slice(seen.indexOf('\r\n\r\n') + 4)
        requests++
        if (mode === 'new' || served > 0) {
          if (mode === 'mid-answer') socket.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok')
          socket.end()
          return
        }
        served++
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok')
      }
    })
    socket.on('error', () => {})
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => new Promise<void>(resolve => server.close(() => resolve())))
  return { port: (server.address() as AddressInfo).port, connections: () => connections, requests: () => requests }
}

t.test('a kept-alive connection the function closes as a request goes out: a GET is sent again on a new one', async t => {
  const fn = await closingFunction(t, 'kept')
  const g = await gatewayTo(t, fn.port)
  t.equal(await g.get(), 200, 'the first request, on a new connection')
  await sleep(50) // the pool marks the connection free again a moment after the answer has ended
  t.equal(await g.get(), 200, 'the second: the function closed the kept connection, the retry opened another')
  t.equal(fn.connections(), 2)
  t.equal(fn.requests(), 3, 'the function saw the second request twice, once on each connection')
  t.equal(await g.retries(), 1, 'counted as a retry')
})

t.test('a function that closes a new connection without answering: no retry, the request fails', async t => {
  const fn = await closingFunction(t, 'new')
  const g = await gatewayTo(t, fn.port)
  t.type(await g.get().catch((err: unknown) => err), Error, 'the request failed')
  t.equal(fn.requests(), 1, 'the function saw it once')
  t.equal(await g.retries(), 0)
})

t.test('a kept-alive connection the function closes half way through its answer: no retry, the body fails', async t => {
  const fn = await closingFunction(t, 'mid-answer')
  const g = await gatewayTo(t, fn.port)
  t.equal(await g.get(), 200)
  await sleep(50)
  t.type(await g.get().catch((err: unknown) => err), Error, 'the answer had begun: its body fails')
  t.equal(fn.requests(), 2, 'the function saw the second request once')
  t.equal(await g.retries(), 0)
})
