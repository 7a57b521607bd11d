import t from 'tap'
import { readFile } from 'node:fs/promises'
import { createSecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2'
import type { AddressInfo } from 'node:net'
import { loadCa } from '../../src/tls/pki.js'
import { startSecurityHarness } from '../helpers/security.js'

// `http2: true` offers h2 in ALPN; a function that picks it is spoken to over HTTP/2 (one connection,
// many streams), with the same mutual TLS, header rules and streamed bodies. Without it: HTTP/1.1.

const fn = createSecureServer({ allowHTTP1: true, requestCert: true, rejectUnauthorized: true }, (req: Http2ServerRequest, res: Http2ServerResponse) => {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ version: req.httpVersion, authority: req.headers[':authority'] ?? req.headers.host, body: Buffer.concat(chunks).toString(), subject: req.headers['x-portcullis-subject'], connection: req.headers.connection ?? null }))
  })
})
fn.on('tlsClientError', () => {})
let sessions = 0
fn.on('session', () => { sessions++ })
await new Promise<void>(resolve => fn.listen(0, '127.0.0.1', resolve))
t.teardown(() => { fn.close() })
const fnUrl = `https://127.0.0.1:${(fn.address() as AddressInfo).port}`

const h = await startSecurityHarness(t, {
  configure: raw => {
    const base = raw.upstreams[0]
    raw.upstreams.push({ ...base, id: 'h2', url: fnUrl, http2: true }, { ...base, id: 'h1', url: fnUrl })
    raw.routes.push(
      { id: 'h2', prefix: '/public/h2', methods: ['GET', 'POST'], upstream: 'h2' },
      { id: 'h1', prefix: '/public/h1', methods: ['GET'], upstream: 'h1' }
    )
  }
})
const caPem = await readFile(h.demo.paths.caCert, 'utf8')
const ca = await loadCa({ cert: caPem, key: await readFile(`${h.demo.paths.dir}/ca.key`, 'utf8') })
fn.setSecureContext({ ...await ca.issue({ commonName: 'fn', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], usage: 'server' }), ca: caPem })

const token = await h.demo.token()
const call = async (path: string, opts: { method?: string, body?: string } = {}) => {
  const res = await h.demo.client.send(`${h.demo.url}${path}`, { token, ...opts })
  return { status: res.status, json: res.json<{ version: string, authority: string, body: string, subject: string, connection: string | null }>() }
}

t.test('an upstream with http2 is spoken to over HTTP/2, with the gateway\'s identity headers', async t => {
  const res = await call('/public/h2/x')
  t.equal(res.status, 200)
  t.equal(res.json.version, '2.0')
  t.equal(res.json.authority, fnUrl.slice('https://'.length), 'the authority is the upstream\'s, not the client\'s Host')
  t.equal(res.json.subject, 'alice')
})

t.test('request bodies stream over HTTP/2', async t => {
  const body = 'x'.repeat(100_000)
  const res = await call('/public/h2/upload', { method: 'POST', body })
  t.equal(res.status, 200)
  t.equal(res.json.body.length, body.length, 'the whole body arrived')
})

t.test('many requests at once are multiplexed over fewer connections', async t => {
  const all = await Promise.all(Array.from({ length: 20 }, async (_, i) => call(`/public/h2/${i}`)))
  t.strictSame([...new Set(all.map(r => r.status))], [200])
  // undici's pool opens another session while one is still connecting, so not always exactly one.
  t.ok(sessions < 20, `${sessions} HTTP/2 connections carried the 22 requests so far`)
})

t.test('without http2, the same function is spoken to over HTTP/1.1', async t => {
  const res = await call('/public/h1/x')
  t.equal(res.status, 200)
  t.equal(res.json.version, '1.1')
})
