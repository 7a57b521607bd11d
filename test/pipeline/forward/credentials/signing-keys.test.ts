import t from 'tap'
import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { createLocalJWKSet, decodeJwt, jwtVerify } from 'jose'
import { createKeyRing } from '../../../../src/pipeline/forward/credentials/signing-keys.js'
import { ASSERTION_TYP, createAssertionMinter } from '../../../../src/pipeline/forward/credentials/assertion.js'
import type { AssertionConfig } from '../../../../src/config/schema.js'
import type { Principal } from '../../../../src/pipeline/types.js'

const base: AssertionConfig = {
  issuer: 'https://gw.test', algorithm: 'ES256', header: 'x-portcullis-assertion', ttlSeconds: 60, claims: [],
  rotateAfterSeconds: 3600, publishAheadSeconds: 300
}
const alice: Principal = { type: 'jwt', issuerId: 'idp', issuer: 'https://idp.test', subject: 'alice', claims: {}, certificate: null }
const request = { principal: alice, audience: 'https://fn.test', method: 'GET', path: '/a', requestId: 'r1' }

t.test('rotation overlaps: a new key is published before it signs, the old one stays until its assertions expired', async t => {
  let clock = 1_000_000_000_000
  let rotations = 0
  const ring = await createKeyRing({ config: base, now: () => clock, timer: false, onRotate: () => { rotations++ } })
  const first = ring.current().kid
  await ring.maintain()
  t.equal(rotations, 0, 'a young key is not rotated')

  clock += 3600 * 1000
  await ring.maintain()
  t.equal(rotations, 1, 'rotated once old enough')
  t.equal(ring.jwks().keys.length, 2, 'the next key is published at once')
  t.equal(ring.current().kid, first, 'but does not sign before publishAheadSeconds')
  await ring.maintain()
  t.equal(rotations, 1, 'no second key while one is pending')

  clock += 300 * 1000
  const second = ring.current().kid
  t.not(second, first, 'after publishAheadSeconds the new key signs')
  await ring.maintain()
  t.same(ring.jwks().keys.map(k => k.kid), [first, second], 'the old key is still published while its assertions live')

  clock += (60 + 60) * 1000
  await ring.maintain()
  t.same(ring.jwks().keys.map(k => k.kid), [second], 'dropped once every assertion it signed has expired')
})

t.test('assertions verify with jose against the published keys, for ES256 and EdDSA', async t => {
  for (const algorithm of ['ES256', 'EdDSA'] as const) {
    const config = { ...base, algorithm, claims: ['email', 'absent'] }
    const ring = await createKeyRing({ config, timer: false })
    const mint = createAssertionMinter(config, ring)
    const jwt = await mint({ ...request, principal: { ...alice, claims: { email: 'a@x.test', secret: 's' } } })
    const { payload, protectedHeader } = await jwtVerify(jwt, createLocalJWKSet(ring.jwks()), { issuer: 'https://gw.test', audience: 'https://fn.test', algorithms: [algorithm] })
    t.equal(protectedHeader.alg, algorithm)
    t.equal(protectedHeader.kid, ring.current().kid)
    t.same(payload.claims, { email: 'a@x.test' }, `${algorithm}: only the selected claims are copied`)
    t.equal(payload.sub, 'alice')
    t.equal(protectedHeader.typ, ASSERTION_TYP)
    t.equal(payload.exp! - payload.iat!, config.ttlSeconds, 'valid for ttlSeconds from now')
    t.ok(Math.abs(payload.iat! - Date.now() / 1000) < 5, 'issued now')
    const again = decodeJwt(await mint({ ...request, principal: { ...alice, claims: { email: 'ünï \u2028 "quoted"' } } }))
    t.not(again.jti, payload.jti, 'a fresh jti per assertion')
    t.same(again.claims, { email: 'ünï \u2028 "quoted"' }, 'any JSON string round-trips')
  }
})

t.test('an anonymous caller gets an assertion without a subject', async t => {
  const ring = await createKeyRing({ config: base, timer: false })
  const jwt = await createAssertionMinter(base, ring)({ ...request, principal: { type: 'anonymous', issuer: '', subject: '', claims: {}, certificate: null } })
  const { payload } = await jwtVerify(jwt, createLocalJWKSet(ring.jwks()))
  t.equal(payload.sub, undefined)
  t.equal(payload.auth, 'anonymous')
})

t.test('with keysFile the keys survive a restart; the JWKS file holds public keys only', async t => {
  const dir = t.testdir()
  const config = { ...base, keysFile: join(dir, 'keys.json'), jwksFile: join(dir, 'jwks.json') }
  const one = await createKeyRing({ config, timer: false })
  const kid = one.current().kid
  const jwt = await createAssertionMinter(config, one)(request)
  t.equal(statSync(config.keysFile).mode & 0o777, 0o600, 'private keys readable by the owner only')
  const published = readFileSync(config.jwksFile, 'utf8')
  t.notMatch(published, /"d"/, 'no private key part is published')
  const two = await createKeyRing({ config, timer: false })
  t.equal(two.current().kid, kid, 'the same key after a restart')
  await jwtVerify(jwt, createLocalJWKSet(JSON.parse(readFileSync(config.jwksFile, 'utf8'))))
  const fresh = await createKeyRing({ config: base, timer: false })
  t.not(fresh.current().kid, kid, 'without keysFile every start makes its own key')
})
