import t, { type Test } from 'tap'
import type { IssuerConfig } from '../../../src/config/schema.js'
import { createJwtAuthenticator } from '../../../src/pipeline/authenticate/jwt.js'
import { createKeySource } from '../../../src/pipeline/authenticate/key-source.js'
import type { RouteContext } from '../../../src/pipeline/types.js'
import { makeKey, sign, startIdp, type FakeIdp } from '../../helpers/idp.js'

// Keys fetched from a real HTTPS identity provider through OIDC discovery.

const route: RouteContext = { id: 'r', prefix: '/r', upstream: 'u', stripPrefix: false, authentication: 'jwt', maxBodyBytes: 1_048_576, metadata: {} }

async function setup (t: Test, idp: FakeIdp, jwks: IssuerConfig['jwks'] = { discovery: true }) {
  const config: IssuerConfig = {
    id: 'idp', issuer: idp.issuer, audiences: ['api'], algorithms: ['ES256'], jwks, ca: idp.caFile,
    clockToleranceSeconds: 0, jwksCacheSeconds: 600, verifiedTokenCacheSeconds: 60, requiredClaims: [], maxTokenBytes: 8192, fetchTimeoutMs: 2000
  }
  const keys = await createKeySource(config)
  t.teardown(() => keys.close())
  const authn = createJwtAuthenticator([{ config, keys }])
  const check = async (token: string) => authn.authenticate({ authorization: `Bearer ${token}` }, route)
  const claims = { iss: idp.issuer, aud: 'api', sub: 'alice' }
  return { keys, check, claims }
}

t.test('keys are found through discovery; after rotation the new key verifies and the removed one does not', async t => {
  const idp = await startIdp(t)
  const first = makeKey('ES256', 'first')
  idp.keys = [first]
  const { keys, check, claims } = await setup(t, idp)
  t.equal(keys.ready, false, 'nothing fetched before use')
  await keys.warm()
  t.equal(keys.ready, true)
  t.equal((await check(await sign(first, claims))).kind, 'principal')
  t.equal(idp.hits['/.well-known/openid-configuration'], 1)
  t.equal(idp.hits['/keys'], 1)

  // Rotation: the IdP publishes a new key and drops the old one. jose refreshes on an unknown kid once
  // its cooldown (30 s) has passed since the last fetch; a fresh key source shows the steady state.
  const second = makeKey('ES256', 'second')
  idp.keys = [second]
  const fresh = await setup(t, idp)
  t.equal((await fresh.check(await sign(second, claims))).kind, 'principal')
  const old = await fresh.check(await sign(first, claims))
  t.equal(old.kind === 'failure' && old.reason, 'unknown_key', 'a key no longer published does not verify')
})

t.test('a storm of unknown kids causes no fetch storm', async t => {
  const idp = await startIdp(t)
  const key = makeKey('ES256', 'k')
  idp.keys = [key]
  const { keys, check, claims } = await setup(t, idp)
  await keys.warm()
  const results = await Promise.all(Array.from({ length: 50 }, async (_, i) => check(await sign({ ...key, kid: `random-${i}` }, claims))))
  t.ok(results.every(r => r.kind === 'failure' && r.reason === 'unknown_key'))
  t.ok((idp.hits['/keys'] ?? 0) <= 2, `JWKS fetched ${idp.hits['/keys']} times for 50 unknown kids`)
})

t.test('known keys keep working while the IdP is down', async t => {
  const idp = await startIdp(t)
  const key = makeKey('ES256', 'k')
  idp.keys = [key]
  const { keys, check, claims } = await setup(t, idp)
  await keys.warm()
  idp.failWith = 500
  t.equal((await check(await sign(key, claims))).kind, 'principal')
})

t.test('an IdP that is down at start: 503-class failure, then recovery', async t => {
  const idp = await startIdp(t)
  const key = makeKey('ES256', 'k')
  idp.keys = [key]
  idp.failWith = 503
  const { keys, check, claims } = await setup(t, idp)
  await t.rejects(keys.warm(), /cannot load keys of issuer idp/)
  const r = await check(await sign(key, claims))
  t.equal(r.kind === 'failure' && r.reason, 'keys_unavailable')
  t.equal(r.kind === 'failure' && r.error.statusCode, 503)
  const fetchesWhileDown = idp.hits['/.well-known/openid-configuration']
  await check(await sign(key, claims))
  t.equal(idp.hits['/.well-known/openid-configuration'], fetchesWhileDown, 'a failing IdP is not hammered per request')
})

t.test('a discovery document naming another issuer is refused', async t => {
  const idp = await startIdp(t)
  idp.keys = [makeKey('ES256', 'k')]
  idp.discoveryIssuer = 'https://evil.test'
  const { keys } = await setup(t, idp)
  await t.rejects(keys.warm(), /discovery names issuer "https:\/\/evil.test"/)
  t.equal(keys.ready, false)
})

t.test('the issuer certificate is verified against the configured CA', async t => {
  const idp = await startIdp(t)
  idp.keys = [makeKey('ES256', 'k')]
  const other = await startIdp(t) // a different CA
  const config: IssuerConfig = {
    id: 'idp', issuer: idp.issuer, audiences: ['api'], algorithms: ['ES256'], jwks: { discovery: true }, ca: other.caFile,
    clockToleranceSeconds: 0, jwksCacheSeconds: 600, verifiedTokenCacheSeconds: 60, requiredClaims: [], maxTokenBytes: 8192, fetchTimeoutMs: 2000
  }
  const keys = await createKeySource(config)
  t.teardown(() => keys.close())
  await t.rejects(keys.warm(), /cannot load keys/)
  t.equal(idp.hits['/.well-known/openid-configuration'] ?? 0, 0, 'nothing was sent to an unverified server')
})

t.test('a JWKS URL is used directly, without discovery', async t => {
  const idp = await startIdp(t)
  const key = makeKey('ES256', 'k')
  idp.keys = [key]
  const { check, claims } = await setup(t, idp, { url: `${idp.issuer}/keys` })
  t.equal((await check(await sign(key, claims))).kind, 'principal')
  t.equal(idp.hits['/.well-known/openid-configuration'], undefined)
})
