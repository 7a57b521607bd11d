import t, { type Test } from 'tap'
import { connect } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { expectErrorBody, reasonOf, startSecurityHarness, type SecurityHarness } from '../helpers/security.js'
import { parseResponses, type RawConnection } from '../helpers/raw-http.js'

// Slow clients (slowloris and its relatives) must not hold connections open: the head must arrive
// within limits.headersTimeoutMs, the whole request within limits.requestTimeoutMs, and an idle
// keep-alive connection is closed after limits.keepAliveTimeoutMs. The limits here are small so each
// case ends in seconds; only "closed within a bound" is asserted, never how fast.

const BOUND_MS = 5000 // well above every configured timeout here, well below a test's budget

const h = await startSecurityHarness(t, {
  configure: raw => {
    raw.limits = { headersTimeoutMs: 1000, requestTimeoutMs: 2000, keepAliveTimeoutMs: 1000 }
  }
})

/** Writes `bytes` one at a time every `everyMs` until the server closes or the bytes run out. */
function dribble (conn: RawConnection, bytes: string, everyMs: number): () => void {
  let i = 0
  const timer = setInterval(() => {
    if (conn.isClosed || i >= bytes.length) { clearInterval(timer); return }
    conn.socket.write(bytes[i++]!)
  }, everyMs)
  return () => clearInterval(timer)
}

/** If the gateway answered before closing, it was a 408 with the JSON body, counted as guard_timeout. */
async function expectTimeoutAnswer (t: Test, h: SecurityHarness, name: string, conn: RawConnection, before: Record<string, number>): Promise<void> {
  const res = (await conn.responses(1, 0))[0]
  if (res === undefined) { t.pass(`${name}: closed without an answer`); return }
  expectErrorBody(t, name, res, 408, 'GW_ERR_GUARD_TIMEOUT')
  const after = await h.rejected()
  t.equal((after[reasonOf('GW_ERR_GUARD_TIMEOUT')] ?? 0) - (before.guard_timeout ?? 0), 1, `${name}: counted as guard_timeout`)
}

t.test('slowloris: a head dribbled one byte at a time is cut off at headersTimeoutMs', async t => {
  // Each byte arrives well inside the timeout (400 ms < 1000 ms), so only a deadline for the whole
  // head, not an idle timer, ends this (Envoy edge guidance: request_headers_timeout).
  const before = await h.rejected()
  const bytes = h.stub.received.length
  const conn = await h.open()
  const stop = dribble(conn, h.head('GET', '/public/x', Array.from({ length: 50 }, (_, i) => `X-Slow-${i}: ${'a'.repeat(20)}`)), 400)
  t.teardown(stop)
  const closed = await conn.closed(BOUND_MS)
  t.ok(closed, `closed within ${BOUND_MS} ms`)
  stop()
  if (closed) await expectTimeoutAnswer(t, h, 'slowloris', conn, before)
  t.equal(h.stub.received.length, bytes, 'zero bytes reached the function')
})

/** Resolves true once a plain TCP socket closes, false after timeoutMs. */
async function tcpClosed (port: number, timeoutMs: number): Promise<boolean> {
  const socket = connect({ host: '127.0.0.1', port })
  socket.on('error', () => {})
  return new Promise<boolean>(resolve => {
    const timer = setTimeout(() => { socket.destroy(); resolve(false) }, timeoutMs)
    socket.once('close', () => { clearTimeout(timer); resolve(true) })
  })
}

t.test('silent, half-started, slow-body and many slow clients are all cut off', async t => {
  // Run side by side so the test takes one bound, not one per kind. Nothing else runs meanwhile, so
  // the counter and the function's request log belong to these clients.
  const before = await h.rejected()
  const requests = h.stub.requests.length
  const silent = await h.open() // TLS done, then nothing: no header deadline has started yet
  const slowBody = await h.open()
  slowBody.write(h.head('POST', '/public/x', ['Content-Length: 100']))
  const crowd = await Promise.all(Array.from({ length: 20 }, async () => h.open()))
  const stops = [
    dribble(slowBody, 'z'.repeat(100), 400),
    ...crowd.map(c => dribble(c, h.head('GET', '/public/x', ['X-Slow: ' + 'a'.repeat(200)]), 300))
  ]
  t.teardown(() => { for (const s of stops) s() })
  const [silentClosed, tcpDone, slowBodyClosed, ...crowdClosed] = await Promise.all([
    silent.closed(BOUND_MS),
    // Before the handshake the HTTP server does not know the connection: only a TLS handshake
    // timeout ends it (Node's default is 120 s), and such sockets count against maxConnections.
    tcpClosed(h.port, BOUND_MS),
    slowBody.closed(BOUND_MS),
    ...crowd.map(async c => c.closed(BOUND_MS))
  ])
  for (const s of stops) s()
  t.ok(silentClosed, `a connection that sends nothing after the TLS handshake: closed within ${BOUND_MS} ms`)
  t.ok(tcpDone, `a TCP connection that never starts TLS: closed within ${BOUND_MS} ms`)
  t.ok(slowBodyClosed, `a body dribbled after a complete head (requestTimeoutMs): closed within ${BOUND_MS} ms`)
  t.equal(crowdClosed.filter(Boolean).length, crowd.length, `${crowd.length} slow heads at once: all closed within ${BOUND_MS} ms`)
  const answers = [silent, slowBody, ...crowd].flatMap(c => parseResponses(c.data, true))
  for (const res of answers) expectErrorBody(t, 'a timed-out client', res, 408, 'GW_ERR_GUARD_TIMEOUT')
  const counted = ((await h.rejected()).guard_timeout ?? 0) - (before.guard_timeout ?? 0)
  t.equal(counted, answers.length, 'each 408 counted as guard_timeout')
  // A slow body's head may already be on its way upstream (bodies stream), but never a whole request.
  t.equal(h.stub.requests.length, requests, 'the function never got a complete request')
  const ok = await h.send(h.head('GET', '/public/after'))
  t.equal(ok.responses[0]?.status, 200, 'the gateway still serves others')
})

t.test('keep-alive: reused while busy, closed once idle for keepAliveTimeoutMs', async t => {
  const conn = await h.open()
  conn.write(h.head('GET', '/public/one'))
  t.equal((await conn.responses(1))[0]?.status, 200, 'first request answered')
  conn.write(h.head('GET', '/public/two'))
  const both = await conn.responses(2)
  t.equal(both[1]?.status, 200, 'second request on the same connection')
  t.ok(await conn.closed(BOUND_MS), `idle connection closed within ${BOUND_MS} ms`)
})

t.test('keepAliveTimeoutMs does not cut a request that is waiting for the function', async t => {
  t.teardown(() => { h.stub.respond = answer })
  const answer = h.stub.respond
  // The function takes longer than the idle timeout; the connection is busy, not idle.
  h.stub.respond = (socket, request) => { setTimeout(() => answer(socket, request), 1500) }
  const conn = await h.open()
  conn.write(h.head('GET', '/public/slow'))
  const res = (await conn.responses(1, BOUND_MS))[0]
  t.equal(res?.status, 200, 'answered')
  t.equal(res?.body, 'ok', 'with the function\'s body')
})

t.test('a client that hangs up while the function works: the upstream request is cancelled', async t => {
  // Otherwise a function keeps running, and a connection to it stays taken, for an answer nobody reads.
  t.teardown(() => { h.stub.respond = answer })
  const answer = h.stub.respond
  let held: TLSSocket | undefined
  const arrived = new Promise<void>(resolve => { h.stub.respond = socket => { held = socket; resolve() } })
  const conn = await h.open()
  conn.write(h.head('GET', '/public/abandoned'))
  await arrived
  const upstreamClosed = new Promise<boolean>(resolve => {
    const timer = setTimeout(() => resolve(false), BOUND_MS)
    held!.once('close', () => { clearTimeout(timer); resolve(true) })
  })
  conn.socket.destroy()
  t.ok(await upstreamClosed, `the gateway closed its connection to the function within ${BOUND_MS} ms`)
  h.stub.respond = answer
  const later = await h.send(h.head('GET', '/public/later'))
  t.equal(later.responses[0]?.status, 200, 'the gateway still serves others')
})
