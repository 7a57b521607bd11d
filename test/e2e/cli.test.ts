import t from 'tap'
import { spawn } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { decodeJwt, decodeProtectedHeader, SignJWT, importJWK } from 'jose'
import { buildBundle, DEFAULT_BUNDLE } from '../../scripts/opa.mjs'
import { startDemoFunction } from '../../src/demo/function.js'
import { GATEWAY_SPIFFE_ID } from '../../src/demo/state.js'
import { createCa } from '../../src/tls/pki.js'
import { CLI, runCli as cli } from '../helpers/cli.js'
import { httpsClient } from '../helpers/http.js'

// The CLI as a user runs it: the built bin (npm test builds before running tap).

t.test('check lists every problem with its path and exits non-zero', async t => {
  const dir = t.testdir({
    'bad.yaml': `
listen: { port: 8443, tls: { cert: missing.crt, key: missing.key } }
issuers:
  - id: idp
    issuer: https://idp.example.com
    audiences: [api]
    algorithms: [none]
    jwks: { discovery: true }
policy: { bundle: bundle.tar.gz }
upstreams:
  - id: fn
    url: http://fn.example.com
routes:
  - id: hello
    prefix: /hello
    methods: [GET]
    upstream: nowhere
    colour: blue
  - id: hello
    prefix: /other/
    methods: [GET]
    upstream: fn
`
  })
  const res = await cli(['check', '-c', join(dir, 'bad.yaml')])
  t.equal(res.code, 2)
  t.equal(res.stdout, '')
  for (const line of [
    '- /issuers/0/algorithms/0: must be one of: RS256, ',
    '- /routes/0: unknown property "colour"',
    '- /routes/1/prefix: must be canonical path prefix',
    '- /listen/tls/cert: file not readable',
    '- /listen/tls/key: file not readable',
    '- /upstreams/0/url: must be an https URL',
    '- /routes/0/upstream: unknown upstream "nowhere"',
    '- /routes/1/id: duplicate id "hello"'
  ]) t.match(res.stderr, line, line)
})

t.test('a missing environment variable is reported with the path that uses it', async t => {
  const dir = t.testdir({ 'env.yaml': 'listen:\n  plaintext: true\n  host: ${GW_HOST_THAT_IS_NOT_SET}\n' })
  const res = await cli(['check', '-c', join(dir, 'env.yaml')])
  t.equal(res.code, 2)
  t.match(res.stderr, '- /listen/host: environment variable GW_HOST_THAT_IS_NOT_SET is not set')
})

t.test('check accepts a good config; the shipped example config is valid', async t => {
  // The example names its TLS files through ${PORTCULLIS_TLS_DIR}; real ones are made here.
  const ca = await createCa('Example CA')
  const pair = await ca.issue({ commonName: 'gw', dnsNames: ['gateway.example.com'], usage: 'both' })
  const tls = t.testdir({
    'gateway.crt': pair.cert, 'gateway.key': pair.key, 'gateway-client.crt': pair.cert, 'gateway-client.key': pair.key, 'functions-ca.crt': ca.cert, 'clients-ca.crt': ca.cert
  })
  const res = await cli(['check', '-c', 'config/example.yaml'], { PORTCULLIS_TLS_DIR: tls, FUNCTION_URL: 'https://fn.example.com/prod' })
  t.equal(res.code, 0, res.stderr)
  t.match(res.stdout, /config\/example\.yaml: ok/)
})

t.test('demo token prints a JWT with the requested subject, roles, ttl and claims', async t => {
  const dir = t.testdir()
  const res = await cli(['demo', 'token', '--dir', dir, '--sub', 'alice', '--role', 'writer', '--role', 'admin', '--ttl', '120', '--claim', 'tenant=acme', '--claim', 'level=3'])
  t.equal(res.code, 0, res.stderr)
  const token = res.stdout.trim()
  const claims = decodeJwt(token)
  t.equal(claims.sub, 'alice')
  t.same(claims.roles, ['writer', 'admin'])
  t.equal(claims.tenant, 'acme')
  t.equal(claims.level, 3)
  t.equal(claims.aud, 'portcullis-demo')
  t.equal((claims.exp ?? 0) - (claims.iat ?? 0), 120)
  t.equal(decodeProtectedHeader(token).alg, 'ES256')
  const expired = decodeJwt((await cli(['demo', 'token', '--dir', dir, '--ttl', '-60'])).stdout.trim())
  t.ok((expired.exp ?? Infinity) < Date.now() / 1000, 'negative ttl gives an expired token')
  const bad = await cli(['demo', 'token', '--dir', dir, '--ttl', 'soon'])
  t.equal(bad.code, 2)
})

t.test('demo token honours registered claims given with --claim, and refuses ones of the wrong type (issue #20)', async t => {
  const dir = t.testdir()
  const now = Math.floor(Date.now() / 1000)
  const res = await cli(['demo', 'token', '--dir', dir, '--claim', 'aud=other-api', '--claim', 'iss=https://elsewhere.example',
    '--claim', 'jti=fixed-id', '--claim', `exp=${now + 30}`, '--claim', `nbf=${now - 5}`, '--claim', 'sub=mallory'])
  t.equal(res.code, 0, res.stderr)
  const claims = decodeJwt(res.stdout.trim())
  t.equal(claims.aud, 'other-api', 'aud as given')
  t.equal(claims.iss, 'https://elsewhere.example', 'iss as given')
  t.equal(claims.jti, 'fixed-id', 'jti as given')
  t.equal(claims.exp, now + 30, 'exp as given')
  t.equal(claims.nbf, now - 5, 'nbf as given')
  t.equal(claims.sub, 'mallory', 'sub as given')
  const many = decodeJwt((await cli(['demo', 'token', '--dir', dir, '--claim', 'aud=["a","b"]'])).stdout.trim())
  t.same(many.aud, ['a', 'b'], 'an audience list')
  for (const bad of ['aud=3', 'aud=[]', 'iss=', 'exp=soon', 'iat=1.5', 'nbf=true', 'sub=[1]']) {
    const refused = await cli(['demo', 'token', '--dir', dir, '--claim', bad])
    t.equal(refused.code, 2, `--claim ${bad} is refused`)
    t.equal(refused.stdout, '', `--claim ${bad}: no token printed`)
    t.match(refused.stderr, new RegExp(`--claim ${bad.split('=')[0]}=`), `--claim ${bad}: the message names the claim`)
  }
})

t.test('start runs a gateway from a user config, and SIGTERM drains and exits 0', async t => {
  const dir = t.testdir()
  const ca = await createCa('Test CA')
  const server = await ca.issue({ commonName: 'gw', ipAddresses: ['127.0.0.1'], usage: 'server' })
  const fnCert = await ca.issue({ commonName: 'fn', dnsNames: ['localhost'], usage: 'server' })
  const client = await ca.issue({ commonName: 'gw-client', uris: [GATEWAY_SPIFFE_ID], usage: 'client' })
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const files: Record<string, string> = {
    'ca.crt': ca.cert,
    'gw.crt': server.cert,
    'gw.key': server.key,
    'fn.crt': fnCert.cert,
    'fn.key': fnCert.key,
    'client.crt': client.cert,
    'client.key': client.key,
    'jwks.json': JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'ES256' }] })
  }
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content)
  const fn = await startDemoFunction({
    host: '127.0.0.1', port: 0, cert: join(dir, 'fn.crt'), key: join(dir, 'fn.key'), clientCa: join(dir, 'ca.crt'), allowedClient: GATEWAY_SPIFFE_ID
  })
  t.teardown(fn.close)
  await buildBundle({})
  await writeFile(join(dir, 'gateway.yaml'), `
listen: { host: 127.0.0.1, port: 0, tls: { cert: gw.crt, key: gw.key } }
admin: { host: 127.0.0.1, port: 0 }
issuers:
  - id: local
    issuer: https://idp.test
    audiences: [api]
    algorithms: [ES256]
    jwks: { file: jwks.json }
policy: { bundle: "\${BUNDLE}" }
upstreams:
  - id: fn
    url: \${FN_URL}/base
    tls: { ca: ca.crt, cert: client.crt, key: client.key, servername: localhost }
routes:
  - id: hello
    prefix: /hello
    methods: [GET]
    upstream: fn
    stripPrefix: true
`)
  const child = spawn(process.execPath, [CLI, 'start', '-c', join(dir, 'gateway.yaml')], {
    env: { ...process.env, BUNDLE: DEFAULT_BUNDLE, FN_URL: fn.url },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  t.teardown(() => { child.kill('SIGKILL') })
  let log = ''
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      log += String(d)
      const m = /"url":"(https:\/\/[^"]+)"/.exec(log)
      if (m?.[1] !== undefined) resolve(m[1])
    })
    child.once('exit', code => reject(new Error(`exited ${String(code)}: ${log}`)))
  })
  const token = await new SignJWT({ roles: ['reader'] })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .setIssuer('https://idp.test').setAudience('api').setSubject('carol').setExpirationTime('5m')
    .sign(await importJWK({ ...privateKey.export({ format: 'jwk' }) }, 'ES256'))
  const res = await httpsClient(t, join(dir, 'ca.crt')).send(`${url}/hello/there`, { token })
  t.equal(res.status, 200, res.text)
  t.equal(res.json().path, '/base/there', 'prefix stripped, upstream base path prepended')
  t.notMatch(log, token.split('.')[2]!, 'the token never appears in the logs')
  await new Promise(resolve => setTimeout(resolve, 200)) // let the access line reach stdout
  const access = log.split('\n').filter(l => l.includes('"access":true')).map(l => JSON.parse(l) as Record<string, unknown>)
  t.equal(access.length, 1, 'one access line per request')
  t.match(access[0], {
    route_id: 'hello', path: '/hello/there', status: 200, outcome: 'forwarded', subject: 'carol', allow: true,
    reasons: ['authz.hello.authenticated'], policy_revision: String, decision_id: String, request_id: String, upstream_status: 200
  }, 'the access line carries the verdict')

  child.kill('SIGTERM')
  const code = await new Promise<number | null>(resolve => child.once('exit', resolve))
  t.equal(code, 0)
  t.match(log, /shutting down/)
})
