import t from 'tap'
import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { SignJWT } from 'jose'
import { createAssertionMinter } from '../../src/pipeline/forward/credentials/assertion.js'
import { createKeyRing } from '../../src/pipeline/forward/credentials/signing-keys.js'
import { createAssertionVerifier } from '../../src/verify/index.js'
import type { AssertionConfig } from '../../src/config/schema.js'

// portcullis/verify on its own: what a function gets from it, and every way an assertion is refused.

const config: AssertionConfig = {
  issuer: 'https://gw.test', algorithm: 'ES256', header: 'x-portcullis-assertion', ttlSeconds: 60, claims: [],
  rotateAfterSeconds: 3600, publishAheadSeconds: 300
}
const alice = { type: 'jwt' as const, issuerId: 'idp', issuer: 'https://idp.test', subject: 'alice', claims: {}, certificate: null }
const because = (reason: string): any => ({ reason })

async function setup () {
  const ring = await createKeyRing({ config, timer: false })
  const mint = createAssertionMinter(config, ring)
  const verifier = createAssertionVerifier({ issuer: config.issuer, audience: 'https://fn.test', jwks: ring.jwks() })
  const key = ring.current()
  // Hand-made tokens with the gateway's own key, for the cases the minter never produces.
  const forge = async (claims: Record<string, unknown>, opts: { typ?: string, exp?: number, iat?: number, signWith?: unknown } = {}) => {
    const now = Math.floor(Date.now() / 1000)
    return new SignJWT({ method: 'GET', path: '/a', ...claims })
      .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: opts.typ ?? 'portcullis-assertion+jwt' })
      .setIssuer(config.issuer).setAudience('https://fn.test').setJti(randomUUID())
      .setIssuedAt(opts.iat ?? now).setExpirationTime(opts.exp ?? now + 60)
      .sign((opts.signWith ?? key.privateKey) as any)
  }
  const req = (assertion: string, over: Record<string, unknown> = {}) => ({ method: 'GET', url: '/a', headers: { 'x-portcullis-assertion': assertion }, ...over })
  return { ring, mint, verifier, forge, req }
}

t.test('a fresh assertion verifies once and returns its claims', async t => {
  const { mint, verifier, req } = await setup()
  const jwt = await mint({ principal: alice, audience: 'https://fn.test', method: 'GET', path: '/a', requestId: 'r1' })
  const claims = await verifier.verify(req(jwt))
  t.equal(claims.sub, 'alice')
  t.equal(claims.rid, 'r1')
  await t.rejects(verifier.verify(req(jwt)), because('replayed'))
})

t.test('refusals, each with its reason', async t => {
  const { verifier, forge, req, mint } = await setup()
  const now = Math.floor(Date.now() / 1000)
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
  await t.rejects(verifier.verify({ method: 'GET', url: '/a', headers: {} }), because('missing'))
  await t.rejects(verifier.verify(req('not.a.jwt')), because('malformed'))
  await t.rejects(verifier.verify(req(await forge({}, { exp: now - 60, iat: now - 120 }))), because('expired'))
  await t.rejects(verifier.verify(req(await forge({}, { exp: now + 3600 }))), because('too_long_lived'))
  await t.rejects(verifier.verify(req(await forge({}, { typ: 'JWT' }))), because('invalid'), 'another JWT type cannot stand in')
  await t.rejects(verifier.verify(req(await forge({}, { signWith: other }))), because('invalid'), 'a key the gateway does not publish')
  await t.rejects(verifier.verify(req(await forge({ path: '/a?admin=1' }))), because('path_mismatch'), 'the query is part of the binding')
  await t.rejects(verifier.verify(req(await forge({ method: 'POST' }))), because('method_mismatch'))
  const bodyBound = await mint({ principal: alice, audience: 'https://fn.test', method: 'GET', path: '/a', requestId: 'r', bodySha256: 'x' })
  await t.rejects(verifier.verify(req(bodyBound)), because('body_required'))
  await t.rejects(verifier.verify(req(bodyBound), Buffer.from('y')), because('body_mismatch'))
  // None of the refused ones used up a jti: a good assertion after them still verifies.
  t.equal((await verifier.verify(req(await forge({})))).method, 'GET')
})

t.test('keys from a JWKS URL, as the gateway admin listener publishes them', async t => {
  const { ring, mint } = await setup()
  const server = createServer((_req, res) => { res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(ring.jwks())) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => server.close(() => resolve())))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/.well-known/jwks.json`
  const verifier = createAssertionVerifier({ issuer: config.issuer, audience: 'https://fn.test', jwks: url })
  const request = async () => ({ method: 'GET', url: '/a', headers: { 'x-portcullis-assertion': await mint({ principal: alice, audience: 'https://fn.test', method: 'GET', path: '/a', requestId: 'r' }) } })
  t.equal((await verifier.verify(await request())).sub, 'alice')
})

t.test('the package subpath portcullis/verify is the built verifier', async t => {
  // Self-reference through package.json "exports"; needs `npm run build` (npm test builds first).
  const specifier = 'portcullis/verify'
  const mod = await import(specifier) as Record<string, unknown>
  t.equal(typeof mod.createAssertionVerifier, 'function')
  t.equal(typeof mod.AssertionError, 'function')
})
