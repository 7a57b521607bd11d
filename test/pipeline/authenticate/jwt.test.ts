import t, { type Test } from 'tap'
import { createHmac } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { IssuerConfig } from '../../../src/config/schema.js'
import { createJwtAuthenticator } from '../../../src/pipeline/authenticate/jwt.js'
import { createKeySource } from '../../../src/pipeline/authenticate/key-source.js'
import type { RouteContext } from '../../../src/pipeline/types.js'
import { makeKey, sign } from '../../helpers/idp.js'

// Token checks against a JWKS file: every way a token can be wrong ends in a failure, never a principal.

const route: RouteContext = { id: 'r', prefix: '/r', upstream: 'u', stripPrefix: false, authentication: 'jwt', maxBodyBytes: 1_048_576, metadata: {} }
const ISS = 'https://idp.test'

async function setup (t: Test, overrides: Partial<IssuerConfig> = {}) {
  const key = makeKey('ES256', 'k1')
  const rsa = makeKey('RS256', 'k2')
  const file = join(t.testdir(), 'jwks.json')
  await writeFile(file, JSON.stringify({ keys: [key.publicJwk, rsa.publicJwk] }))
  const config: IssuerConfig = {
    id: 'idp', issuer: ISS, audiences: ['api'], algorithms: ['ES256'], jwks: { file },
    clockToleranceSeconds: 5, jwksCacheSeconds: 600, verifiedTokenCacheSeconds: 60, requiredClaims: [], maxTokenBytes: 8192, fetchTimeoutMs: 1000, ...overrides
  }
  const authn = createJwtAuthenticator([{ config, keys: await createKeySource(config) }])
  const check = async (token: string, r: RouteContext = route) => authn.authenticate({ authorization: `Bearer ${token}` }, r)
  return { key, rsa, check, authn }
}

t.test('a valid token yields a principal with its verified claims', async t => {
  const { key, check } = await setup(t)
  const result = await check(await sign(key, { iss: ISS, aud: 'api', sub: 'alice', roles: ['reader'] }))
  t.equal(result.kind, 'principal')
  if (result.kind !== 'principal') return
  t.equal(result.principal.subject, 'alice')
  t.equal(result.principal.type === 'jwt' && result.principal.issuerId, 'idp')
  t.same(result.principal.claims.roles, ['reader'])
})

t.test('no Authorization header is not-applicable; other schemes and junk are malformed', async t => {
  const { authn } = await setup(t)
  t.same(await authn.authenticate({}, route), { kind: 'not-applicable' })
  for (const header of ['Basic YWxpY2U6cHc=', 'Bearer', 'Bearer a.b', 'Bearer a.b.c.d']) {
    const r = await authn.authenticate({ authorization: header }, route)
    t.equal(r.kind === 'failure' && r.reason, 'malformed', header.slice(0, 20))
  }
  const huge = await authn.authenticate({ authorization: `Bearer ${'a'.repeat(9000)}.b.c` }, route)
  t.equal(huge.kind === 'failure' && huge.reason, 'too_large', 'a token over maxTokenBytes is refused before any parsing')
  const twice = await authn.authenticate({ authorization: ['Bearer a.b.c', 'Bearer d.e.f'] }, route)
  t.equal(twice.kind === 'failure' && twice.reason, 'malformed')
})

t.test('every wrong token is refused with its reason', async t => {
  const { key, rsa, check } = await setup(t)
  const now = Math.floor(Date.now() / 1000)
  const good = { iss: ISS, aud: 'api', sub: 'alice' }
  const other = makeKey('ES256', 'k1') // same kid, different key
  const hmac = (() => {
    // Algorithm confusion: HS256 "signed" with the public key as the secret.
    const h = Buffer.from(JSON.stringify({ alg: 'HS256', kid: 'k1' })).toString('base64url')
    const p = Buffer.from(JSON.stringify({ ...good, exp: now + 60 })).toString('base64url')
    const s = createHmac('sha256', JSON.stringify(key.publicJwk)).update(`${h}.${p}`).digest('base64url')
    return `${h}.${p}.${s}`
  })()
  const none = `${Buffer.from('{"alg":"none","kid":"k1"}').toString('base64url')}.${Buffer.from(JSON.stringify({ ...good, exp: now + 60 })).toString('base64url')}.`
  const cases: Array<[string, string, string]> = [
    ['unknown issuer', await sign(key, { ...good, iss: 'https://evil.test' }), 'unknown_issuer'],
    ['issuer differs by a slash', await sign(key, { ...good, iss: `${ISS}/` }), 'unknown_issuer'],
    ['no issuer', await sign(key, { aud: 'api', sub: 'alice' }), 'unknown_issuer'],
    ['wrong audience', await sign(key, { ...good, aud: 'other' }), 'invalid_claims'],
    ['expired beyond leeway', await sign(key, { ...good, exp: now - 60 }), 'expired'],
    ['not yet valid', await sign(key, { ...good, nbf: now + 120 }), 'not_yet_valid'],
    ['nbf that is not a number', await sign(key, { ...good, nbf: 'soon' }), 'invalid_claims'],
    ['no subject', await sign(key, { iss: ISS, aud: 'api' }), 'invalid_claims'],
    ['no expiry', await sign(key, { ...good, exp: undefined }), 'invalid_claims'],
    ['signed by another key with the same kid', await sign(other, good), 'bad_signature'],
    ['unknown kid', await sign({ ...key, kid: 'k9' }, good), 'unknown_key'],
    ['algorithm not allowed for this issuer', await sign(rsa, good), 'bad_algorithm'],
    ['HS256 with the public key as secret', hmac, 'bad_algorithm'],
    ['alg none', none, 'malformed']
  ]
  for (const [name, token, reason] of cases) {
    const r = await check(token)
    t.equal(r.kind, 'failure', name)
    t.equal(r.kind === 'failure' ? r.reason : r.kind, reason, `${name} → ${reason}`)
  }
})

t.test('leeway accepts a token that expired a moment ago', async t => {
  const { key, check } = await setup(t, { clockToleranceSeconds: 30 })
  const r = await check(await sign(key, { iss: ISS, aud: 'api', sub: 'alice', exp: Math.floor(Date.now() / 1000) - 10 }))
  t.equal(r.kind, 'principal')
})

t.test('a route that names its issuers refuses tokens from the others', async t => {
  const { key, check } = await setup(t)
  const token = await sign(key, { iss: ISS, aud: 'api', sub: 'alice' })
  t.equal((await check(token, { ...route, issuers: ['idp'] })).kind, 'principal')
  const r = await check(token, { ...route, issuers: ['someone-else'] })
  t.equal(r.kind === 'failure' && r.reason, 'unknown_issuer')
})

t.test('a remembered token still stops working at its exp', async t => {
  const { key, check } = await setup(t, { clockToleranceSeconds: 0, verifiedTokenCacheSeconds: 60 })
  const exp = Math.floor(Date.now() / 1000) + 2
  const token = await sign(key, { iss: ISS, aud: 'api', sub: 'alice', exp })
  t.equal((await check(token)).kind, 'principal')
  t.equal((await check(token)).kind, 'principal', 'second use, from the cache')
  await new Promise(resolve => setTimeout(resolve, exp * 1000 - Date.now() + 1100))
  const r = await check(token)
  t.equal(r.kind === 'failure' && r.reason, 'expired')
})

t.test('maxTokenLifetimeSeconds refuses a token that would practically never expire', async t => {
  const { key, check } = await setup(t, { maxTokenLifetimeSeconds: 3600 })
  const now = Math.floor(Date.now() / 1000)
  const good = { iss: ISS, aud: 'api', sub: 'alice' }
  t.equal((await check(await sign(key, { ...good, exp: now + 600 }))).kind, 'principal')
  for (const exp of [now + 7200, 1e300]) {
    const r = await check(await sign(key, { ...good, exp }))
    t.equal(r.kind === 'failure' && r.reason, 'invalid_claims', `exp ${exp}`)
  }
})
