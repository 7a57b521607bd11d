import t from 'tap'
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { promisify } from 'node:util'
import { join } from 'node:path'
import { createCa } from '../../src/tls/pki.js'
import { startDemoHarness } from '../helpers/demo.js'
import { adminExchange, adminGet } from '../helpers/admin-raw.js'

// Issue #20 (8): the admin bearer token crossed the admin listener in clear. admin.tls serves it over
// TLS (the listeners' TLS policy), and admin.tls.clientCa makes a client certificate from that CA a
// condition of the handshake itself.

const dir = t.testdir()
const ca = await createCa('Admin Test CA')
const other = await createCa('Somebody Else CA')
const server = await ca.issue({ commonName: 'admin', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], usage: 'server' })
const operator = await ca.issue({ commonName: 'operator', usage: 'client' })
const stranger = await other.issue({ commonName: 'operator', usage: 'client' })
const adminToken = randomBytes(32).toString('base64url')
const files: Record<string, string> = {
  'ca.crt': ca.cert, 'admin.crt': server.cert, 'admin.key': server.key, 'operator.crt': operator.cert, 'operator.key': operator.key, 'admin-token': adminToken
}
for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text)
const path = (name: string): string => join(dir, name)

const withClientCa = await startDemoHarness(t, {
  configure: raw => {
    raw.admin.tls = { cert: path('admin.crt'), key: path('admin.key'), clientCa: path('ca.crt') }
    raw.admin.tokenFile = path('admin-token')
  }
})
const port = Number(new URL(withClientCa.adminUrl).port)
const trust = { ca: ca.cert, servername: 'localhost' }

t.test('with a client CA: no certificate or a stranger\'s, no handshake; the operator\'s certificate is served', async t => {
  t.match(withClientCa.adminUrl, /^https:\/\//, 'the admin URL says https')
  const refused: Array<[string, object]> = [
    ['no client certificate', trust],
    ['a certificate from another CA', { ...trust, cert: stranger.cert, key: stranger.key }],
    ['another CA\'s own self-signed certificate', { ...trust, cert: other.cert, key: other.key }]
  ]
  for (const [name, tls] of refused) {
    const { responses } = await adminExchange(port, adminGet('/status', 'localhost'), { tls })
    t.equal(responses.length, 0, `${name}: no HTTP answer`)
  }
  const plain = await adminExchange(port, adminGet('/status', 'localhost'))
  t.notOk(plain.responses.some(r => r.status === 200), 'plain HTTP gets no status')

  const ok = (await adminExchange(port, adminGet('/status', 'localhost'), { tls: { ...trust, cert: operator.cert, key: operator.key } })).responses[0]
  t.equal(ok?.status, 200, 'the operator is served')
  t.match(JSON.parse(ok?.body ?? '{}'), { routes: Array })
  t.equal(ok?.headers['cache-control'], 'no-store')
  const rebound = (await adminExchange(port, adminGet('/status', 'evil.example'), { tls: { ...trust, cert: operator.cert, key: operator.key } })).responses[0]
  t.equal(rebound?.status, 421, 'the Host allow-list holds over TLS too')
})

t.test('the admin listener follows the TLS policy: no TLS below 1.2, no CBC suite', async t => {
  const tls = { ...trust, cert: operator.cert, key: operator.key }
  const old = await adminExchange(port, adminGet('/healthz', 'localhost'), { tls: { ...tls, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'ALL:@SECLEVEL=0' } })
  t.equal(old.responses.length, 0, 'TLS 1.0/1.1 refused')
  const cbc = await adminExchange(port, adminGet('/healthz', 'localhost'), { tls: { ...tls, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:@SECLEVEL=0' } })
  t.equal(cbc.responses.length, 0, 'CBC suites refused')
  const gcm = await adminExchange(port, adminGet('/healthz', 'localhost'), { tls: { ...tls, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' } })
  t.equal(gcm.responses[0]?.status, 200, 'an ECDHE AEAD suite is served')
})

t.test('portcullis revoke reaches it with --ca, --cert and --key, and not without the certificate', async t => {
  const cli = new URL('../../dist/cli.js', import.meta.url).pathname
  const args = ['revoke', '--sub', 'mallory', '--ttl', '5m', '--admin-url', withClientCa.adminUrl, '--token-file', path('admin-token'), '--ca', path('ca.crt')]
  const run = async (...more: string[]) => promisify(execFile)(process.execPath, [cli, ...args, ...more]).then(
    r => ({ code: 0, stdout: r.stdout }), (err: { code: number, stdout: string }) => ({ code: err.code, stdout: err.stdout }))
  t.match(await run(), { code: 1 }, 'refused without a client certificate')
  const ok = await run('--cert', path('operator.crt'), '--key', path('operator.key'))
  t.equal(ok.code, 0)
  t.match(JSON.parse(ok.stdout), { kind: 'sub', value: 'mallory' })
})

t.test('without a client CA: TLS only, any client', async t => {
  const demo = await startDemoHarness(t, {
    configure: raw => { raw.admin.tls = { cert: path('admin.crt'), key: path('admin.key') } }
  })
  const p = Number(new URL(demo.adminUrl).port)
  const res = (await adminExchange(p, adminGet('/healthz', 'localhost'), { tls: trust })).responses[0]
  t.equal(res?.status, 200)
})
