import t from 'tap'
import { execFile } from 'node:child_process'
import { connect, getCiphers, type ConnectionOptions } from 'node:tls'
import { promisify } from 'node:util'
import { validateConfig, type ConfigError } from '../../src/config/load.js'
import { CONFIG_FILES, minimalConfig } from '../helpers/config.js'
import { startDemoHarness } from '../helpers/demo.js'
import { adminExchange } from '../helpers/admin-raw.js'
import { startSecurityHarness } from '../helpers/security.js'
import { systemTool } from '../helpers/system-tools.js'

// Issue #20 (7): the public listener offered Node's default list on TLS 1.2 (CBC suites with SHA-1
// MACs, CCM8, ARIA) and nothing in listen.tls could change it. Every TLS 1.2 suite this OpenSSL knows
// is offered alone and must be refused unless it is ECDHE with an AEAD cipher; minVersion, ciphers and
// HSTS are tried through the real listener; and sslscan (Debian's, as in CI) scans it.

const run = promisify(execFile)

/** The problems a config is refused with, as `path: message` lines ([] when it is accepted). */
async function problems (pending: Promise<unknown>): Promise<string[]> {
  return pending.then(() => [], (err: ConfigError) => err.problems.map(p => `${p.path}: ${p.message}`))
}

/** The suite the listener agreed to for a client offering only `ciphers` (null: handshake refused). */
async function negotiate (port: number, opts: ConnectionOptions): Promise<{ cipher: string, version: string } | null> {
  return new Promise(resolve => {
    const socket = connect({ host: '127.0.0.1', port, rejectUnauthorized: false, servername: 'localhost', ...opts })
    const timer = setTimeout(() => { socket.destroy(); resolve(null) }, 10_000)
    socket.once('secureConnect', () => {
      clearTimeout(timer)
      const c = socket.getCipher()
      resolve({ cipher: c.name, version: socket.getProtocol() ?? '' })
      socket.destroy()
    })
    socket.once('error', () => { clearTimeout(timer); socket.destroy(); resolve(null) })
  })
}

const demo = await startDemoHarness(t)
const port = Number(new URL(demo.url).port)

// Every TLS 1.2 suite this OpenSSL can offer (the TLS 1.3 ones are tried apart).
const TLS12 = getCiphers().map(c => c.toUpperCase()).filter(c => !c.startsWith('TLS_'))
// The demo certificate is ECDSA: of the profile's suites, these three can be agreed.
const AGREEABLE = new Set(['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305'])

t.test('TLS 1.2: only ECDHE with an AEAD cipher is agreed, every other suite is refused', async t => {
  t.ok(TLS12.length > 30, `${TLS12.length} TLS 1.2 suites tried one by one`)
  for (const suite of TLS12) {
    const got = await negotiate(port, { ciphers: `${suite}:@SECLEVEL=0`, minVersion: 'TLSv1', maxVersion: 'TLSv1.2' })
    if (AGREEABLE.has(suite)) t.same(got, { cipher: suite, version: 'TLSv1.2' }, `${suite} agreed`)
    else t.equal(got, null, `${suite} refused`)
  }
})

t.test('TLS 1.0 and 1.1 are refused; TLS 1.3 is served with its AEAD suites', async t => {
  for (const version of ['TLSv1', 'TLSv1.1'] as const) {
    t.equal(await negotiate(port, { ciphers: 'ALL:@SECLEVEL=0', minVersion: version, maxVersion: version }), null, `${version} refused`)
  }
  for (const suite of ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256']) {
    t.same(await negotiate(port, { ciphers: suite }), { cipher: suite, version: 'TLSv1.3' }, suite)
  }
})

t.test('listen.tls.minVersion: TLSv1.3 refuses TLS 1.2; listen.tls.ciphers narrows TLS 1.2 to what it names', async t => {
  const only13 = await startDemoHarness(t, { configure: raw => { raw.listen.tls.minVersion = 'TLSv1.3' } })
  const p13 = Number(new URL(only13.url).port)
  t.equal(await negotiate(p13, { maxVersion: 'TLSv1.2' }), null, 'TLS 1.2 refused')
  t.match(await negotiate(p13, {}), { version: 'TLSv1.3' }, 'TLS 1.3 served')

  const narrow = await startDemoHarness(t, { configure: raw => { raw.listen.tls.ciphers = 'ECDHE-ECDSA-AES256-GCM-SHA384' } })
  const pn = Number(new URL(narrow.url).port)
  t.same(await negotiate(pn, { maxVersion: 'TLSv1.2' }), { cipher: 'ECDHE-ECDSA-AES256-GCM-SHA384', version: 'TLSv1.2' })
  t.equal(await negotiate(pn, { maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256' }), null, 'a suite it does not name is refused')
  t.match(await negotiate(pn, {}), { version: 'TLSv1.3' }, 'TLS 1.3 keeps its suites')
})

t.test('a cipher string OpenSSL does not fully understand is refused at start, with its path', async t => {
  const dir = t.testdir(CONFIG_FILES)
  const bad = [
    'ECDHE-ECDSA-AES128-GCM-SHA25', 'ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SAH256', 'NOPE', 'TLS_AES_128_GCM_SHA257',
    'ECDHE-ECDSA-AES128-GCM-SHA256 ECDHE-RSA-CHACHA20-POLY', '!ALL', 'TLS_AES_128_GCM_SHA256', 'eNULL:!eNULL'
  ]
  for (const ciphers of bad) {
    const raw = minimalConfig()
    raw.listen.tls.ciphers = ciphers
    t.match(await problems(validateConfig(raw, { baseDir: dir })), [/^\/listen\/tls\/ciphers: .*cipher/], JSON.stringify(ciphers))
  }
  const raw = minimalConfig()
  raw.listen.tls = { ...raw.listen.tls, minVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256' }
  t.same(await problems(validateConfig(raw, { baseDir: dir })), [], 'TLS 1.3 suites alone with minVersion: TLSv1.3')
  const preload = minimalConfig()
  preload.listen.tls.hsts = { maxAgeSeconds: 300, preload: true }
  t.match(await problems(validateConfig(preload, { baseDir: dir })), [/^\/listen\/tls\/hsts\/preload: /], 'preload with a short max-age')
})

t.test('listen.tls.hsts: Strict-Transport-Security on every reply of the public listener', async t => {
  const hsts = await startDemoHarness(t, { configure: raw => { raw.listen.tls.hsts = { maxAgeSeconds: 63_072_000, includeSubDomains: true, preload: true } } })
  const expected = 'max-age=63072000; includeSubDomains; preload'
  const token = await hsts.token()
  const replies: Array<[string, string, Parameters<typeof hsts.client.send>[1]]> = [
    ['forwarded 200', '/hello', { token }],
    ['401', '/hello', {}],
    ['404', '/nowhere', { token }],
    ['400 bad path', '/hello/%2e%2e/admin', { token }],
    ['405', '/hello', { token, method: 'PATCH' }]
  ]
  for (const [name, path, opts] of replies) {
    const res = await hsts.client.send(`${hsts.url}${path}`, opts)
    t.equal(res.headers['strict-transport-security'], expected, `${name} (${res.status})`)
  }
  const plain = await demo.client.send(`${demo.url}/hello`, { token: await demo.token() })
  t.equal(plain.headers['strict-transport-security'], undefined, 'none when hsts is not configured')
})

t.test('listen.tls.hsts: a function\'s own Strict-Transport-Security cannot weaken the listener\'s', async t => {
  const h = await startSecurityHarness(t, { configure: raw => { raw.listen.tls.hsts = { maxAgeSeconds: 31_536_000 } } })
  h.stub.respond = socket => { socket.write('HTTP/1.1 200 OK\r\nstrict-transport-security: max-age=0\r\ncontent-length: 2\r\n\r\nok') }
  const res = (await h.send(h.head('GET', '/public/x'))).responses[0]
  t.equal(res?.status, 200)
  t.equal(res?.headers['strict-transport-security'], 'max-age=31536000', 'the listener\'s value, once')
})

t.test('sslscan finds no CBC suite, no SHA-1 MAC, no protocol below TLS 1.2 and no known vulnerability', async t => {
  let xml: string
  try {
    xml = (await run(systemTool('sslscan'), ['--no-colour', '--xml=-', `127.0.0.1:${port}`], { timeout: 120_000, maxBuffer: 8 * 1024 * 1024 })).stdout
  } catch (err) {
    t.fail(`sslscan did not run: ${(err as Error).message}`)
    return
  }
  const attrs = (tag: string): Array<Record<string, string>> => [...xml.matchAll(new RegExp(`<${tag}\\s([^>]*)/?>`, 'g'))]
    .map(m => Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map(a => [a[1]!, a[2]!])))
  const ciphers = attrs('cipher').filter(c => c.status === 'accepted' || c.status === 'preferred')
  t.ok(ciphers.length > 0, `sslscan saw ${ciphers.length} accepted suites: ${ciphers.map(c => c.cipher).join(', ')}`)
  // Stated as what is allowed: ECDHE with AES-GCM or ChaCha20-Poly1305 on TLS 1.2, TLS 1.3's suites.
  const AEAD12 = /^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/
  for (const c of ciphers) {
    if (c.sslversion === 'TLSv1.3') t.match(c.cipher, /^TLS_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256)$/, `${c.cipher} (TLS 1.3)`)
    else t.match(c.cipher, AEAD12, `${c.cipher} (${c.sslversion}): ECDHE and AEAD, so no CBC and no SHA-1 MAC`)
  }
  const protocols = attrs('protocol')
  t.ok(protocols.length >= 4, 'protocols were probed')
  for (const p of protocols) {
    const modern = p.type === 'tls' && (p.version === '1.2' || p.version === '1.3')
    if (!modern) t.equal(p.enabled, '0', `${p.type} ${p.version} disabled`)
  }
  t.ok(protocols.some(p => p.version === '1.3' && p.enabled === '1'), 'TLS 1.3 enabled')
  const heartbleed = attrs('heartbleed')
  t.ok(heartbleed.length > 0, 'heartbleed was probed')
  for (const h of heartbleed) t.equal(h.vulnerable, '0', `not vulnerable to heartbleed on ${h.sslversion}`)
  const renegotiation = attrs('renegotiation')
  t.equal(renegotiation.length, 1, 'renegotiation was probed')
  for (const r of renegotiation) t.ok(r.supported === '0' || r.secure === '1', 'no insecure renegotiation')
  // Anything else sslscan calls vulnerable or weak.
  t.notMatch(xml, /vulnerable="1"|strength="(weak|medium|null|anonymous)"/, 'nothing else flagged')
  t.comment(`sslscan: ${protocols.filter(p => p.enabled === '1').map(p => `${p.type} ${p.version}`).join(', ')} enabled`)
})

t.test('the admin listener keeps plain HTTP unless admin.tls is set', async t => {
  const res = (await adminExchange(Number(new URL(demo.adminUrl).port), 'GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n')).responses[0]
  t.equal(res?.status, 200)
})
