import t from 'tap'
import type { AddressInfo } from 'node:net'
import { createServer } from 'node:tls'
import { createCa } from '../../src/tls/pki.js'
import { answerOk, OK_RESPONSE, type Responder } from '../helpers/recording-upstream.js'
import { expectErrorBody, expectForwarded, startSecurityHarness } from '../helpers/security.js'

// A function that breaks off, lies about framing or never answers gets the client a 502/504 with the
// gateway's JSON body: no upstream bytes, no stack, and no response the client did not ask for.

const MARK = 'UPSTREAM-SECRET-7f3a' // anything carrying this must never reach the client

// A server whose certificate is from some other CA: the gateway must not talk to it.
const foreignCa = await createCa('Not the demo CA')
const foreignCert = await foreignCa.issue({ commonName: 'foreign', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], usage: 'server' })
let foreignBytes = 0
const foreign = createServer({ ...foreignCert }, socket => { socket.on('data', d => { foreignBytes += d.length }); socket.on('error', () => {}) })
foreign.on('tlsClientError', () => {})
await new Promise<void>(resolve => foreign.listen(0, '127.0.0.1', resolve))
t.teardown(() => { foreign.close() })

const h = await startSecurityHarness(t, {
  configure: raw => {
    const fn = raw.upstreams[0]
    fn.headersTimeoutMs = 1000
    fn.bodyTimeoutMs = 1000
    // Each case here fails on purpose, many in a row: the breaker would (rightly) open and answer 503.
    // test/pipeline/forward/transport.test.ts covers the breaker.
    fn.circuitBreaker = { enabled: false }
    raw.upstreams.push(
      { ...fn, id: 'dead', url: 'https://127.0.0.1:1' }, // nothing listens on port 1
      { ...fn, id: 'foreign', url: `https://127.0.0.1:${(foreign.address() as AddressInfo).port}` }
    )
    raw.routes.push(
      { id: 'dead', prefix: '/public/dead', methods: ['GET'], upstream: 'dead' },
      { id: 'foreign', prefix: '/public/foreign', methods: ['GET'], upstream: 'foreign' }
    )
  }
})
t.afterEach(() => { h.stub.respond = answerOk })

async function upstreamErrors (upstream: string, kind: string): Promise<number> {
  const m = new RegExp(`^portcullis_upstream_errors_total\\{upstream="${upstream}",kind="${kind}"\\} (\\d+)$`, 'm').exec(await h.metrics())
  return m === null ? 0 : Number(m[1])
}

const write = (bytes: string): Responder => socket => { socket.write(bytes) }
const writeAndClose = (bytes: string): Responder => socket => { socket.end(bytes) }

t.test('a broken or lying answer is a 502 with the gateway body, nothing of the upstream in it', async t => {
  const cases: Array<[string, Responder]> = [
    ['closes before answering', socket => { socket.destroy() }],
    ['closes mid-head', writeAndClose(`HTTP/1.1 200 OK\r\nX-Leak: ${MARK}\r\nContent-Le`)],
    ['answers with something that is not HTTP', writeAndClose(`SSH-2.0-${MARK}\r\n\r\n`)],
    ['an invalid status code', write(`HTTP/1.1 2000 ${MARK}\r\ncontent-length: 0\r\n\r\n`)],
    // Response smuggling (undici and llhttp advisories): CL with TE, conflicting lengths, bad chunks.
    // (A response TE whose final coding is not chunked is legal: read until close, RFC 9112 §6.3.)
    ['Content-Length with Transfer-Encoding', write(`HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: ${MARK.length}\r\n\r\n${MARK}`)],
    ['conflicting Content-Length', write(`HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: ${2 + MARK.length}\r\n\r\nok${MARK}`)],
    ['invalid chunk size', write(`HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n${MARK}\r\n0\r\n\r\n`)],
    ['NUL in a header value', write(`HTTP/1.1 200 OK\r\nX-A: a\0${MARK}\r\ncontent-length: 2\r\n\r\nok`)],
    ['a header section over 16 KiB', write(`HTTP/1.1 200 OK\r\nX-Big: ${MARK}${'a'.repeat(70_000)}\r\ncontent-length: 2\r\n\r\nok`)]
  ]
  for (const [name, respond] of cases) {
    h.stub.respond = respond
    const before = await upstreamErrors('demo-function', 'failed')
    const ex = await h.send(h.head('GET', '/public/x'))
    t.equal(ex.responses.length, 1, `${name}: one response`)
    expectErrorBody(t, name, ex.responses[0], 502, 'GW_ERR_UPSTREAM_FAILED')
    t.notMatch(ex.text, MARK, `${name}: nothing of the upstream's answer reaches the client`)
    t.equal(await upstreamErrors('demo-function', 'failed'), before + 1, `${name}: counted as an upstream failure`)
  }
})

t.test('an upstream that never answers is a 504 at headersTimeoutMs', async t => {
  h.stub.respond = () => {}
  const before = await upstreamErrors('demo-function', 'timeout')
  const ex = await h.send(h.head('GET', '/public/x'))
  expectErrorBody(t, 'never answers', ex.responses[0], 504, 'GW_ERR_UPSTREAM_TIMEOUT')
  t.equal(await upstreamErrors('demo-function', 'timeout'), before + 1, 'counted as an upstream timeout')
  // RFC 9110 §15.2 has clients parse unsolicited 1xx and keep waiting (then 504); undici refuses a 100
  // to a request that sent no Expect (then 502). Either way the request ends with the gateway's body.
  h.stub.respond = write('HTTP/1.1 100 Continue\r\n\r\n')
  const cont = await h.send(h.head('GET', '/public/x'))
  expectErrorBody(t, '100 Continue and then nothing', cont.responses[0], [502, 504], /^GW_ERR_UPSTREAM_(FAILED|TIMEOUT)$/)
})

t.test('an answer cut short after its head reaches the client as visibly incomplete', async t => {
  // The head is already on its way to the client when the body fails, so no error body can follow;
  // the gateway must not make a truncated body look complete (no final chunk, no matching length).
  const cases: Array<[string, Responder]> = [
    ['closes mid-body (Content-Length)', writeAndClose('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial')],
    ['closes mid-body (chunked)', writeAndClose('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n7\r\npartial\r\n')],
    ['body stalls past bodyTimeoutMs', write('HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial')]
  ]
  for (const [name, respond] of cases) {
    h.stub.respond = respond
    const ex = await h.send(h.head('GET', '/public/x'), { until: 'close', timeoutMs: 6000 })
    t.ok(ex.closed, `${name}: the client connection is closed`)
    t.equal(ex.responses.length, 1, `${name}: one response`)
    t.equal(ex.responses[0]?.complete, false, `${name}: the body is visibly incomplete`)
  }
})

t.test('a short declared body that fails before its end is answered as a failure: the gateway body, nothing of the upstream', async t => {
  // A body of at most 64 KiB with a declared length and type is taken whole before the head goes out
  // (forward/upstream-call.ts), so its failure can still be answered, and nothing of it leaks.
  const head = `HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-leak: ${MARK}\r\ncontent-length: 100\r\n\r\n${MARK}`
  const cases: Array<[string, Responder, number, string, string]> = [
    ['closes mid-body', writeAndClose(head), 502, 'GW_ERR_UPSTREAM_FAILED', 'failed'],
    ['body stalls past bodyTimeoutMs', write(head), 504, 'GW_ERR_UPSTREAM_BODY_TIMEOUT', 'body_timeout']
  ]
  for (const [name, respond, status, code, kind] of cases) {
    h.stub.respond = respond
    const before = await upstreamErrors('demo-function', kind)
    const ex = await h.send(h.head('GET', '/public/x'), { timeoutMs: 6000 })
    expectErrorBody(t, name, ex.responses[0], status, code)
    t.notMatch(JSON.stringify(ex.responses[0]?.headers ?? {}), MARK, `${name}: none of the function's headers`)
    t.equal(await upstreamErrors('demo-function', kind), before + 1, `${name}: counted as ${kind}`)
  }
  h.stub.respond = answerOk
  await expectForwarded(t, h, 'the next request', h.head('GET', '/public/x'), { target: '/public/x' })
})

t.test('an extra response from the function is never given to another client', async t => {
  // Response queue poisoning (CVE-2019-18277-style desync, Apache mod_proxy CVE-2023-25690 family): a
  // second, unsolicited response on a pooled connection must not answer the next client's request.
  let first = true
  h.stub.respond = (socket, request) => {
    if (!first) { answerOk(socket, request); return }
    first = false
    socket.write(OK_RESPONSE + `HTTP/1.1 200 OK\r\ncontent-length: ${MARK.length}\r\n\r\n${MARK}`)
  }
  for (const n of [1, 2, 3]) {
    const ex = await h.send(h.head('GET', `/public/${n}`))
    t.notMatch(ex.text, MARK, `request ${n}: not given the extra response`)
    t.equal(ex.responses[0]?.status, 200, `request ${n}: its own answer`)
    t.equal(ex.responses[0]?.body, 'ok', `request ${n}: its own body`)
  }
})

t.test('a failed POST is not retried: the function sees it once', async t => {
  const before = h.stub.requests.length
  h.stub.respond = socket => { socket.destroy() }
  const ex = await h.send(h.head('POST', '/public/x', ['Content-Length: 5']) + 'hello')
  expectErrorBody(t, 'POST to a dying upstream', ex.responses[0], 502, 'GW_ERR_UPSTREAM_FAILED')
  t.equal(h.stub.requests.length, before + 1, 'exactly one request reached the function')
})

t.test('an unreachable upstream is 502 connect; one with a foreign certificate is 502 tls, and gets no bytes', async t => {
  const dead = await h.send(h.head('GET', '/public/dead/x'))
  expectErrorBody(t, 'unreachable', dead.responses[0], 502, 'GW_ERR_UPSTREAM_CONNECT')
  const tls = await h.send(h.head('GET', '/public/foreign/x'))
  expectErrorBody(t, 'foreign certificate', tls.responses[0], 502, 'GW_ERR_UPSTREAM_TLS')
  t.equal(foreignBytes, 0, 'no request bytes were sent to a server the gateway does not trust')
})

t.test('after all of that, the pool still forwards cleanly', async t => {
  await expectForwarded(t, h, 'a clean request', h.head('GET', '/public/ok'), { target: '/public/ok' })
})
