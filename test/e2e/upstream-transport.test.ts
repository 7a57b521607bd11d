import t from 'tap'
import { readFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import type { TLSSocket } from 'node:tls'
import { gzipSync } from 'node:zlib'
import { loadCa } from '../../src/tls/pki.js'
import { answerOk, requestLine, type Responder } from '../helpers/recording-upstream.js'
import { expectErrorBody, startSecurityHarness } from '../helpers/security.js'
import { startPlainUpstream, startTcpProxy, startTlsUpstream } from '../helpers/upstream-servers.js'

// The forward stage's transport: certificate checks that never fall back to plaintext, redirects
// handed back rather than followed, each timeout with its own code, one retry only where the function
// cannot have seen the request, the circuit breaker, the per-caller cap and the response size cap.
// Real TLS on loopback throughout, with certificates from the demo CA made at test time.

const wrongName = await startTlsUpstream(t)
const expired = await startTlsUpstream(t)
const plain = await startPlainUpstream(t)
const stall = await startTcpProxy(t)
const retry = await startTcpProxy(t)
const breaker = await startTcpProxy(t)
stall.mode = 'hold'
retry.mode = 'hold-first'

const h = await startSecurityHarness(t, {
  configure: raw => {
    const fn = raw.upstreams[0]
    for (const p of [retry, breaker]) p.target = new URL(fn.url)
    const upstream = (id: string, url: string, extra: Record<string, unknown> = {}): void => {
      raw.upstreams.push({ ...fn, id, url, circuitBreaker: { enabled: false }, ...extra })
      raw.routes.push({ id, prefix: `/public/${id}`, methods: ['GET', 'POST'], upstream: id })
    }
    upstream('wrong-name', wrongName.url) // servername stays 'localhost'; its certificate names another host
    upstream('expired', expired.url)
    upstream('plain', plain.url)
    upstream('stall', stall.url, { connectTimeoutMs: 300 })
    upstream('retry', retry.url, { connectTimeoutMs: 300 })
    upstream('breaker', breaker.url, { circuitBreaker: { failures: 2, openMs: 300 } })
    upstream('capped', fn.url, { maxConcurrentPerIdentity: 1 })
    const route = (id: string, extra: Record<string, unknown>): void => {
      raw.routes.push({ id, prefix: `/public/${id}`, methods: ['GET'], upstream: fn.id, ...extra })
    }
    route('headers', { timeouts: { headersMs: 300 } })
    route('total', { timeouts: { totalMs: 500 } })
    route('body', { timeouts: { bodyMs: 300 } })
    route('small', { maxResponseBytes: 10 })
  }
})

const ca = await loadCa({ cert: await readFile(h.demo.paths.caCert, 'utf8'), key: await readFile(`${h.demo.paths.dir}/ca.key`, 'utf8') })
wrongName.setCertificate(await ca.issue({ commonName: 'other', dnsNames: ['other.example'], usage: 'server' }))
const day = 86_400_000
expired.setCertificate(await ca.issue({
  commonName: 'expired',
  dnsNames: ['localhost'],
  ipAddresses: ['127.0.0.1'],
  usage: 'server',
  validity: { notBefore: new Date(Date.now() - 30 * day), notAfter: new Date(Date.now() - day) }
}))

// The recording function answers by path; anything unlisted gets 200 "ok".
const GZIPPED = gzipSync(Buffer.from('{"compressed":true}'.repeat(50)))
const held: TLSSocket[] = []
const trickle = (socket: TLSSocket): void => {
  socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n')
  const timer = setInterval(() => socket.write('x'), 100)
  socket.once('close', () => clearInterval(timer))
}
const byPath: Record<string, Responder> = {
  '/public/headers/x': () => {},
  '/public/total/never': () => {},
  '/public/total/trickle': trickle,
  '/public/body/x': socket => { socket.write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial') },
  '/public/small/declared': socket => { socket.write(`HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n${'b'.repeat(100)}`) },
  '/public/small/chunked': socket => { socket.write(`HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n64\r\n${'b'.repeat(100)}\r\n0\r\n\r\n`) },
  '/public/small/later': socket => {
    socket.write('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n')
    setTimeout(() => socket.write(`64\r\n${'b'.repeat(100)}\r\n0\r\n\r\n`), 200)
  },
  '/public/capped/hold': socket => { held.push(socket) },
  '/public/breaker/hold': () => {},
  '/public/breaker/reset': socket => { socket.destroy() },
  '/public/gzip': socket => {
    socket.write(`HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: ${GZIPPED.length}\r\n\r\n`)
    socket.write(GZIPPED)
  },
  '/public/redirect': socket => {
    socket.write('HTTP/1.1 302 Found\r\nlocation: https://127.0.0.1:1/elsewhere\r\ncontent-length: 0\r\n\r\n')
  }
}
h.stub.respond = (socket, request) => (byPath[requestLine(request.head).target] ?? answerOk)(socket, request)

async function metric (name: string, labels: string): Promise<number> {
  const line = (await h.metrics()).split('\n').find(l => l.startsWith(`${name}{${labels}}`))
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1))
}
const get = async (path: string) => h.send(h.head('GET', path))

t.test('a certificate the gateway cannot verify is 502 tls, and nothing is sent', async t => {
  for (const [name, server] of [['wrong host name', wrongName], ['expired certificate', expired]] as const) {
    const ex = await get(`/public/${name === 'wrong host name' ? 'wrong-name' : 'expired'}/x`)
    expectErrorBody(t, name, ex.responses[0], 502, 'GW_ERR_UPSTREAM_TLS')
    t.equal(server.secured, 0, `${name}: no handshake completed`)
    t.equal(server.bytes, 0, `${name}: no request bytes reached it`)
  }
})

t.test('plaintext on the TLS port is 502 tls: only a ClientHello was sent, never a plaintext retry', async t => {
  const ex = await get('/public/plain/x')
  expectErrorBody(t, 'plaintext upstream', ex.responses[0], 502, 'GW_ERR_UPSTREAM_TLS')
  t.notMatch(ex.text, /plaintext/, 'the plaintext answer does not reach the client')
  t.ok(plain.openings.length >= 1, 'the gateway connected')
  for (const opening of plain.openings) t.equal(opening[0], 0x16, 'each connection opened with a TLS handshake record')
  t.notMatch(plain.received().toString('latin1'), /GET \/|Host:|Bearer /, 'no HTTP request in the clear')
})

t.test('a redirect goes back to the client and is not followed', async t => {
  const before = h.stub.requests.length
  const ex = await get('/public/redirect')
  t.equal(ex.responses[0]?.status, 302)
  t.equal(ex.responses[0]?.headers.location, 'https://127.0.0.1:1/elsewhere', 'Location passed through as the function sent it')
  t.equal(h.stub.requests.length, before + 1, 'the function saw one request and nothing else was fetched')
})

t.test('a compressed response is passed on as sent, not decompressed', async t => {
  const ex = await get('/public/gzip')
  t.equal(ex.responses[0]?.headers['content-encoding'], 'gzip')
  t.equal(ex.responses[0]?.headers['content-length'], String(GZIPPED.length))
  const raw = Buffer.from(ex.text, 'latin1')
  t.ok(raw.subarray(raw.indexOf('\r\n\r\n') + 4).equals(GZIPPED), 'the body is the function\'s bytes')
})

t.test('each timeout has its own code', async t => {
  const headers = await get('/public/headers/x')
  expectErrorBody(t, 'no head within the route\'s headersMs', headers.responses[0], 504, 'GW_ERR_UPSTREAM_TIMEOUT')

  const total = await get('/public/total/never')
  expectErrorBody(t, 'nothing within the route\'s totalMs', total.responses[0], 504, 'GW_ERR_UPSTREAM_TOTAL_TIMEOUT')

  const beforeConnect = stall.connections
  const connect = await get('/public/stall/x')
  expectErrorBody(t, 'no handshake within connectTimeoutMs', connect.responses[0], 504, 'GW_ERR_UPSTREAM_CONNECT_TIMEOUT')
  t.equal(stall.connections, beforeConnect + 2, 'a GET that never connected is tried once more, and only once')
})

t.test('a body that stalls or outlasts the deadline is cut off, visibly incomplete, and counted', async t => {
  for (const [path, kind] of [['/public/body/x', 'body_timeout'], ['/public/total/trickle', 'total_timeout']] as const) {
    const before = await metric('portcullis_upstream_errors_total', `upstream="demo-function",kind="${kind}"`)
    const ex = await h.send(h.head('GET', path), { until: 'close', timeoutMs: 6000 })
    t.ok(ex.closed, `${path}: the client connection is closed`)
    t.equal(ex.responses[0]?.status, 200, `${path}: the head had gone out`)
    t.equal(ex.responses[0]?.complete, false, `${path}: the body is visibly incomplete`)
    t.equal(await metric('portcullis_upstream_errors_total', `upstream="demo-function",kind="${kind}"`), before + 1, `${path}: counted as ${kind}`)
  }
})

t.test('a connection failure is retried once for a bodyless GET, never for a POST', async t => {
  const ok = await get('/public/retry/x')
  t.equal(ok.responses[0]?.status, 200, 'the retry reached the function')
  t.equal(retry.connections, 2, 'the first connection never completed; the second did')
  t.equal(await metric('portcullis_upstream_retries_total', 'upstream="retry"'), 1, 'counted as a retry')

  const before = stall.connections
  const post = await h.send(h.head('POST', '/public/stall/x', ['Content-Length: 5']) + 'hello')
  expectErrorBody(t, 'POST that never connected', post.responses[0], 504, 'GW_ERR_UPSTREAM_CONNECT_TIMEOUT')
  t.equal(stall.connections, before + 1, 'a POST is not tried again')
})

t.test('the circuit opens after consecutive failures, fails fast, and a probe closes it', async t => {
  const state = async (): Promise<number> => metric('portcullis_upstream_circuit_state', 'upstream="breaker"')
  t.equal(await state(), 0, 'closed at start')
  breaker.mode = 'reset'
  for (const n of [1, 2]) expectErrorBody(t, `failure ${n}`, (await get('/public/breaker/x')).responses[0], 502, 'GW_ERR_UPSTREAM_FAILED')
  t.equal(await state(), 1, 'open after two failures in a row')
  const seen = breaker.connections
  const fast = await get('/public/breaker/x')
  expectErrorBody(t, 'while open', fast.responses[0], 503, 'GW_ERR_UPSTREAM_UNAVAILABLE')
  t.equal(breaker.connections, seen, 'nothing was sent while the circuit was open')
  // The route signs a hash of the body into its assertion: an open circuit answers before waiting for it.
  const unfinished = await h.send(h.head('POST', '/public/breaker/x', ['Content-Length: 100000']) + 'only the start', { until: 1, timeoutMs: 3000 })
  expectErrorBody(t, 'a POST whose body is still coming, while open', unfinished.responses[0], 503, 'GW_ERR_UPSTREAM_UNAVAILABLE')

  breaker.mode = 'pass' // the function recovers
  // Once openMs has passed, a client that starts a POST and gives up half way through its body must
  // not become the probe and keep the circuit half-open for ever.
  await sleep(400)
  const gaveUp = await h.send(h.head('POST', '/public/breaker/x', ['Content-Length: 100000']) + 'only the start', { until: 1, timeoutMs: 300 })
  t.same(gaveUp.responses, [], 'no answer before the client gave up')
  let status = 503
  for (let i = 0; i < 100 && status === 503; i++) {
    status = (await get('/public/breaker/x')).responses[0]?.status ?? 0
    if (status === 503) await sleep(50)
  }
  t.equal(status, 200, 'once openMs has passed, a probe goes through')
  t.equal(await state(), 0, 'and its success closes the circuit')
})

t.test('a request that was not the probe cannot free the probe\'s slot when its client leaves', async t => {
  // Admitted while the circuit was closed, then held by the function.
  const first = h.send(h.head('GET', '/public/breaker/hold'), { until: 1, timeoutMs: 1500 })
  await sleep(100)
  for (const n of [1, 2]) expectErrorBody(t, `failure ${n}`, (await get('/public/breaker/reset')).responses[0], 502, 'GW_ERR_UPSTREAM_FAILED')
  await sleep(350) // openMs: the next request is the probe, and the function holds it too
  const probe = h.send(h.head('GET', '/public/breaker/hold'), { until: 1, timeoutMs: 5000 })
  await sleep(100)
  t.same((await first).responses, [], 'the first request\'s client gives up')
  await sleep(100)
  expectErrorBody(t, 'while the probe is in flight', (await get('/public/breaker/x')).responses[0], 503, 'GW_ERR_UPSTREAM_UNAVAILABLE')
  await probe
})

t.test('one caller cannot hold more than maxConcurrentPerIdentity requests to a function', async t => {
  const bob = `Authorization: Bearer ${await h.demo.token({ sub: 'bob' })}`
  const asBob = ['GET /public/capped/hold HTTP/1.1', 'Host: localhost', bob, '', ''].join('\r\n')
  const first = h.send(h.head('GET', '/public/capped/hold'))
  while (held.length < 1) await sleep(20)
  const second = await get('/public/capped/hold')
  expectErrorBody(t, 'alice\'s second request in flight', second.responses[0], 429, 'GW_ERR_RATE_CONCURRENCY')
  // Refused before the body is read for the assertion's hash: a capped caller cannot park bodies here.
  const unfinished = await h.send(h.head('POST', '/public/capped/x', ['Content-Length: 100000']) + 'only the start', { until: 1, timeoutMs: 3000 })
  expectErrorBody(t, 'a POST whose body is still coming', unfinished.responses[0], 429, 'GW_ERR_RATE_CONCURRENCY')
  const other = h.send(asBob)
  while (held.length < 2) await sleep(20)
  t.pass('another caller is not affected')
  for (const s of held.splice(0)) s.write('HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok')
  t.equal((await first).responses[0]?.status, 200)
  t.equal((await other).responses[0]?.status, 200)
  t.equal((await get('/public/capped/x')).responses[0]?.status, 200, 'alice may send again once hers finished')
})

t.test('responses over the route\'s maxResponseBytes are refused or cut off', async t => {
  const declared = await get('/public/small/declared')
  expectErrorBody(t, 'declared length over the cap', declared.responses[0], 502, 'GW_ERR_UPSTREAM_RESPONSE_TOO_LARGE')
  t.notMatch(declared.text, /bbbb/, 'none of the body is passed on')
  const chunked = await get('/public/small/chunked')
  expectErrorBody(t, 'undeclared length over the cap before anything was sent', chunked.responses[0], 502, 'GW_ERR_UPSTREAM_RESPONSE_TOO_LARGE')
  const later = await h.send(h.head('GET', '/public/small/later'), { until: 'close', timeoutMs: 6000 })
  t.ok(later.closed, 'once the response has started, going over the cap closes the connection')
  t.equal(later.responses[0]?.status, 200, 'the head had gone out')
  t.equal(later.responses[0]?.complete, false, 'and the body is visibly incomplete')
  t.notMatch(later.text, /bbbb/, 'nothing past the cap is passed on')
  t.equal((await get('/public/small/ok')).responses[0]?.body, 'ok', 'a small response passes')
})

t.test('the client certificate\'s expiry is exported', async t => {
  const seconds = await metric('portcullis_certificate_expiry_timestamp_seconds', 'certificate="upstream/demo-function"') - Date.now() / 1000
  t.ok(seconds > 0 && seconds < 10 * 365 * 86_400, `expires in ${Math.round(seconds / 86_400)} days`)
})
