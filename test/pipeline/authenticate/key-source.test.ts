import t, { type Test } from 'tap'
import type { IssuerConfig } from '../../../src/config/schema.js'
import { createJwtAuthenticator } from '../../../src/pipeline/authenticate/jwt.js'
import { createKeySource, JWKS_DEFAULTS, type KeySnapshot } from '../../../src/pipeline/authenticate/key-source.js'
import type { RouteContext } from '../../../src/pipeline/types.js'
import { makeKey, sign, startIdp, type FakeIdp } from '../../helpers/idp.js'

// Keys fetched from a real HTTPS identity provider through OIDC discovery.

const route: RouteContext = { id: 'r', prefix: '/r', upstream: 'u', stripPrefix: false, authentication: 'jwt', maxBodyBytes: 1_048_576, metadata: {} }

async function setup (t: Test, idp: FakeIdp, jwks: IssuerConfig['jwks'] = { discovery: true }, now?: () => number, seed?: KeySnapshot) {
  const config: IssuerConfig = {
    id: 'idp', issuer: idp.issuer, audiences: ['api'], algorithms: ['ES256'], jwks, ca: idp.caFile,
    clockToleranceSeconds: 0, jwksCacheSeconds: 600, verifiedTokenCacheSeconds: 60, requiredClaims: [], maxTokenBytes: 8192, fetchTimeoutMs: 2000
  }
  const keys = await createKeySource(config, { ...(now !== undefined ? { now } : {}), ...(seed !== undefined ? { seed } : {}) })
  t.teardown(() => keys.close())
  const authn = createJwtAuthenticator([{ config, keys }])
  const check = async (token: string) => authn.authenticate({ authorization: `Bearer ${token}` }, route)
  const claims = { iss: idp.issuer, aud: 'api', sub: 'alice' }
  return { keys, check, claims }
}

t.test('keys are found through discovery; after rotation the new key verifies at once and the withdrawn one stops', async t => {
  const idp = await startIdp(t)
  const first = makeKey('ES256', 'first')
  idp.keys = [first]
  const { keys, check, claims } = await setup(t, idp, { discovery: true, unknownKidCooldownMs: 100 })
  t.equal(keys.ready, false, 'nothing fetched before use')
  await keys.warm()
  t.equal(keys.ready, true)
  const before = await sign(first, claims)
  t.equal((await check(before)).kind, 'principal')
  t.equal(idp.hits['/.well-known/openid-configuration'], 1)
  t.equal(idp.hits['/keys'], 1)

  // Rotation: the IdP publishes a new key and withdraws the old one. The first token with the new
  // kid refreshes the set (once the cooldown since the last fetch has passed) and is accepted.
  const second = makeKey('ES256', 'second')
  idp.keys = [second]
  await new Promise(resolve => setTimeout(resolve, 150))
  t.equal((await check(await sign(second, claims))).kind, 'principal', 'a token signed with the new key is accepted on first sight')
  t.equal(idp.hits['/keys'], 2, 'one refresh')
  // The token verified under the old set is not served from the verified-token cache any more.
  const old = await check(before)
  t.equal(old.kind === 'failure' && old.reason, 'unknown_key', 'a withdrawn key stops verifying, even for a token verified before')
  t.equal(old.kind === 'failure' && old.error.statusCode, 401)
})

t.test('a storm of unknown kids causes no fetch storm', async t => {
  const idp = await startIdp(t)
  const key = makeKey('ES256', 'k')
  idp.keys = [key]
  const { keys, check, claims } = await setup(t, idp)
  await keys.warm()
  // Signed first: on a loaded machine, signing between the checks would spread them over more cooldowns.
  const tokens = await Promise.all(Array.from({ length: 50 }, async (_, i) => sign({ ...key, kid: `random-${i}` }, claims)))
  const started = performance.now()
  const results = await Promise.all(tokens.map(async token => check(token)))
  const cooldowns = Math.floor((performance.now() - started) / JWKS_DEFAULTS.unknownKidCooldownMs)
  t.ok(results.every(r => r.kind === 'failure' && r.reason === 'unknown_key'))
  // The fetch at warm-up, then at most one per unknown-kid cooldown that began while they were checked.
  t.ok((idp.hits['/keys'] ?? 0) <= 2 + cooldowns, `JWKS fetched ${idp.hits['/keys']} times for 50 unknown kids (${cooldowns} full cooldowns passed)`)
})

t.test('requests that wait out the same cooldown share one refresh, whichever wakes first', async t => {
  const idp = await startIdp(t)
  const key = makeKey('ES256', 'k')
  idp.keys = [key]
  let clock = 0
  const { keys, check, claims } = await setup(t, idp, { discovery: true }, () => clock)
  await keys.warm() // a fetch at 0: the next one for an unknown kid at 1000 (the default cooldown)
  const [early, late] = await Promise.all([sign({ ...key, kid: 'early' }, claims), sign({ ...key, kid: 'late' }, claims)])
  clock = 500
  const first = check(early) // waits 500 ms
  await new Promise(resolve => setTimeout(resolve, 50)) // until it has read the clock
  clock = 800
  const second = check(late) // waits 200 ms, wakes first and refreshes
  const results = await Promise.all([first, second])
  t.ok(results.every(r => r.kind === 'failure' && r.reason === 'unknown_key'))
  t.equal(idp.hits['/keys'], 2, 'the warm-up and one refresh: the request that woke last used it')
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
  // Retried in the background with back-off (1 s after the first failure): no request needed.
  idp.failWith = null
  for (let i = 0; i < 100 && !keys.ready; i++) await new Promise(resolve => setTimeout(resolve, 100))
  t.equal(keys.ready, true, 'ready again once the IdP answers')
  t.equal((await check(await sign(key, { ...claims, sub: 'later' }))).kind, 'principal')
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

t.test('stale-if-error: the last good keys verify through an IdP outage until maxStaleSeconds, then 503', async t => {
  const idp = await startIdp(t)
  const key = makeKey('ES256', 'k')
  idp.keys = [key]
  let clock = Date.now()
  const { keys, check, claims } = await setup(t, idp, { discovery: true, maxStaleSeconds: 3600 }, () => clock)
  await keys.warm()
  idp.failWith = 503
  clock += 601_000 // past jwksCacheSeconds: the set is stale, and the IdP is down
  await keys.warm()
  t.equal(keys.status().state, 'stale')
  t.equal(keys.ready, true, 'still ready')
  t.equal((await check(await sign(key, { ...claims, sub: 'bob' }))).kind, 'principal', 'a token never seen before verifies with the stale keys')
  t.equal(keys.ageSeconds()! >= 601, true, 'the age says how old the keys are')
  clock += 3000_000 // past maxStaleSeconds
  t.equal(keys.ready, false, 'not ready once the keys are too old')
  const r = await check(await sign(key, { ...claims, sub: 'carol' }))
  t.equal(r.kind === 'failure' && r.reason, 'keys_unavailable')
  t.equal(r.kind === 'failure' && r.error.statusCode, 503, 'retryable, not a bad token')
  t.equal(keys.status().state, 'expired')
})

t.test('a source seeded with another process\'s set verifies while the IdP is down, and ages as it would have there', async t => {
  const idp = await startIdp(t)
  const key = makeKey('ES256', 'k')
  idp.keys = [key]
  let clock = Date.now()
  const fetched = await setup(t, idp, { discovery: true, maxStaleSeconds: 3600 }, () => clock)
  await fetched.keys.warm()
  const snapshot = fetched.keys.snapshot()!
  t.match(snapshot, { fetchedAt: clock }, 'the set as fetched, and when')
  idp.failWith = 503
  clock += 700_000 // the sibling fetched it 700 s ago: stale (jwksCacheSeconds 600), within maxStaleSeconds
  const seeded = await setup(t, idp, { discovery: true, maxStaleSeconds: 3600 }, () => clock, snapshot)
  t.equal(seeded.keys.ready, true, 'ready without asking the IdP')
  t.equal(seeded.keys.status().state, 'stale')
  t.equal(seeded.keys.ageSeconds(), 700, 'as old as where it was fetched')
  t.equal((await seeded.check(await sign(key, { ...seeded.claims, sub: 'dave' }))).kind, 'principal', 'a new caller verifies')
  clock += 3000_000 // past maxStaleSeconds
  t.equal(seeded.keys.ready, false, 'an old seed expires as the set would have')
  const garbage = await setup(t, idp, { discovery: true }, () => clock, { text: '{"nokeys":1}', fetchedAt: clock })
  t.equal(garbage.keys.ready, false, 'a seed that is not a key set is not held')
})

t.test('an unknown kid while the IdP is down or hanging is a retryable 503; known kids never wait on the IdP', async t => {
  const idp = await startIdp(t)
  const key = makeKey('ES256', 'k')
  idp.keys = [key]
  const { keys, check, claims } = await setup(t, idp, { discovery: true, unknownKidCooldownMs: 100, unknownKidWaitMs: 300 })
  await keys.warm()
  const stranger = makeKey('ES256', 'new')

  idp.failWith = 500
  await new Promise(resolve => setTimeout(resolve, 150))
  const down = await check(await sign(stranger, claims))
  t.equal(down.kind === 'failure' && down.reason, 'keys_unavailable', 'the IdP could not be asked: not reported as a bad token')
  t.equal(down.kind === 'failure' && down.error.statusCode, 503)

  idp.failWith = null
  idp.hang = true
  // Past the cooldown (not the background back-off): an unknown kid asks again; the IdP hangs, and
  // the request's wait for that refresh is bounded.
  await new Promise(resolve => setTimeout(resolve, 150))
  const asked = idp.hits['/.well-known/openid-configuration'] ?? 0
  const hanging = await check(await sign(stranger, { ...claims, sub: 'dave' }))
  t.equal(hanging.kind === 'failure' && hanging.reason, 'keys_unavailable', 'the wait for the refresh is bounded')
  t.ok((idp.hits['/.well-known/openid-configuration'] ?? 0) > asked, 'a refresh was asked of the hanging IdP')
  // The refresh still hangs; a token with a known kid is verified from the held keys meanwhile.
  t.equal((await check(await sign(key, { ...claims, sub: 'erin' }))).kind, 'principal')
})

t.test('a key published right after a refresh and used at once is accepted: the request waits out the cooldown', async t => {
  const idp = await startIdp(t)
  const first = makeKey('ES256', 'first')
  idp.keys = [first]
  const { keys, check, claims } = await setup(t, idp, { discovery: true, unknownKidCooldownMs: 500, unknownKidWaitMs: 2000 })
  await keys.warm() // a refresh just now: the cooldown runs
  const second = makeKey('ES256', 'second')
  idp.keys = [first, second]
  t.equal((await check(await sign(second, claims))).kind, 'principal', 'not refused as an unknown key')
  t.equal(idp.hits['/keys'], 2, 'one refresh, after the cooldown')
  // A kid the IdP never had: refused after that one refresh per cooldown, with no wait when the
  // cooldown outlasts the wait.
  const short = await setup(t, idp, { discovery: true, unknownKidCooldownMs: 5000, unknownKidWaitMs: 100 })
  await short.keys.warm()
  const r = await short.check(await sign(makeKey('ES256', 'never'), claims))
  t.equal(r.kind === 'failure' && r.reason, 'unknown_key')
})
