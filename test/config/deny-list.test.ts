import t from 'tap'
import { ConfigError, validateConfig } from '../../src/config/load.js'
import { CONFIG_FILES, minimalConfig } from '../helpers/config.js'

// The deny-list settings: refused at start with every problem listed, defaults filled in.

t.test('defaults: no admin API, no bans, revocations under portcullis:revoked, shared bans under portcullis:bans', async t => {
  const config = await validateConfig(minimalConfig(), { baseDir: t.testdir(CONFIG_FILES), env: {} })
  t.equal(config.admin.tokenFile, undefined)
  t.same(config.bans, { trustedNetworks: [], keyPrefix: 'portcullis:bans', syncIntervalMs: 30_000 })
  t.same(config.revocation, { keyPrefix: 'portcullis:revoked', maxTtlSeconds: 31_536_000, syncIntervalMs: 30_000 })
})

t.test('a ban rule gets its defaults; a route can turn bans off', async t => {
  const r = minimalConfig()
  r.bans = { default: { failures: 5 } }
  r.routes.push({ id: 'health', prefix: '/health', methods: ['GET'], upstream: 'fn', ban: { enabled: false } })
  const config = await validateConfig(r, { baseDir: t.testdir(CONFIG_FILES), env: {} })
  t.same(config.bans.default, { enabled: true, failures: 5, windowSeconds: 60, on: ['authn', 'authz'], banSeconds: 60, maxBanSeconds: 3600 })
  t.equal(config.routes[1]!.ban!.enabled, false)
})

t.test('every deny-list problem is listed with its path', async t => {
  const r = minimalConfig()
  r.admin = { tokenFile: 'secrets/missing-token' }
  r.bans = { default: { banSeconds: 600, maxBanSeconds: 60 }, trustedNetworks: ['10.0.0.0/8', 'not-a-network'], keyPrefix: 'portcullis:deny' }
  r.revocation = { keyPrefix: 'portcullis:deny' }
  r.routes[0].ban = { failures: 0, typo: true }
  const err = await validateConfig(r, { baseDir: t.testdir(CONFIG_FILES), env: {} }).then(() => null, (e: unknown) => e)
  t.type(err, ConfigError)
  const paths = (err as ConfigError).problems.map(p => p.path)
  for (const p of ['/admin/tokenFile', '/bans/default/maxBanSeconds', '/bans/trustedNetworks/1', '/bans/keyPrefix', '/routes/0/ban/failures', '/routes/0/ban']) {
    t.ok(paths.includes(p), `${p} is named`, { paths })
  }
})
