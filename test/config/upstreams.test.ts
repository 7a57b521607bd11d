import t from 'tap'
import { validateConfig } from '../../src/config/load.js'
import { CONFIG_FILES, minimalConfig, paths, refusal } from '../helpers/config.js'

// The upstreams section: queue bounds and fairness, plaintext, the client headers passed on.

t.test('an upstream queue bound out of range is refused (issue 17)', async t => {
  const raw = minimalConfig()
  raw.upstreams[0].maxQueue = -1
  raw.upstreams[0].queueTimeoutMs = 0
  const err = await refusal(validateConfig(raw, { baseDir: t.testdir(CONFIG_FILES), env: {} }))
  const byPath = new Map(err.problems.map(p => [p.path, p.message]))
  t.match(byPath.get('/upstreams/0/maxQueue'), />= 0/)
  t.match(byPath.get('/upstreams/0/queueTimeoutMs'), />= 1/)
})

t.test('upstreams[].queueFairness: per-identity by default, none on request, anything else refused (issue 21)', async t => {
  const raw = minimalConfig()
  raw.upstreams[0].queueFairness = 'none'
  t.equal((await validateConfig(raw, { baseDir: t.testdir(CONFIG_FILES), env: {} })).upstreams[0]!.queueFairness, 'none')
  raw.upstreams[0].queueFairness = 'fifo'
  const err = await refusal(validateConfig(raw, { baseDir: t.testdir(CONFIG_FILES), env: {} }))
  t.ok(err.problems.some(p => p.path === '/upstreams/0/queueFairness'), 'an unknown value is reported at its path', { problems: err.problems })
})

t.test('plaintext rules', async t => {
  t.test('listen without tls and without plaintext is refused', async t => {
    const raw = minimalConfig()
    delete raw.listen
    const err = await refusal(validateConfig(raw, { baseDir: t.testdir(CONFIG_FILES), env: {} }))
    t.same(paths(err), ['/listen/tls'])
  })
  t.test('listen with both tls and plaintext is refused', async t => {
    const raw = minimalConfig()
    raw.listen.plaintext = true
    const err = await refusal(validateConfig(raw, { baseDir: t.testdir(CONFIG_FILES), env: {} }))
    t.same(paths(err), ['/listen/plaintext'])
  })
  t.test('plaintext listener and http upstream are accepted when declared', async t => {
    const raw = minimalConfig()
    raw.listen = { plaintext: true }
    raw.upstreams = [{ id: 'fn', url: 'http://127.0.0.1:3000', plaintext: true }]
    const config = await validateConfig(raw, { baseDir: t.testdir(CONFIG_FILES), env: {} })
    t.equal(config.listen.tls, undefined)
    t.equal(config.upstreams[0]!.plaintext, true)
  })
  // Each case changes one thing of a valid config and must be refused at exactly that path.
  const refused: Array<{ what: string, change: (raw: ReturnType<typeof minimalConfig>) => void, path: string }> = [
    { what: 'plaintext on an https upstream', change: raw => { raw.upstreams[0].plaintext = true }, path: '/upstreams/0/plaintext' },
    { what: 'an upstream URL with credentials or a query', change: raw => { raw.upstreams[0].url = 'https://user:pw@fn.internal.example/?x=1' }, path: '/upstreams/0/url' },
    {
      what: 'a plaintext upstream with tls settings',
      change: raw => { raw.upstreams = [{ id: 'fn', url: 'http://127.0.0.1:3000', plaintext: true, tls: { ca: 'certs/ca.crt' } }] },
      path: '/upstreams/0/tls'
    },
    { what: 'an upstream client certificate without its key', change: raw => { raw.upstreams[0].tls = { cert: 'certs/ca.crt' } }, path: '/upstreams/0/tls' },
    { what: 'an http issuer', change: raw => { raw.issuers[0].issuer = 'http://idp.example.com' }, path: '/issuers/0/issuer' }
  ]
  for (const { what, change, path } of refused) {
    t.test(`${what} is refused`, async t => {
      const raw = minimalConfig()
      change(raw)
      const err = await refusal(validateConfig(raw, { baseDir: t.testdir(CONFIG_FILES), env: {} }))
      t.same(paths(err), [path])
    })
  }
})

t.test('passClientHeaders: only dashed lower-case names the gateway does not set itself (issue #20)', async t => {
  const raw = minimalConfig()
  raw.upstreams[0].passClientHeaders = ['cf-connecting-ip', 'x-forwarded-for', 'x-portcullis-subject', 'host', 'connection', 'authorization', 'x-client-cert']
  const err = await refusal(validateConfig(raw, { baseDir: t.testdir(CONFIG_FILES), env: {} }))
  t.same(paths(err).sort(), ['/upstreams/0/passClientHeaders/1', '/upstreams/0/passClientHeaders/2', '/upstreams/0/passClientHeaders/3',
    '/upstreams/0/passClientHeaders/4', '/upstreams/0/passClientHeaders/5'])
  t.match(err.message, /passClientHeaders\/1: "x-forwarded-for" is set by the gateway/)
  const spelled = minimalConfig()
  spelled.upstreams[0].passClientHeaders = ['CF_Connecting_IP']
  t.same(paths(await refusal(validateConfig(spelled, { baseDir: t.testdir(CONFIG_FILES), env: {} }))), ['/upstreams/0/passClientHeaders/0'])
  const ok = minimalConfig()
  ok.upstreams[0].passClientHeaders = ['cf-connecting-ip', 'x-client-cert']
  const config = await validateConfig(ok, { baseDir: t.testdir(CONFIG_FILES), env: {} })
  t.same(config.upstreams[0]!.passClientHeaders, ['cf-connecting-ip', 'x-client-cert'])
  t.same((await validateConfig(minimalConfig(), { baseDir: t.testdir(CONFIG_FILES), env: {} })).upstreams[0]!.passClientHeaders, [], 'none by default')
})
