import t from 'tap'
import { readFileSync } from 'node:fs'
import { connect } from 'node:tls'
import { upstreamCalls } from '../helpers/authn.js'
import { startDemoHarness, type DemoHarness } from '../helpers/demo.js'
import { exchange } from '../security/fuzz/raw.js'

// Hostile or broken HTTP at the edge, over a real TLS socket: a clear refusal, nothing forwarded.

async function raw (demo: DemoHarness, request: string): Promise<string> {
  const { port } = new URL(demo.url)
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: Number(port), ca: readFileSync(demo.paths.caCert) }, () => socket.end(request))
    let data = ''
    socket.on('data', d => { data += String(d) })
    socket.on('close', () => resolve(data))
    socket.on('error', reject)
  })
}

t.test('unsupported methods get 405 with Allow', async t => {
  const demo = await startDemoHarness(t)
  const res = await demo.client.send(`${demo.url}/hello`, { method: 'TRACE', token: await demo.token() })
  t.equal(res.status, 405)
  t.equal(res.json().code, 'GW_ERR_GUARD_METHOD')
  t.equal(res.headers.allow, 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS')
})

t.test('unparseable HTTP gets the gateway error body and a closed connection', async t => {
  const demo = await startDemoHarness(t)
  const res = await raw(demo, 'GET /hello HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n')
  t.match(res, /^HTTP\/1\.1 400 Bad Request\r\n/)
  t.match(res, /connection: close/i)
  t.match(res, /"code":"GW_ERR_GUARD_BAD_REQUEST"/)
  const smuggle = await raw(demo, 'POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n')
  t.match(smuggle, /^HTTP\/1\.1 400 /, 'Content-Length with Transfer-Encoding is refused')
  t.equal(await upstreamCalls(demo), 0)
})

t.test('oversized headers get 431', async t => {
  const demo = await startDemoHarness(t)
  const res = await raw(demo, `GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`)
  t.match(res, /^HTTP\/1\.1 431 /)
  t.match(res, /"code":"GW_ERR_GUARD_HEADERS_TOO_LARGE"/)
})

t.test('bodies over the limit get 413, with or without Content-Length', async t => {
  const demo = await startDemoHarness(t)
  const token = await demo.token({ roles: ['writer'] })
  const big = 'x'.repeat(1_048_577)
  const declared = await demo.client.send(`${demo.url}/orders`, { method: 'POST', token, body: big })
  t.equal(declared.status, 413)
  t.equal(declared.json().code, 'GW_ERR_GUARD_BODY_TOO_LARGE')
  t.equal(await upstreamCalls(demo), 0, 'a declared oversized body is refused before forwarding')

  const chunk = 'y'.repeat(64 * 1024)
  const chunks = Array.from({ length: 20 }, () => `${chunk.length.toString(16)}\r\n${chunk}\r\n`).join('')
  const res = await raw(demo, `POST /orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunks}0\r\n\r\n`)
  t.match(res, /^HTTP\/1\.1 413 /, 'a chunked body is cut off once it passes the limit')
  t.match(res, /"code":"GW_ERR_GUARD_BODY_TOO_LARGE"/)
})

t.test('CONNECT is refused with 405 and the connection closed: nothing is tunnelled', async t => {
  const demo = await startDemoHarness(t)
  const res = await raw(demo, 'CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n')
  t.match(res, /^HTTP\/1\.1 405 /)
  t.match(res, /allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS/)
  t.match(res, /"code":"GW_ERR_GUARD_METHOD"/)
  const metrics = (await demo.client.send(`${demo.adminUrl}/metrics`)).text
  t.match(metrics, /portcullis_rejected_total\{reason="guard_method"\} 1/)
})

t.test('protocol upgrades are refused with 501, not silently downgraded', async t => {
  const demo = await startDemoHarness(t)
  const token = await demo.token()
  const res = await raw(demo, `GET /hello HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`)
  t.match(res, /^HTTP\/1\.1 501 /)
  t.match(res, /"code":"GW_ERR_GUARD_UPGRADE"/)
  t.equal(await upstreamCalls(demo), 0)
})

// Found by npm run fuzz:edge: garbage pipelined after a complete request used to be answered with a
// 400 that replaced the first request's answer, although that request had reached the function.
t.test('garbage after a complete request does not hide that request\'s answer', async t => {
  const demo = await startDemoHarness(t)
  const token = await demo.token({ roles: ['writer'] })
  const r = await exchange(Number(new URL(demo.url).port), readFileSync(demo.paths.caCert), `POST /orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Length: 2\r\n\r\n{}\x00garbage\r\n\r\n`, token)
  t.equal(r.status, 201, 'the client learns the order was created')
  t.equal(r.responses, 1, 'the garbage itself is not answered')
  t.equal(await upstreamCalls(demo), 1)
})

t.test('a Host that is not a host name and port is refused (RFC 9110 §7.2)', async t => {
  const demo = await startDemoHarness(t)
  const token = await demo.token()
  const port = Number(new URL(demo.url).port)
  const ca = readFileSync(demo.paths.caCert)
  for (const host of ['gw/admin', 'user@gw', 'gw:80:80', 'gw gw']) {
    const r = await exchange(port, ca, `GET /hello HTTP/1.1\r\nHost: ${host}\r\nAuthorization: Bearer ${token}\r\n\r\n`, token)
    t.equal(r.status, 400, host)
    t.equal(r.code, 'GW_ERR_GUARD_BAD_REQUEST', host)
  }
  const missing = await exchange(port, ca, `GET /hello HTTP/1.1\r\nAuthorization: Bearer ${token}\r\n\r\n`, token)
  t.equal(missing.code, 'GW_ERR_GUARD_BAD_REQUEST', 'no Host at all')
  t.equal(await upstreamCalls(demo), 0)
})
