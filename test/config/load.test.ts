import t from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { loadConfig, validateConfig } from '../../src/config/load.js'
import type { Config } from '../../src/config/schema.js'
import { CONFIG_FILES, minimalConfig, paths, refusal } from '../helpers/config.js'

// The loader only checks that TLS and JWKS files are readable, so plain text stands in for them
// (CONFIG_FILES).

const MINIMAL = `
listen:
  tls:
    cert: certs/server.crt
    key: certs/server.key
issuers:
  - id: idp
    issuer: https://idp.example.com
    audiences: [api]
    algorithms: [RS256]
    jwks: { file: keys/jwks.json }
policy:
  bundle: build/bundle.tar.gz
upstreams:
  - id: fn
    url: https://fn.internal.example/base
routes:
  - id: hello
    prefix: /hello
    methods: [GET]
    upstream: fn
`

t.test('a valid minimal config loads with defaults filled in', async t => {
  const dir = t.testdir({ ...CONFIG_FILES, 'gateway.yaml': MINIMAL })
  const config = await loadConfig(join(dir, 'gateway.yaml'), {})

  t.same(config.admin, { host: '127.0.0.1', port: 9090, hosts: [] })
  t.same(config.limits, {
    maxBodyBytes: 1_048_576,
    requestTimeoutMs: 30_000,
    headersTimeoutMs: 10_000,
    keepAliveTimeoutMs: 5_000,
    maxHeaderBytes: 16_384,
    maxHeaders: 100,
    maxUriBytes: 8192,
    maxConnections: 10_000,
    pathParameters: 'reject',
    doubleEncodedPath: 'reject',
    lookalikePath: 'reject',
    http2: { maxConcurrentStreams: 100, headerTableSize: 4096, maxSessionMemoryMb: 10, maxOutstandingPings: 10, maxSettings: 32, maxInvalidFrames: 100, maxRejectedStreams: 100, resetBurst: 100, resetsPerSecond: 10, abusePenaltySeconds: 10 }
  })
  t.equal(config.listen.host, '0.0.0.0')
  t.equal(config.listen.port, 8443)
  t.equal(config.listen.plaintext, false)
  t.equal(config.listen.http2, true, 'HTTP/2 is offered by default (issue #21)')
  t.equal(config.logging.level, 'info')
  t.same(config.rateLimit, { store: { type: 'memory', commandTimeoutMs: 200, failuresBeforeDown: 3, localFallbackShare: 0.5, keyPrefix: 'portcullis:rl:' }, trustedProxies: [], tiers: {} })
  t.equal(config.policy.entrypoint, 'gateway/authz/decision')
  t.match(config.issuers[0], { clockToleranceSeconds: 30, jwksCacheSeconds: 600, fetchTimeoutMs: 5_000 })
  t.match(config.upstreams[0], { plaintext: false, connectTimeoutMs: 5_000, headersTimeoutMs: 30_000, bodyTimeoutMs: 30_000, connections: 64, maxQueue: 64, queueTimeoutMs: 1_000, queueFairness: 'per-identity' })
  t.match(config.upstreams[0], { totalTimeoutMs: 120_000, retryConnectFailures: true, circuitBreaker: { enabled: true, failures: 5, openMs: 10_000 } })
  t.match(config.routes[0], { stripPrefix: false, authentication: 'jwt', metadata: {} })
  t.equal(config.routes[0]!.maxBodyBytes, undefined, 'a route without its own body limit uses limits.maxBodyBytes')
  t.equal(config.routes[0]!.issuers, undefined, 'no issuer restriction unless configured')
})

t.test('relative file paths are resolved against the config file folder, absolute ones kept', async t => {
  const dir = t.testdir({
    ...CONFIG_FILES,
    conf: {
      'gateway.yaml': MINIMAL
        .replaceAll('certs/', '../certs/')
        .replace('keys/jwks.json', '../keys/jwks.json')
        .replace('    url: https://fn.internal.example/base', [
          '    url: https://fn.internal.example/base',
          '    tls:',
          '      ca: ../certs/ca.crt',
          '      cert: ../certs/client.crt',
          '      key: ../certs/client.key'
        ].join('\n'))
    }
  })
  const config = await loadConfig(join(dir, 'conf', 'gateway.yaml'), {})
  t.equal(config.listen.tls?.cert, join(dir, 'certs', 'server.crt'))
  t.equal(config.listen.tls?.key, join(dir, 'certs', 'server.key'))
  t.same(config.issuers[0]!.jwks, { file: join(dir, 'keys', 'jwks.json') })
  t.same(config.upstreams[0]!.tls, { ca: join(dir, 'certs', 'ca.crt'), cert: join(dir, 'certs', 'client.crt'), key: join(dir, 'certs', 'client.key'), reloadIntervalMs: 5000 })
  t.equal(config.policy.bundle, join(dir, 'conf', 'build', 'bundle.tar.gz'), 'the bundle path is resolved even though the file does not exist yet')

  const raw = minimalConfig()
  raw.listen.tls = { cert: join(dir, 'certs', 'server.crt'), key: join(dir, 'certs', 'server.key') }
  raw.issuers[0].jwks.file = join(dir, 'keys', 'jwks.json')
  const other = await validateConfig(raw, { baseDir: join(dir, 'somewhere-else'), env: {} })
  t.match(other.listen.tls, { cert: join(dir, 'certs', 'server.crt'), key: join(dir, 'certs', 'server.key') }, 'absolute paths kept')
  t.equal(other.policy.bundle, join(dir, 'somewhere-else', 'build', 'bundle.tar.gz'), 'relative to baseDir')
})

t.test('the loaded config is deeply frozen', async t => {
  const dir = t.testdir({ ...CONFIG_FILES, 'gateway.yaml': MINIMAL })
  const config = await loadConfig(join(dir, 'gateway.yaml'), {})
  for (const part of [config, config.admin, config.listen, config.listen.tls, config.routes, config.routes[0], config.routes[0]!.methods,
    config.routes[0]!.metadata, config.upstreams[0], config.issuers[0]!.jwks]) {
    t.ok(Object.isFrozen(part), 'frozen')
  }
  t.throws(() => { (config.admin as { port: number }).port = 1 }, TypeError)
  t.throws(() => { (config.routes as Config['routes'][number][]).push(config.routes[0]!) }, TypeError)
  t.equal(config.admin.port, 9090)
})

t.test('validateConfig does not change the object it is given', async t => {
  const dir = t.testdir(CONFIG_FILES)
  const raw = minimalConfig()
  const before = structuredClone(raw)
  await validateConfig(raw, { baseDir: dir, env: {} })
  t.same(raw, before)
  t.notOk(Object.isFrozen(raw))
})

t.test('environment substitution', async t => {
  t.test('${VAR} and ${VAR:-default} are replaced', async t => {
    const dir = t.testdir({
      ...CONFIG_FILES,
      'gateway.yaml': MINIMAL.replace('https://fn.internal.example/base', '${FN_URL}') +
        'logging:\n  level: ${LOG_LEVEL:-warn}\nadmin:\n  host: ${ADMIN_HOST:-127.0.0.2}\n'
    })
    const config = await loadConfig(join(dir, 'gateway.yaml'), { FN_URL: 'https://fn.from-env.example/x', ADMIN_HOST: '10.0.0.1' })
    t.equal(config.upstreams[0]!.url, 'https://fn.from-env.example/x')
    t.equal(config.logging.level, 'warn', 'default used when the variable is unset')
    t.equal(config.admin.host, '10.0.0.1', 'the variable wins over the default')
    // Compose's `X: ${X}` passes an unset host variable on as an empty one: the default still applies.
    const empty = await loadConfig(join(dir, 'gateway.yaml'), { FN_URL: 'https://fn.from-env.example/x', LOG_LEVEL: '', ADMIN_HOST: '' })
    t.equal(empty.logging.level, 'warn', 'default used when the variable is empty, as in the shell')
    t.equal(empty.admin.host, '127.0.0.2')
    await t.rejects(loadConfig(join(dir, 'gateway.yaml'), { FN_URL: '' }), /upstreams\/0\/url/, 'an empty variable without a default stays empty (and is refused here as a URL)')
  })

  t.test('an empty default is allowed, substitution is a single pass', async t => {
    const raw = minimalConfig()
    raw.routes[0].metadata = { team: 'x${TEAM:-}y', nested: '${INDIRECT}', list: ['${TEAM:-none}'] }
    const config = await validateConfig(raw, { baseDir: t.testdir(CONFIG_FILES), env: { INDIRECT: '${SECRET}', SECRET: 'leaked' } })
    t.same(config.routes[0]!.metadata, { team: 'xy', nested: '${SECRET}', list: ['none'] })
  })

  t.test('a missing variable is reported with the JSON pointer of where it is used', async t => {
    const raw = minimalConfig()
    raw.routes[0].metadata = { owner: '${OWNER}', 'a/b~c': ['ok', 'team-${TEAM}'] }
    const err = await refusal(validateConfig(raw, { baseDir: t.testdir(CONFIG_FILES), env: {} }))
    t.same(err.problems, [
      { path: '/routes/0/metadata/owner', message: 'environment variable OWNER is not set' },
      { path: '/routes/0/metadata/a~1b~0c/1', message: 'environment variable TEAM is not set' }
    ])
    t.match(err.message, /^- \/routes\/0\/metadata\/owner: environment variable OWNER is not set$/m)
  })

  t.test('loadConfig reports a missing variable from the YAML file', async t => {
    const dir = t.testdir({ ...CONFIG_FILES, 'gateway.yaml': MINIMAL.replace('bundle: build/bundle.tar.gz', 'bundle: ${BUNDLE_DIR}/bundle.tar.gz') })
    const err = await refusal(loadConfig(join(dir, 'gateway.yaml'), {}))
    t.same(paths(err), ['/policy/bundle'])
    t.match(err.problems[0]!.message, /BUNDLE_DIR/)
  })
})

t.test('semantic mistakes are all reported together, each with its path', async t => {
  const dir = t.testdir(CONFIG_FILES)
  const raw = minimalConfig()
  raw.listen.tls.cert = 'certs/missing.crt'
  raw.upstreams.push({ id: 'local', url: 'http://127.0.0.1:3000' })
  raw.routes = [
    { id: 'hello', prefix: '/hello', methods: ['GET'], upstream: 'nope' },
    { id: 'hello', prefix: '/other', methods: ['GET'], upstream: 'fn' }
  ]
  const err = await refusal(validateConfig(raw, { baseDir: dir, source: 'gateway.yaml', env: {} }))
  t.same(paths(err).sort(), ['/listen/tls/cert', '/routes/0/upstream', '/routes/1/id', '/upstreams/1/url'])
  t.match(err.message, /^invalid configuration in gateway\.yaml:$/m)
  t.match(err.message, /^- \/routes\/0\/upstream: unknown upstream "nope"$/m)
  t.match(err.message, /^- \/routes\/1\/id: duplicate id "hello"$/m)
  t.match(err.message, /^- \/upstreams\/1\/url: must be an https URL/m)
  t.match(err.message, /^- \/listen\/tls\/cert: file not readable: .*missing\.crt$/m)
  t.equal(err.code, 'GW_ERR_CONFIG_INVALID')
  t.equal(err.name, 'ConfigError')
  t.equal(err.source, 'gateway.yaml')
})

t.test('a route naming an unknown issuer or repeating a method and prefix is refused', async t => {
  const raw = minimalConfig()
  raw.routes = [
    { id: 'hello', prefix: '/hello', methods: ['GET'], upstream: 'fn', issuers: ['idp', 'other-idp'] },
    { id: 'hello-2', prefix: '/hello', methods: ['POST', 'GET'], upstream: 'fn' }
  ]
  const err = await refusal(validateConfig(raw, { baseDir: t.testdir(CONFIG_FILES), env: {} }))
  t.same(err.problems, [
    { path: '/routes/0/issuers/1', message: 'unknown issuer "other-idp"' },
    { path: '/routes/1/prefix', message: 'GET /hello is already served by /routes/0' }
  ])
})

t.test('schema mistakes are all reported together, each with its path', async t => {
  const raw = minimalConfig()
  raw.listen.tsl = raw.listen.tls
  raw.admin = { port: 'ninety' } // text that is not a number ("9090" would be read as one)
  raw.limits = { requestTimeoutMs: 10 }
  raw.routes[0].methods = ['GET', 'FETCH']
  delete raw.policy
  const err = await refusal(validateConfig(raw, { baseDir: t.testdir(CONFIG_FILES), env: {} }))
  const byPath = new Map(err.problems.map(p => [p.path, p.message]))
  t.equal(byPath.get('/listen'), 'unknown property "tsl"')
  t.equal(byPath.get('/admin/port'), 'must be integer')
  t.match(byPath.get('/limits/requestTimeoutMs'), />= 1000/)
  t.ok(byPath.has('/routes/0/methods/1'), 'unknown method reported at its index')
  t.equal(byPath.get(''), 'missing required property "policy"')
  t.match(err.message, /^- \/: missing required property "policy"$/m, 'the root is shown as /')
  t.match(err.message, /^- \/admin\/port: must be integer$/m)
})

t.test('schema and semantic mistakes in one file are all reported together', async t => {
  const raw = minimalConfig()
  raw.listen.tls.cert = 'certs/missing.crt'
  raw.listen.extra = true // unknown property
  raw.admin = { port: 'ninety' } // wrong type
  raw.upstreams.push({ id: 'local', url: 'http://127.0.0.1:3000' }) // http without plaintext
  raw.routes = [
    { id: 'hello', prefix: '/hello', methods: ['GET'], upstream: 'nope' }, // unknown upstream
    { id: 'hello', prefix: '/other', methods: ['GET'], upstream: 'fn' } // duplicate id
  ]
  const err = await refusal(validateConfig(raw, { baseDir: t.testdir(CONFIG_FILES), env: {} }))
  const got = paths(err)
  for (const p of ['/listen', '/admin/port', '/upstreams/1/url', '/routes/0/upstream', '/routes/1/id', '/listen/tls/cert']) {
    t.ok(got.includes(p), `reports ${p}`)
  }
  t.match(err.message, /^- \/listen: unknown property "extra"$/m)
  t.match(err.message, /^- \/admin\/port: must be integer$/m)
  t.match(err.message, /^- \/routes\/0\/upstream: unknown upstream "nope"$/m)
})

t.test('YAML problems', async t => {
  t.test('a syntax error is reported', async t => {
    const dir = t.testdir({ 'gateway.yaml': 'listen:\n  tls: [unclosed\nadmin: {\n' })
    const err = await refusal(loadConfig(join(dir, 'gateway.yaml'), {}))
    t.ok(err.problems.length > 0)
    for (const p of err.problems) t.match(p.message, /^YAML: /)
    t.equal(err.source, join(dir, 'gateway.yaml'))
    t.match(err.message, /^- \/: YAML: /m)
  })
  t.test('duplicate keys are refused instead of the last one silently winning', async t => {
    const dir = t.testdir({ ...CONFIG_FILES, 'gateway.yaml': MINIMAL + 'admin:\n  port: 9091\n  port: 9092\n' })
    const err = await refusal(loadConfig(join(dir, 'gateway.yaml'), {}))
    t.equal(err.problems.length, 1)
    t.match(err.problems[0]!.message, /^YAML: .*unique/i)
  })
  t.test('an unreadable file is reported', async t => {
    const dir = t.testdir({})
    const err = await refusal(loadConfig(join(dir, 'absent.yaml'), {}))
    t.same(paths(err), [''])
    t.match(err.problems[0]!.message, /^cannot read file: /)
  })
})

t.test('each load reads the file afresh', async t => {
  const dir = t.testdir({ ...CONFIG_FILES, 'gateway.yaml': MINIMAL })
  const a = await loadConfig(join(dir, 'gateway.yaml'), {})
  await writeFile(join(dir, 'gateway.yaml'), MINIMAL + 'admin:\n  port: 9999\n')
  const b = await loadConfig(join(dir, 'gateway.yaml'), {})
  t.equal(a.admin.port, 9090)
  t.equal(b.admin.port, 9999)
})

t.test('a number or boolean substituted from the environment is read as one', async t => {
  const raw = minimalConfig()
  raw.admin = { port: '${ADMIN_PORT}' }
  const config = await validateConfig(raw, { baseDir: t.testdir(CONFIG_FILES), env: { ADMIN_PORT: '9191' } })
  t.equal(config.admin.port, 9191)
})

t.test('issuer keys: HS* needs a strong secret, never mixed with public-key algorithms', async t => {
  const mixed = minimalConfig()
  mixed.issuers[0].algorithms = ['RS256', 'HS256']
  t.same(paths(await refusal(validateConfig(mixed, { baseDir: t.testdir(CONFIG_FILES), env: {} }))), ['/issuers/0/algorithms'])

  const noSecret = minimalConfig()
  noSecret.issuers[0] = { ...noSecret.issuers[0], algorithms: ['HS256'], jwks: undefined }
  t.same(paths(await refusal(validateConfig(noSecret, { baseDir: t.testdir(CONFIG_FILES), env: {} }))), ['/issuers/0/secret'])

  const weak = minimalConfig()
  weak.issuers[0] = { ...weak.issuers[0], algorithms: ['HS256'], jwks: undefined, secret: 'short' }
  t.same(paths(await refusal(validateConfig(weak, { baseDir: t.testdir(CONFIG_FILES), env: {} }))), ['/issuers/0/secret'])

  const hmac = minimalConfig()
  hmac.issuers[0] = { ...hmac.issuers[0], algorithms: ['HS256'], jwks: undefined, secret: '${SECRET}' }
  const config = await validateConfig(hmac, { baseDir: t.testdir(CONFIG_FILES), env: { SECRET: 'x'.repeat(32) } })
  t.equal(config.issuers[0]!.secret, 'x'.repeat(32))

  const noKeys = minimalConfig()
  delete noKeys.issuers[0].jwks
  t.same(paths(await refusal(validateConfig(noKeys, { baseDir: t.testdir(CONFIG_FILES), env: {} }))), ['/issuers/0/jwks'])
})

t.test('a route that needs client certificates needs listen.tls.clientCa', async t => {
  const raw = minimalConfig()
  raw.routes[0].authentication = 'jwt-and-mtls'
  const err = await refusal(validateConfig(raw, { baseDir: t.testdir(CONFIG_FILES), env: {} }))
  t.same(paths(err), ['/routes/0/authentication'])
  t.match(err.message, /needs listen\.tls\.clientCa/)
  raw.listen.tls.clientCa = 'certs/ca.crt'
  const config = await validateConfig(raw, { baseDir: t.testdir(CONFIG_FILES), env: {} })
  t.match(config.listen.tls?.clientCa, /certs\/ca\.crt$/)
  t.equal(config.routes[0]!.authentication, 'jwt-and-mtls')
  t.equal(minimalConfig().routes[0].authentication, undefined, 'the default is filled in by the schema')
})

t.test('Redis health and fallback settings out of range are refused, each with its path', async t => {
  const raw = minimalConfig()
  raw.rateLimit = { store: { type: 'redis', url: 'redis://127.0.0.1:6379', failuresBeforeDown: 0, localFallbackShare: 0 } }
  let err = await refusal(validateConfig(raw, { baseDir: t.testdir(CONFIG_FILES), env: {} }))
  t.strictSame([...paths(err)].sort(), ['/rateLimit/store/failuresBeforeDown', '/rateLimit/store/localFallbackShare'])
  raw.rateLimit.store = { type: 'redis', url: 'redis://127.0.0.1:6379', failuresBeforeDown: 2.5, localFallbackShare: 1.5 }
  err = await refusal(validateConfig(raw, { baseDir: t.testdir(CONFIG_FILES), env: {} }))
  t.strictSame([...paths(err)].sort(), ['/rateLimit/store/failuresBeforeDown', '/rateLimit/store/localFallbackShare'])
})

t.test('HTTP/2 reset budget and abuse penalty out of range are refused, each with its path (issue #21)', async t => {
  const raw = minimalConfig()
  raw.limits = { http2: { resetBurst: 0, resetsPerSecond: -1, abusePenaltySeconds: 3601 } }
  const err = await refusal(validateConfig(raw, { baseDir: t.testdir(CONFIG_FILES), env: {} }))
  t.strictSame([...paths(err)].sort(), ['/limits/http2/abusePenaltySeconds', '/limits/http2/resetBurst', '/limits/http2/resetsPerSecond'])
})

t.test('issuer key settings: maxStaleSeconds below jwksCacheSeconds is refused with its path (issue #17)', async t => {
  const raw = minimalConfig()
  raw.issuers[0].jwks = { url: 'https://idp.example/keys', maxStaleSeconds: 300 }
  raw.issuers[0].jwksCacheSeconds = 600
  const err = await refusal(validateConfig(raw, { baseDir: t.testdir(CONFIG_FILES), env: {} }))
  t.same(paths(err), ['/issuers/0/jwks/maxStaleSeconds'])
  t.match(err.message, /must be at least jwksCacheSeconds \(600\)/)
  raw.issuers[0].jwks = { url: 'https://idp.example/keys', maxStaleSeconds: 600, unknownKidCooldownMs: 50 }
  t.same(paths(await refusal(validateConfig(raw, { baseDir: t.testdir(CONFIG_FILES), env: {} }))), ['/issuers/0/jwks'], 'the cooldown has a floor (no fetch storm): that jwks form is refused')
})

t.test('issue #25: config/example.yaml without its variables: each unset variable once, with the fix, and nothing it causes', async t => {
  const example = new URL('../../config/example.yaml', import.meta.url).pathname
  const err = await refusal(loadConfig(example, {}))
  t.same(err.problems, [
    { path: '/listen/tls/cert', message: 'environment variable PORTCULLIS_TLS_DIR is not set (also used at /listen/tls/key, /listen/tls/clientCa, /upstreams/0/tls/ca and 2 more)' },
    { path: '/upstreams/0/url', message: 'environment variable FUNCTION_URL is not set' }
  ], 'no "file not readable: /gateway.crt", no URL format complaint, no message twice')
  t.match(err.message, /\nSet each variable in the environment \(NAME=value npx portcullis \.\.\.\), or give it a default in the file: \$\{NAME:-default\}\.$/)
  const url = await refusal(loadConfig(example, { FUNCTION_URL: 'not a url' }))
  t.same(url.problems.filter(p => p.path === '/upstreams/0/url').map(p => p.message), ['must be absolute http(s) URL'], 'a bad URL is reported once')
})
