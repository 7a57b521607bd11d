import t from 'tap'
import { copyFileSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import type { TLSSocket } from 'node:tls'
import { X509Certificate } from 'node:crypto'
import { loadCa, type PemPair } from '../../src/tls/pki.js'
import { startSecurityHarness } from '../helpers/security.js'

// The gateway's client certificate for an upstream is replaced on disk while requests flow: new
// connections present the new pair, not one request fails, and a broken pair written later is
// refused (logged and counted) while the good one stays in use.

// The function: mTLS required against the demo CA, records which client certificate each request
// came over, and closes every connection after its response so each request makes a new handshake.
const seen: string[] = []
const fn = createServer({ requestCert: true, rejectUnauthorized: true }, (req: IncomingMessage, res: ServerResponse) => {
  seen.push((req.socket as TLSSocket).getPeerCertificate().fingerprint256)
  res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' }).end('ok')
})
fn.on('tlsClientError', () => {})
await new Promise<void>(resolve => fn.listen(0, '127.0.0.1', resolve))
t.teardown(() => { fn.closeAllConnections(); fn.close() })

const certDir = mkdtempSync(join(tmpdir(), 'portcullis-rotation-'))
t.teardown(() => rmSync(certDir, { recursive: true, force: true }))
const certFile = join(certDir, 'client.crt')
const keyFile = join(certDir, 'client.key')

const h = await startSecurityHarness(t, {
  configure: (raw, paths) => {
    copyFileSync(paths.gatewayClientCert, certFile)
    copyFileSync(paths.gatewayClientKey, keyFile)
    const up = raw.upstreams[0]
    up.url = `https://127.0.0.1:${(fn.address() as AddressInfo).port}`
    up.tls = { ...up.tls, cert: certFile, key: keyFile, reloadIntervalMs: 100 }
  }
})
const caPem = readFileSync(h.demo.paths.caCert, 'utf8')
fn.setSecureContext({ ...await (await loadCa({ cert: caPem, key: readFileSync(`${h.demo.paths.dir}/ca.key`, 'utf8') })).issue({ commonName: 'fn', ipAddresses: ['127.0.0.1'], dnsNames: ['localhost'], usage: 'server' }), ca: caPem })
const ca = await loadCa({ cert: caPem, key: readFileSync(`${h.demo.paths.dir}/ca.key`, 'utf8') })

const fingerprint = (pem: string): string => new X509Certificate(pem).fingerprint256
/** Replaces the pair the way a secret manager does: each file written aside, then renamed over. */
function install (pair: PemPair): void {
  writeFileSync(`${keyFile}.new`, pair.key)
  writeFileSync(`${certFile}.new`, pair.cert)
  renameSync(`${keyFile}.new`, keyFile)
  renameSync(`${certFile}.new`, certFile)
}
async function metric (labels: string, name = 'portcullis_certificate_reloads_total'): Promise<number> {
  const line = (await h.metrics()).split('\n').find(l => l.startsWith(`${name}{${labels}}`))
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1))
}
async function until (what: () => boolean | Promise<boolean>): Promise<boolean> {
  for (let i = 0; i < 200; i++) { if (await what()) return true; await sleep(50) }
  return false
}

t.test('rotation on disk under load: new connections use the new pair, no request fails', async t => {
  const token = await h.demo.token()
  const statuses = new Map<number, number>()
  let stop = false
  const worker = async (): Promise<void> => {
    while (!stop) {
      const res = await h.demo.client.send(`${h.demo.url}/public/load`, { token }).catch(() => ({ status: 0 }))
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
    }
  }
  const workers = Array.from({ length: 6 }, async () => worker())

  const original = fingerprint(readFileSync(certFile, 'utf8'))
  t.ok(await until(() => seen.length >= 20), 'load is flowing')
  t.ok(seen.every(f => f === original), 'before the rotation, every request came with the original certificate')

  const next = await ca.issue({ commonName: 'gateway-next', uris: ['spiffe://portcullis.demo/gateway'], usage: 'client', days: 30 })
  install(next)
  t.ok(await until(() => seen.at(-1) === fingerprint(next.cert)), 'requests arrive with the new certificate')
  const afterRotation = seen.length
  t.ok(await until(() => seen.length >= afterRotation + 20), 'load keeps flowing')
  t.ok(seen.slice(afterRotation).every(f => f === fingerprint(next.cert)), 'every new connection presents the new pair')
  t.ok(await metric('certificate="upstream/demo-function",result="loaded"') >= 1, 'the reload is counted')
  const days = (await metric('certificate="upstream/demo-function"', 'portcullis_certificate_expiry_timestamp_seconds') - Date.now() / 1000) / 86_400
  t.ok(days > 29 && days <= 30, `the expiry metric follows the new certificate (${days.toFixed(2)} days)`)

  // A broken pair: a certificate with a key that is not its own. The good pair stays in use.
  const stranger = await ca.issue({ commonName: 'stranger', usage: 'client' })
  const failedBefore = await metric('certificate="upstream/demo-function",result="failed"')
  install({ cert: stranger.cert, key: next.key })
  t.ok(await until(async () => await metric('certificate="upstream/demo-function",result="failed"') > failedBefore), 'the broken pair is refused and counted')
  const afterBroken = seen.length
  t.ok(await until(() => seen.length >= afterBroken + 20), 'load keeps flowing')
  t.ok(seen.slice(afterBroken).every(f => f === fingerprint(next.cert)), 'the last good pair is still the one presented')

  stop = true
  await Promise.all(workers)
  const total = [...statuses.values()].reduce((a, b) => a + b, 0)
  t.strictSame([...statuses.keys()], [200], `all ${total} requests succeeded`, { statuses: Object.fromEntries(statuses) })
})
