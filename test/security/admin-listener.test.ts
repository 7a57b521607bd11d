import t from 'tap'
import { randomBytes, randomInt } from 'node:crypto'
import { startDemoHarness } from '../helpers/demo.js'
import { adminExchange, adminGet } from '../helpers/admin-raw.js'

// Issue #20 (8): the admin listener answered any Host (a web page could read /status and /metrics
// through DNS rebinding), accepted 2,000 header fields, kept slowloris connections for 50 s and sent
// replies a browser would sniff and cache. Each class is tried with generated variants through a real
// socket against the real gateway.

const BOUND_MS = 5000 // well above the limits configured here, well below a test's budget

const demo = await startDemoHarness(t, {
  configure: raw => {
    raw.admin.hosts = ['gateway.internal']
    raw.limits = { headersTimeoutMs: 1000, requestTimeoutMs: 2000, keepAliveTimeoutMs: 1000, maxHeaders: 40 }
  }
})
const port = Number(new URL(demo.adminUrl).port)
const PATHS = ['/status', '/metrics', '/healthz', '/readyz', '/status.html', '/admin/revocations', '/nothing-here', '/.well-known/jwks.json?x', '//status']

const label = (): string => randomBytes(4).toString('hex')
const anyPort = (): number => randomInt(1, 65536)

// Names a page could rebind, addresses that are not this listener's, and Host values that are not
// host names at all. Generated ones change each run; the listed ones are the classic tricks.
const HOSTILE: Array<string | null> = [
  'evil.example', `evil.example:${port}`, 'localhost.evil.example', `127.0.0.1.nip.io:${port}`, 'evil.localhost',
  'gateway.internal.evil.example', 'internal', 'gateway', `localhost@evil.example:${port}`, 'localhost evil.example',
  '0x7f000001', '2130706433', '203.0.113.7', `[2001:db8::1]:${port}`, '[::1].evil.example', 'localhost:', 'localhost:port', '',
  null, // no Host at all
  ...Array.from({ length: 24 }, () => `${label()}.${label()}.example${Math.random() < 0.5 ? `:${anyPort()}` : ''}`),
  ...Array.from({ length: 8 }, () => `localhost.${label()}.test:${anyPort()}`),
  ...Array.from({ length: 8 }, () => `198.51.100.${randomInt(1, 255)}:${anyPort()}`)
]

const ALLOWED = [
  'localhost', `localhost:${port}`, 'LocalHost', 'localhost.', `127.0.0.1:${port}`, '127.0.0.1',
  `127.${randomInt(0, 256)}.${randomInt(0, 256)}.${randomInt(1, 255)}:${anyPort()}`, '[::1]', `[::1]:${port}`,
  'gateway.internal', `GATEWAY.Internal:${anyPort()}`
]

t.test('a Host the admin listener does not answer for gets 421 on every path, and nothing of the page', async t => {
  for (const host of HOSTILE) {
    for (const path of PATHS) {
      const { responses } = await adminExchange(port, adminGet(path, host))
      const res = responses[0]
      const name = `${path} with Host ${JSON.stringify(host)}`
      if (res === undefined) { t.fail(`${name}: no answer`); continue }
      t.equal(res.status, 421, name)
      t.match(JSON.parse(res.body), { code: 'GW_ERR_ADMIN_UNKNOWN_HOST' }, `${name}: coded body`)
      t.notMatch(res.body, /portcullis_|routes|"keys"|revision/, `${name}: nothing of the page`)
    }
  }
})

t.test('the public key set alone is served whatever the Host: functions fetch it by their own name for the gateway', async t => {
  for (const host of ['gateway-admin', `gateway-admin.svc.cluster.local:${port}`, 'evil.example']) {
    const res = (await adminExchange(port, adminGet('/.well-known/jwks.json', host))).responses[0]
    t.equal(res?.status, 200, `Host ${host}`)
    t.match(JSON.parse(res?.body ?? '{}'), { keys: Array })
  }
})

t.test('its own names and addresses are answered, on any port', async t => {
  for (const host of ALLOWED) {
    const { responses } = await adminExchange(port, adminGet('/status', host))
    t.equal(responses[0]?.status, 200, `Host ${host}`)
  }
  const metrics = await adminExchange(port, adminGet('/metrics', 'localhost'))
  t.match(metrics.responses[0]?.body, /^portcullis_/m, 'metrics for localhost')
})

t.test('every admin reply carries nosniff and no-store, errors included', async t => {
  const cases: Array<[string, string | null, string[], number]> = [
    ['/status', 'localhost', [], 200],
    ['/status.html', 'localhost', [], 200],
    ['/metrics', 'localhost', [], 200],
    ['/healthz', '127.0.0.1', [], 200],
    ['/readyz', 'localhost', [], 200],
    [`/${label()}`, 'localhost', [], 404],
    ['/status', 'evil.example', [], 421],
    ['/status', 'localhost', Array.from({ length: 41 }, (_, i) => `X-Extra-${i}: 1`), 431]
  ]
  for (const [path, host, extra, status] of cases) {
    const res = (await adminExchange(port, adminGet(path, host, extra))).responses[0]
    t.equal(res?.status, status, `${path} (${status})`)
    t.equal(res?.headers['x-content-type-options'], 'nosniff', `${path} (${status}): nosniff`)
    t.equal(res?.headers['cache-control'], 'no-store', `${path} (${status}): no-store`)
  }
  // The public keys are meant to be cached by the functions that verify assertions.
  const jwks = (await adminExchange(port, adminGet('/.well-known/jwks.json', 'localhost'))).responses[0]
  t.equal(jwks?.headers['x-content-type-options'], 'nosniff')
  t.equal(jwks?.headers['cache-control'], 'public, max-age=60')
})

t.test('header count and size: the public listener\'s limits', async t => {
  for (const n of [41, 60, 200, 2000]) {
    const res = (await adminExchange(port, adminGet('/status', 'localhost', Array.from({ length: n }, (_, i) => `X-H${i}: v`)))).responses[0]
    t.equal(res?.status, 431, `${n} header fields refused`)
    t.equal(res?.status === 431 ? JSON.parse(res.body).code : null, 'GW_ERR_GUARD_HEADERS_TOO_LARGE')
  }
  const atLimit = (await adminExchange(port, adminGet('/healthz', 'localhost', Array.from({ length: 38 }, (_, i) => `X-H${i}: v`)))).responses[0]
  t.equal(atLimit?.status, 200, '40 header fields (Host and Connection included) are fine')
  const big = (await adminExchange(port, adminGet('/status', 'localhost', [`X-Big: ${'a'.repeat(20_000)}`]))).responses[0]
  t.equal(big?.status, 431, 'a head above limits.maxHeaderBytes is refused')
})

t.test('slow and silent clients are cut off at the configured timeouts', async t => {
  const { connect } = await import('node:net')
  // A head dribbled one byte every 300 ms never completes; a client that sends nothing; many of them.
  const head = adminGet('/status', 'localhost', Array.from({ length: 20 }, (_, i) => `X-Slow-${i}: ${'a'.repeat(10)}`))
  const clients = Array.from({ length: 30 }, (_, i) => {
    const socket = connect({ host: '127.0.0.1', port })
    socket.on('error', () => {})
    let at = 0
    const timer = i % 3 === 0 ? null : setInterval(() => { if (at < head.length) socket.write(head[at++]!) }, 300)
    const closed = new Promise<boolean>(resolve => {
      const limit = setTimeout(() => resolve(false), BOUND_MS)
      socket.once('close', () => { clearTimeout(limit); resolve(true) })
    })
    t.teardown(() => { if (timer !== null) clearInterval(timer); socket.destroy() })
    return closed.finally(() => { if (timer !== null) clearInterval(timer) })
  })
  const closed = await Promise.all(clients)
  t.equal(closed.filter(Boolean).length, clients.length, `all ${clients.length} slow or silent connections closed within ${BOUND_MS} ms`)
  const res = (await adminExchange(port, adminGet('/healthz', 'localhost'))).responses[0]
  t.equal(res?.status, 200, 'a normal client is served afterwards')
})
