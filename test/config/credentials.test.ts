import t from 'tap'
import { ConfigError, validateConfig } from '../../src/config/load.js'

// Credentials config: which combinations start, and which are refused with every problem listed.

const FILES = { 'server.crt': 'c\n', 'server.key': 'k\n', 'jwks.json': '{"keys":[]}\n', 'fn.key': 'secret\n' }

function raw (upstream: Record<string, unknown>, route: Record<string, unknown> = {}): Record<string, any> {
  return {
    listen: { tls: { cert: 'server.crt', key: 'server.key' } },
    issuers: [{ id: 'idp', issuer: 'https://idp.example.com', audiences: ['api'], algorithms: ['ES256'], jwks: { file: 'jwks.json' } }],
    policy: { bundle: 'bundle.tar.gz' },
    upstreams: [{ id: 'fn', url: 'https://fn.example', ...upstream }],
    routes: [{ id: 'r', prefix: '/r', methods: ['GET'], upstream: 'fn', ...route }]
  }
}

async function problems (pending: Promise<unknown>): Promise<string[]> {
  const err = await pending.then(() => undefined, (e: unknown) => e)
  if (!(err instanceof ConfigError)) throw new Error('expected a ConfigError')
  return err.problems.map(p => `${p.path}: ${p.message}`)
}

t.test('defaults: an assertion section with a short TTL, no credentials, the client token kept back', async t => {
  const dir = t.testdir(FILES)
  const config = await validateConfig(raw({}), { baseDir: dir })
  t.equal(config.assertion.ttlSeconds, 60)
  t.equal(config.assertion.algorithm, 'ES256')
  t.equal(config.assertion.header, 'x-portcullis-assertion')
  t.same(config.upstreams[0]!.credentials, {})
  t.equal(config.routes[0]!.forwardAuthorization, false)
})

t.test('every credential kind together, with file paths resolved', async t => {
  const dir = t.testdir(FILES)
  const config = await validateConfig({
    ...raw({ credentials: { assertion: {}, awsSigV4: { region: 'eu-west-1' }, azureFunctionKey: { file: 'fn.key' } } }),
    assertion: { keysFile: 'keys.json', jwksFile: 'public/jwks.json', algorithm: 'EdDSA', ttlSeconds: 30 }
  }, { baseDir: dir })
  t.equal(config.upstreams[0]!.credentials.awsSigV4?.service, 'lambda')
  t.equal(config.assertion.keysFile, `${dir}/keys.json`)
  t.same(config.upstreams[0]!.credentials.azureFunctionKey, { file: `${dir}/fn.key` })
})

t.test('refused at start, all problems at once', async t => {
  const dir = t.testdir(FILES)
  const found = await problems(validateConfig({
    ...raw(
      { credentials: { awsSigV4: { region: 'eu-west-1' }, googleIdToken: {}, azureFunctionKey: { env: 'NOT_SET_ANYWHERE' } } },
      { credentials: ['assertion', 'aws-sigv4'], forwardAuthorization: true }
    ),
    assertion: { ttlSeconds: 3600, algorithm: 'RS256', header: 'authorization' }
  }, { baseDir: dir, env: {} }))
  t.same(found.sort(), [
    '/assertion/algorithm: must be one of: ES256, EdDSA',
    '/assertion/header: "authorization" is a header with its own meaning; choose another name',
    '/assertion/ttlSeconds: must be <= 300',
    '/routes/0/credentials/0: upstream "fn" has no assertion credentials configured',
    '/routes/0/forwardAuthorization: cannot be combined with aws-sigv4, which uses the Authorization header',
    '/upstreams/0/credentials/azureFunctionKey/env: environment variable NOT_SET_ANYWHERE is not set',
    '/upstreams/0/credentials: awsSigV4 and googleIdToken all need the Authorization header; choose one'
  ])
})

t.test('a function key file that cannot be read is refused', async t => {
  const dir = t.testdir(FILES)
  const found = await problems(validateConfig(raw({ credentials: { azureFunctionKey: { file: 'missing.key' } } }), { baseDir: dir }))
  t.match(found, [/^\/upstreams\/0\/credentials\/azureFunctionKey\/file: file not readable/])
})
