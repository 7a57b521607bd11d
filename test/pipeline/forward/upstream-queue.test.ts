import t from 'tap'
import { EventEmitter } from 'node:events'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Test } from 'tap'
import { errors as undiciErrors, Pool } from 'undici'
import { createUpstreamQueue, UpstreamQueueFull, UpstreamQueueTimeout, UpstreamShutdown } from '../../../src/pipeline/forward/upstream-queue.js'

// The bounded wait for a connection, on a real undici Pool against a real server on loopback that
// holds every request until the test answers it.

async function setup (t: Test, opts: { connections: number, maxQueue: number, queueTimeoutMs: number, fair?: boolean }) {
  const held: Array<{ url: string, res: ServerResponse }> = []
  let notify: (() => void) | undefined
  const server = createServer((req, res) => { req.resume(); held.push({ url: req.url ?? '', res }); notify?.() })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { connections: opts.connections })
  let gauge = 0
  const queue = createUpstreamQueue(pool, { ...opts, onWaiting: d => { gauge += d } })
  // As in the forward chain: shed at the front (before credentials), the wait itself at the pool.
  const dispatcher = pool.compose(queue.interceptor, queue.shed)
  t.teardown(async () => {
    await pool.destroy()
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
  })
  const arrived = async (n: number): Promise<void> => new Promise(resolve => {
    notify = () => { if (held.length >= n) resolve() }
    notify()
  })
  // `subject`: the caller, as the forward chain's options carry it (caller-cap.ts callerOf).
  const get = async (path: string, signal?: EventEmitter, subject?: string) => dispatcher.request({
    path,
    method: 'GET',
    ...(signal !== undefined ? { signal } : {}),
    ...(subject !== undefined ? { principal: { type: 'jwt', issuer: 'https://idp.test', subject }, clientIp: '127.0.0.1' } : {})
  } as Parameters<typeof dispatcher.request>[0])
    .then(async r => { await r.body.text(); return r.statusCode }, (err: Error) => err)
  const answer = (i: number): void => { held[i]!.res.end('ok') }
  /** Answers the first n requests, each once it has arrived (one connection: one after the other). */
  const serve = async (n: number): Promise<void> => {
    for (let i = 0; i < n; i++) { await arrived(i + 1); answer(i) }
  }
  return { held, queue, gauge: () => gauge, arrived, get, answer, serve }
}

t.test('requests wait in order for a busy pool, up to maxQueue; one more is refused at once', async t => {
  const s = await setup(t, { connections: 1, maxQueue: 2, queueTimeoutMs: 60_000 })
  const first = s.get('/1')
  await s.arrived(1)
  const second = s.get('/2')
  const third = s.get('/3')
  t.equal(s.queue.waiting, 2)
  t.equal(s.gauge(), 2)
  t.ok(s.queue.full)
  t.type(await s.get('/4'), UpstreamQueueFull, 'the queue is full: refused without waiting')
  s.answer(0)
  t.equal(await first, 200)
  await s.arrived(2)
  t.equal(s.held[1]!.url, '/2', 'first come, first served')
  s.answer(1)
  await s.arrived(3)
  s.answer(2)
  t.same([await second, await third], [200, 200])
  t.equal(s.gauge(), 0)
  t.notOk(s.queue.full)
})

t.test('a request waits at most queueTimeoutMs, and then leaves without costing a connection', async t => {
  const s = await setup(t, { connections: 1, maxQueue: 5, queueTimeoutMs: 100 })
  const first = s.get('/1')
  await s.arrived(1)
  t.type(await s.get('/late'), UpstreamQueueTimeout)
  t.equal(s.queue.waiting, 0)
  s.answer(0)
  t.equal(await first, 200)
  const next = s.get('/next')
  await s.arrived(2)
  t.equal(s.held[1]!.url, '/next', 'the timed-out request never reached the server')
  s.answer(1)
  t.equal(await next, 200)
})

t.test('a waiting request whose signal aborts (client gone, total deadline) fails at once, as aborted', async t => {
  const s = await setup(t, { connections: 1, maxQueue: 5, queueTimeoutMs: 60_000 })
  const first = s.get('/1')
  await s.arrived(1)
  const signal = new EventEmitter()
  const waiting = s.get('/2', signal)
  signal.emit('abort')
  t.type(await waiting, undiciErrors.RequestAbortedError)
  t.equal(s.queue.waiting, 0)
  t.equal(s.gauge(), 0)
  s.answer(0)
  t.equal(await first, 200)
})

t.test('close() fails every waiting request and every later one with its error', async t => {
  const s = await setup(t, { connections: 1, maxQueue: 5, queueTimeoutMs: 60_000 })
  const first = s.get('/1')
  await s.arrived(1)
  const waiting = s.get('/2')
  s.queue.close(new UpstreamShutdown())
  t.type(await waiting, UpstreamShutdown)
  t.type(await s.get('/3'), UpstreamShutdown)
  s.answer(0)
  t.equal(await first, 200, 'what was already on a connection finishes')
})

t.test('maxQueue 0: nothing waits', async t => {
  const s = await setup(t, { connections: 1, maxQueue: 0, queueTimeoutMs: 60_000 })
  const first = s.get('/1')
  await s.arrived(1)
  t.type(await s.get('/2'), UpstreamQueueFull)
  s.answer(0)
  t.equal(await first, 200)
  // undici hands the connection back (its 'drain') one event-loop turn after the response ended.
  await new Promise(resolve => setImmediate(resolve))
  const again = s.get('/3')
  await s.arrived(2)
  s.answer(1)
  t.equal(await again, 200, 'a free connection is used again')
})

// Issue #21: an HTTP/2 client with a valid token opens (and resets) streams faster than they are
// served; first come, first served, it filled the queue and a normal caller got 503.
t.test('per identity: waiters leave in turn by caller, not in arrival order', async t => {
  const s = await setup(t, { connections: 1, maxQueue: 10, queueTimeoutMs: 60_000, fair: true })
  const first = s.get('/busy', undefined, 'alice')
  await s.arrived(1)
  const waiting = [s.get('/m1', undefined, 'mallory'), s.get('/m2', undefined, 'mallory'), s.get('/m3', undefined, 'mallory'), s.get('/a1', undefined, 'alice')]
  t.equal(s.queue.waiting, 4)
  await s.serve(5)
  t.same(s.held.map(h => h.url), ['/busy', '/m1', '/a1', '/m2', '/m3'], 'alice\'s request is served after one of mallory\'s, not after all three')
  t.same(await Promise.all([first, ...waiting]), [200, 200, 200, 200, 200])
  t.equal(s.gauge(), 0)
})

t.test('per identity: a full queue makes room for a caller holding fewer; the displaced request gets UpstreamQueueFull', async t => {
  const s = await setup(t, { connections: 1, maxQueue: 3, queueTimeoutMs: 60_000, fair: true })
  const first = s.get('/busy', undefined, 'mallory')
  await s.arrived(1)
  const m = [s.get('/m1', undefined, 'mallory'), s.get('/m2', undefined, 'mallory'), s.get('/m3', undefined, 'mallory')]
  t.ok(s.queue.full)
  t.type(await s.get('/m4', undefined, 'mallory'), UpstreamQueueFull, 'mallory, holding the whole queue, gets no more of it')
  const a1 = s.get('/a1', undefined, 'alice')
  t.type(await m[2], UpstreamQueueFull, 'mallory\'s newest waiter made room for alice')
  t.equal(s.queue.waiting, 3)
  t.type(await s.get('/a2', undefined, 'alice'), UpstreamQueueFull, 'alice (1) may not displace mallory (2): that would only swap who holds more')
  const b1 = s.get('/b1', undefined, 'bob')
  t.type(await m[1], UpstreamQueueFull, 'bob (0) displaces mallory (2) too: now one each')
  t.type(await s.get('/c1', undefined, 'carol'), UpstreamQueueFull, 'carol (0) may not displace anyone holding one: the queue is shared fairly')
  t.equal(s.gauge(), 3)
  await s.serve(4)
  t.same(s.held.map(h => h.url), ['/busy', '/m1', '/a1', '/b1'], 'in turn by caller')
  t.same(await Promise.all([first, m[0], a1, b1]), [200, 200, 200, 200])
  t.equal(s.gauge(), 0)
})

t.test('without fairness (queueFairness: none) the first come hold the queue', async t => {
  const s = await setup(t, { connections: 1, maxQueue: 2, queueTimeoutMs: 60_000 })
  const first = s.get('/busy', undefined, 'mallory')
  await s.arrived(1)
  const m = [s.get('/m1', undefined, 'mallory'), s.get('/m2', undefined, 'mallory')]
  t.type(await s.get('/a1', undefined, 'alice'), UpstreamQueueFull)
  await s.serve(3)
  t.same(await Promise.all([first, ...m]), [200, 200, 200])
})
