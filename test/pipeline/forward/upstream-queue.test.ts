import t from 'tap'
import { EventEmitter } from 'node:events'
import { createServer, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Test } from 'tap'
import { errors as undiciErrors, Pool } from 'undici'
import { createUpstreamQueue, UpstreamQueueFull, UpstreamQueueTimeout, UpstreamShutdown } from '../../../src/pipeline/forward/upstream-queue.js'

// The bounded wait for a connection, on a real undici Pool against a real server on loopback that
// holds every request until the test answers it.

async function setup (t: Test, opts: { connections: number, maxQueue: number, queueTimeoutMs: number }) {
  const held: Array<{ url: string, res: ServerResponse }> = []
  let notify: (() => void) | undefined
  const server = createServer((req, res) => { req.resume(); held.push({ url: req.url ?? '', res }); notify?.() })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { connections: opts.connections })
  let gauge = 0
  const queue = createUpstreamQueue(pool, { ...opts, onWaiting: d => { gauge += d } })
  const dispatcher = pool.compose(queue.interceptor)
  t.teardown(async () => {
    await pool.destroy()
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
  })
  const arrived = async (n: number): Promise<void> => new Promise(resolve => {
    notify = () => { if (held.length >= n) resolve() }
    notify()
  })
  const get = async (path: string, signal?: EventEmitter) => dispatcher.request({ path, method: 'GET', ...(signal !== undefined ? { signal } : {}) })
    .then(async r => { await r.body.text(); return r.statusCode }, (err: Error) => err)
  return { held, queue, gauge: () => gauge, arrived, get, answer: (i: number) => held[i]!.res.end('ok') }
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
