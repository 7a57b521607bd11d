import t from 'tap'
import { connect as netConnect } from 'node:net'
import { connect as tlsConnect, type TLSSocket } from 'node:tls'
import { readFileSync } from 'node:fs'
import { httpsClient } from '../helpers/http.js'
import { gatewayFiles, startGatewayProcess, startPlainUpstream } from '../helpers/gateway-process.js'

// Graceful shutdown of a real `portcullis start` process, with real sockets on both sides.

/** An HTTPS/1.1 connection that made one request and now sits idle with keep-alive. */
async function idleKeepAlive (url: string, caFile: string, token: string): Promise<TLSSocket> {
  const { port } = new URL(url)
  const socket = tlsConnect({ host: '127.0.0.1', port: Number(port), ca: readFileSync(caFile) })
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject))
  socket.write(`GET /hello/idle HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${token}\r\n\r\n`)
  const head = await new Promise<string>(resolve => socket.once('data', (d: Buffer) => resolve(String(d))))
  if (!head.startsWith('HTTP/1.1 200')) throw new Error(`unexpected answer: ${head.slice(0, 100)}`)
  return socket
}

async function connectRefused (url: string): Promise<string> {
  const { port } = new URL(url)
  return new Promise(resolve => {
    const s = netConnect(Number(port), '127.0.0.1')
    s.once('connect', () => { s.destroy(); resolve('connected') })
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'))
  })
}

t.test('SIGTERM: readyz fails at once, new connections are refused, idle ones closed, in-flight ones finish, exit 0', async t => {
  const upstream = await startPlainUpstream(t, 'a')
  const files = await gatewayFiles(t)
  await files.writeConfig(upstream.url, 'lifecycle: { drainTimeoutMs: 60000 }')
  const gw = await startGatewayProcess(t, files.configFile)
  const client = httpsClient(t, files.caFile)
  const admin = httpsClient(t)
  const token = await files.token()
  t.equal((await admin.send(`${gw.adminUrl}/readyz`)).status, 200)

  const idle = await idleKeepAlive(gw.url, files.caFile, token)
  const idleClosed = new Promise<void>(resolve => idle.once('close', () => resolve()))
  const arrived = new Promise<void>(resolve => upstream.onHeld(resolve))
  const slow = client.send(`${gw.url}/hello/hold`, { token })
  await arrived

  gw.child.kill('SIGTERM')
  let ready = await admin.send(`${gw.adminUrl}/readyz`)
  // The signal is delivered asynchronously; the first answer after it is handled must be 503.
  while (ready.status === 200) ready = await admin.send(`${gw.adminUrl}/readyz`)
  t.equal(ready.status, 503, 'readyz fails while draining')
  t.match(ready.json(), { status: 'not ready', checks: { accepting: false }, details: { accepting: { ok: false, detail: 'shutting down' } } })
  t.equal(await connectRefused(gw.url), 'ECONNREFUSED', 'no new connections on the public port')
  await idleClosed
  t.pass('the idle keep-alive connection was closed by the gateway')

  gw.child.kill('SIGTERM')
  await gw.waitForLog(/already shutting down/)
  t.equal(gw.child.exitCode, null, 'a second signal does not end the drain')

  t.equal(upstream.held.length, 1)
  upstream.held[0]!.release()
  const res = await slow
  t.equal(res.status, 200, 'the in-flight request finished')
  t.equal(res.json().server, 'a')
  t.equal(res.headers.connection, 'close', 'and its connection is closed after it')
  t.equal(await gw.exited, 0)
})

t.test('a request that outlives the drain timeout is cut, and the process still exits 0', async t => {
  const upstream = await startPlainUpstream(t, 'a')
  const files = await gatewayFiles(t)
  await files.writeConfig(upstream.url, 'lifecycle: { drainTimeoutMs: 300 }')
  const gw = await startGatewayProcess(t, files.configFile)
  const client = httpsClient(t, files.caFile)
  const arrived = new Promise<void>(resolve => upstream.onHeld(resolve))
  const stuck = client.send(`${gw.url}/hello/hold`, { token: await files.token() }).then(r => r.status, (err: Error) => err.message)
  await arrived
  gw.child.kill('SIGTERM')
  t.equal(await gw.exited, 0)
  t.not(await stuck, 200, 'the stuck request did not get a success')
  t.match(gw.log(), /drain timeout reached/)
})
