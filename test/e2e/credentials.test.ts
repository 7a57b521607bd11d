import t, { type Test } from 'tap'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose'
import { DEMO_ASSERTION_ISSUER } from '../../src/demo/run.js'
import { createAssertionVerifier } from '../../src/verify/index.js'
import { checkSigV4, startAppServiceIdentity, startMetadataServer } from '../helpers/cloud.js'
import { headerFields, type UpstreamRequest } from '../helpers/recording-upstream.js'
import { startSecurityHarness } from '../helpers/security.js'

// Credentials for the function, through the real gateway over real TLS to a function that records
// every byte: each is checked from what the function received, with an implementation other than
// the one that made it.

const AWS = { AWS_ACCESS_KEY_ID: 'AKIDPORTCULLISTEST', AWS_SECRET_ACCESS_KEY: 'test-secret-made-at-test-time', AWS_SESSION_TOKEN: 'session-token-for-test' }

// tap matches an error's fields; its types only know message/name/errors.
const because = (reason: string): any => ({ reason })
const fieldsOf = (r: UpstreamRequest) => headerFields(r.head)
const one = (r: UpstreamRequest, name: string): string | undefined => {
  const values = fieldsOf(r).filter(([n]) => n === name).map(([, v]) => v)
  return values.length === 1 ? values[0] : values.length === 0 ? undefined : `DUPLICATE:${values.join('|')}`
}

async function start (t: Test) {
  const metadata = await startMetadataServer(t)
  const identity = await startAppServiceIdentity(t)
  // The documented environment: the AWS chain reads AWS_*, google-auth-library finds the metadata
  // server at GCE_METADATA_HOST, @azure/identity the App Service identity endpoint at IDENTITY_*.
  Object.assign(process.env, AWS, { AWS_EC2_METADATA_DISABLED: 'true', GCE_METADATA_HOST: metadata.host }, identity.env)
  delete process.env.GOOGLE_APPLICATION_CREDENTIALS
  // Not t.testdir: the harness keeps its policy there.
  const keyDir = mkdtempSync(join(tmpdir(), 'portcullis-keys-'))
  t.teardown(() => rmSync(keyDir, { recursive: true, force: true }))
  writeFileSync(join(keyDir, 'functions.key'), 'azure-function-key-from-file\n', { mode: 0o600 })
  const h = await startSecurityHarness(t, {
    configure: raw => {
      const base = raw.upstreams[0]
      raw.upstreams = [
        { ...base, credentials: { assertion: { bindBody: true } } },
        { ...base, id: 'lambda', credentials: { awsSigV4: { region: 'eu-west-1' } } },
        { ...base, id: 'cloudrun', credentials: { googleIdToken: {} } },
        { ...base, id: 'cloudrun-other', credentials: { googleIdToken: { audience: 'https://other.run.app' } } },
        { ...base, id: 'azure', credentials: { azureFunctionKey: { file: join(keyDir, 'functions.key') } } },
        { ...base, id: 'azure-mi', credentials: { azureManagedIdentity: { scope: 'api://orders-fn/.default' } } }
      ]
      const all = ['GET', 'POST']
      raw.routes = [
        { id: 'assert', prefix: '/public/assert', methods: all, upstream: 'demo-function' },
        { id: 'none', prefix: '/public/none', methods: all, upstream: 'demo-function', credentials: [] },
        { id: 'fwd', prefix: '/public/fwd', methods: all, upstream: 'demo-function', credentials: [], forwardAuthorization: true },
        { id: 'aws', prefix: '/public/aws', methods: all, upstream: 'lambda' },
        { id: 'gcp', prefix: '/public/gcp', methods: all, upstream: 'cloudrun' },
        { id: 'gcpfwd', prefix: '/public/gcpfwd', methods: all, upstream: 'cloudrun', forwardAuthorization: true },
        { id: 'gcpdown', prefix: '/public/gcpdown', methods: all, upstream: 'cloudrun-other' },
        { id: 'azure', prefix: '/public/azure', methods: all, upstream: 'azure' },
        { id: 'azuremi', prefix: '/public/azuremi', methods: all, upstream: 'azure-mi' }
      ]
    }
  })
  const token = await h.demo.token({ sub: 'alice', roles: ['reader'] })
  const send = async (path: string, opts: { method?: string, body?: string, headers?: Record<string, string> } = {}) =>
    h.demo.client.send(`${h.demo.url}${path}`, { token, ...opts })
  const last = (): UpstreamRequest => h.stub.parsed.at(-1)!
  return { h, metadata, identity, token, send, last }
}

t.test('the assertion: signed per request, bound to audience, method, path and body; verified by jose and by portcullis/verify', async t => {
  const { h, send, last } = await start(t)
  const res = await send('/public/assert/x?q=1', { headers: { 'x-portcullis-assertion': 'forged', 'x-functions-key': 'stolen' } })
  t.equal(res.status, 200)
  const got = last()
  t.equal(one(got, 'x-functions-key'), undefined, 'a client-sent platform credential never reaches the function')
  const assertion = one(got, 'x-portcullis-assertion')!
  t.not(assertion, 'forged', 'the client\'s own assertion header is replaced')

  // jose, against the JWKS the admin listener publishes.
  const jwks = createRemoteJWKSet(new URL(`${h.demo.adminUrl}/.well-known/jwks.json`))
  const { payload, protectedHeader } = await jwtVerify(assertion, jwks, { issuer: DEMO_ASSERTION_ISSUER, audience: h.stub.url, typ: 'portcullis-assertion+jwt' })
  t.equal(protectedHeader.alg, 'ES256')
  t.equal(payload.sub, 'alice')
  t.equal(payload.method, 'GET')
  t.equal(payload.path, '/public/assert/x?q=1', 'bound to the target exactly as the function receives it')
  t.equal(payload.exp! - payload.iat!, 60, 'default TTL 60 s')
  t.same(payload.claims, { roles: ['reader'] }, 'selected claims of the caller\'s token')
  t.equal(payload.auth, 'jwt')
  t.match(payload.jti, /^[0-9a-f-]{36}$/)
  t.equal(payload.body_sha256, '47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU', 'bindBody: an empty body is bound too')

  // The published JWKS file and the admin endpoint agree.
  const file = JSON.parse(readFileSync(h.demo.paths.assertionJwks, 'utf8'))
  t.same(file, (await h.demo.client.send(`${h.demo.adminUrl}/.well-known/jwks.json`)).json())
  await jwtVerify(assertion, createLocalJWKSet(file), { issuer: DEMO_ASSERTION_ISSUER, audience: h.stub.url })

  // portcullis/verify, as a function would call it, from the published file.
  const verifier = createAssertionVerifier({ issuer: DEMO_ASSERTION_ISSUER, audience: h.stub.url, jwks: { file: h.demo.paths.assertionJwks } })
  const request = { method: 'GET', url: '/public/assert/x?q=1', headers: { 'x-portcullis-assertion': assertion } }
  await t.rejects(verifier.verify({ ...request, url: '/public/assert/y?q=1' }), because('path_mismatch'))
  await t.rejects(verifier.verify({ ...request, method: 'DELETE' }), because('method_mismatch'))
  await t.rejects(verifier.verify(request), because('body_required'))
  const claims = await verifier.verify(request, Buffer.alloc(0))
  t.equal(claims.sub, 'alice')
  await t.rejects(verifier.verify(request, Buffer.alloc(0)), because('replayed'), 'the same assertion twice is a replay')
  const wrongAudience = createAssertionVerifier({ issuer: DEMO_ASSERTION_ISSUER, audience: 'https://another-function', jwks: file })
  await t.rejects(wrongAudience.verify(request, Buffer.alloc(0)), because('invalid'), 'an assertion for one function is refused by another')

  // A body is hashed into the assertion; a different body does not verify.
  const posted = await send('/public/assert/orders', { method: 'POST', body: '{"item":1}', headers: { 'content-type': 'application/json' } })
  t.equal(posted.status, 200)
  const p = last()
  t.equal(p.body.toString(), '{"item":1}', 'the buffered body is sent whole')
  const postRequest = { method: 'POST', url: '/public/assert/orders', headers: { 'x-portcullis-assertion': one(p, 'x-portcullis-assertion') } }
  await t.rejects(verifier.verify(postRequest, Buffer.from('{"item":2}')), because('body_mismatch'))
  t.equal((await verifier.verify(postRequest, p.body)).method, 'POST')

  // Two requests never share an assertion.
  await send('/public/assert/x?q=1')
  t.not(decodeJwt(one(last(), 'x-portcullis-assertion')!).jti, payload.jti)
})

t.test('routes choose their credentials; the client Authorization only where a route opts in', async t => {
  const { send, last, token } = await start(t)
  t.equal((await send('/public/none/a', { headers: { 'x-functions-key': 'stolen', 'x-serverless-authorization': 'Bearer stolen' } })).status, 200)
  t.equal(one(last(), 'x-portcullis-assertion'), undefined, 'credentials: [] attaches none')
  t.equal(one(last(), 'x-functions-key'), undefined)
  t.equal(one(last(), 'x-serverless-authorization'), undefined)
  t.equal(one(last(), 'authorization'), undefined, 'the client token is not passed on by default')
  t.equal((await send('/public/fwd/a')).status, 200)
  t.equal(one(last(), 'authorization'), `Bearer ${token}`, 'forwardAuthorization passes it on')
  t.equal((await send('/public/azure/a', { headers: { 'x-functions-key': 'stolen' } })).status, 200)
  t.equal(one(last(), 'x-functions-key'), 'azure-function-key-from-file', 'the Azure key from its secret file, not the client\'s')
})

t.test('SigV4 for a Lambda function URL: recomputed from the received bytes by an independent check', async t => {
  const { send, last } = await start(t)
  const res = await send('/public/aws/run?b=2&a=1%20x&a=0', { method: 'POST', body: '{"x":1}', headers: { 'content-type': 'application/json', 'x-amz-date': '20000101T000000Z' } })
  t.equal(res.status, 200)
  const got = last()
  const check = checkSigV4(got, AWS.AWS_SECRET_ACCESS_KEY)
  t.ok(check.ok, 'signature verifies', { problems: check.problems })
  t.equal(check.accessKeyId, AWS.AWS_ACCESS_KEY_ID, 'credentials from the standard provider chain (environment)')
  t.match(check.scope, /^\d{8}\/eu-west-1\/lambda\/aws4_request$/)
  t.equal(one(got, 'x-amz-security-token'), AWS.AWS_SESSION_TOKEN)
  t.not(one(got, 'x-amz-date'), '20000101T000000Z', 'a client-sent x-amz-date is dropped, not signed')
  // The check can fail: the same request with another body, or signed with another secret, does not verify.
  t.notOk(checkSigV4({ ...got, body: Buffer.from('{"x":2}') }, AWS.AWS_SECRET_ACCESS_KEY).ok)
  t.notOk(checkSigV4(got, 'another-secret').ok)

  t.equal((await send('/public/aws/plain')).status, 200)
  t.ok(checkSigV4(last(), AWS.AWS_SECRET_ACCESS_KEY).ok, 'a GET without a body is signed with the empty-body hash')
})

t.test('Google ID token from the metadata server, cached; X-Serverless-Authorization when the client token is forwarded', async t => {
  const { h, metadata, send, last, token } = await start(t)
  t.equal((await send('/public/gcp/a')).status, 200)
  const bearer = one(last(), 'authorization')!
  t.match(bearer, /^Bearer ey/)
  const idToken = decodeJwt(bearer.slice(7))
  t.equal(idToken.aud, h.stub.url, 'aud is the service URL')
  t.equal(idToken.iss, 'https://accounts.google.com')
  t.equal((await send('/public/gcp/b')).status, 200)
  t.equal(one(last(), 'authorization'), bearer, 'the same token is reused while it is fresh')
  t.equal((await send('/public/gcpfwd/c')).status, 200)
  t.equal(one(last(), 'authorization'), `Bearer ${token}`, 'the client token stays in Authorization')
  t.equal(one(last(), 'x-serverless-authorization'), bearer, 'Cloud Run reads the ID token from X-Serverless-Authorization')
  t.same(metadata.issued, [h.stub.url], 'one fetch from the metadata server for three requests')

  // No token, no request: fail closed with a coded 502, and the function sees nothing.
  metadata.failWith = 503
  const before = h.stub.parsed.length
  const res = await send('/public/gcpdown/a')
  t.equal(res.status, 502)
  t.equal(res.json().code, 'GW_ERR_UPSTREAM_CREDENTIALS')
  t.equal(h.stub.parsed.length, before, 'nothing was forwarded')
  t.match(await h.metrics(), /portcullis_upstream_credential_failures_total\{upstream="cloudrun-other",kind="google-id-token"\} 1/)
})

t.test('Azure managed identity token from the App Service identity endpoint, cached', async t => {
  const { identity, send, last } = await start(t)
  t.equal((await send('/public/azuremi/a', { headers: { 'x-functions-key': 'stolen' } })).status, 200)
  t.equal(one(last(), 'authorization'), 'Bearer entra-token-1-for-api://orders-fn')
  t.equal(one(last(), 'x-functions-key'), undefined)
  t.equal((await send('/public/azuremi/b')).status, 200)
  t.equal(one(last(), 'authorization'), 'Bearer entra-token-1-for-api://orders-fn', 'reused while fresh')
  t.same(identity.issued, ['api://orders-fn'], 'one token request for two calls')
})
