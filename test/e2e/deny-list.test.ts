import t, { type Test } from 'tap'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadCa } from '../../src/tls/pki.js'
import { compileEchoPolicy, thumbprint, upstreamCalls } from '../helpers/authn.js'
import { startDemoHarness, type DemoHarness } from '../helpers/demo.js'
import { httpsClient, type Reply } from '../helpers/http.js'

// Revocations and automatic bans on one gateway over real sockets (the demo issuer and mTLS
// function), with a policy that allows every verified caller: whatever is refused here, the deny
// list refused, and no permissive policy can undo it.

const ADMIN_TOKEN = randomBytes(32).toString('base64url')

async function setup (t: Test, configure: (raw: Record<string, any>) => void = () => {}, bundle?: string) {
  const policy = bundle ?? await compileEchoPolicy(t)
  // Not in t.testdir(): every call of it empties the folder, and compileEchoPolicy's bundle is there.
  const secrets = mkdtempSync(join(tmpdir(), 'portcullis-admin-'))
  t.teardown(() => rmSync(secrets, { recursive: true, force: true }))
  const tokenFile = join(secrets, 'admin-token')
  writeFileSync(tokenFile, `${ADMIN_TOKEN}\n`)
  const demo = await startDemoHarness(t, {
    bundle: policy,
    configure: (raw, paths) => {
      raw.admin.tokenFile = tokenFile
      raw.listen.tls.clientCa = paths.caCert
      raw.rateLimit = {}
      raw.routes = [
        { id: 'hello', prefix: '/hello', methods: ['GET'], upstream: 'demo-function', authentication: 'jwt-or-mtls' },
        { id: 'orders', prefix: '/orders', methods: ['GET', 'POST'], upstream: 'demo-function' }
      ]
      configure(raw)
    }
  })
  const admin = async (method: string, path: string, body?: unknown, token: string | null = ADMIN_TOKEN): Promise<Reply> =>
    demo.client.send(`${demo.adminUrl}${path}`, {
      method,
      headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), 'x-portcullis-actor': 'test-operator' },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      ...(token !== null ? { token } : {})
    })
  return { demo, admin }
}

async function metric (demo: DemoHarness, pattern: RegExp): Promise<number> {
  const text = (await demo.client.send(`${demo.adminUrl}/metrics`)).text
  return [...text.matchAll(new RegExp(`^${pattern.source} (\\d+)$`, 'gm'))].reduce((n, m) => n + Number(m[1]), 0)
}

t.test('admin API: only with the admin token, and only on the admin listener', async t => {
  const { demo, admin } = await setup(t)
  for (const [name, token] of [['no token', null], ['wrong token', randomBytes(32).toString('base64url')], ['token with a suffix', `${ADMIN_TOKEN}x`]] as const) {
    const res = await admin('POST', '/admin/revocations', { kind: 'sub', value: 'alice', ttlSeconds: 60 }, token)
    t.equal(res.status, 401, `${name}: 401`)
    t.match(res.headers['www-authenticate'], /^Bearer/)
    t.equal((await admin('GET', '/admin/bans', undefined, token)).status, 401, `${name}: listing bans refused too`)
  }
  t.equal((await demo.client.send(`${demo.url}/hello`, { token: await demo.token() })).status, 200, 'nothing was revoked')
  t.same((await admin('GET', '/admin/revocations')).json(), { revocations: [] })

  // The public listener has no admin API: the path is an unknown route there, even with the token.
  const onPublic = await demo.client.send(`${demo.url}/admin/revocations`, {
    method: 'POST', token: ADMIN_TOKEN, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ kind: 'sub', value: 'alice', ttlSeconds: 60 })
  })
  t.equal(onPublic.status, 404)
  t.equal(onPublic.json().code, 'GW_ERR_ROUTE_NOT_FOUND')
  t.same((await admin('GET', '/admin/revocations')).json(), { revocations: [] }, 'still nothing revoked')

  t.equal((await admin('POST', '/admin/revocations', { kind: 'sub', value: 'alice', ttlSeconds: 10 ** 9 })).status, 400, 'a TTL beyond revocation.maxTtlSeconds is refused')
  t.equal((await admin('POST', '/admin/revocations', { kind: 'cert', value: 'not-a-thumbprint', ttlSeconds: 60 })).status, 400)
  t.equal((await admin('POST', '/admin/revocations', { kind: 'everything', value: 'x', ttlSeconds: 60 })).status, 400)
})

t.test('revoked token ids, subjects and client certificates get 401 before the policy is asked', async t => {
  const { demo, admin } = await setup(t)
  const ca = await loadCa({ cert: readFileSync(demo.paths.caCert, 'utf8'), key: readFileSync(join(demo.paths.dir, 'ca.key'), 'utf8') })
  const cert = await ca.issue({ commonName: 'svc-a', uris: ['spiffe://portcullis.test/svc-a'], usage: 'client' })
  const other = await ca.issue({ commonName: 'svc-b', uris: ['spiffe://portcullis.test/svc-b'], usage: 'client' })
  const withCert = httpsClient(t, demo.paths.caCert, cert)
  const withOther = httpsClient(t, demo.paths.caCert, other)
  const leaked = await demo.token({ sub: 'alice' })
  const sibling = await demo.token({ sub: 'alice' })
  const jti = JSON.parse(Buffer.from(leaked.split('.')[1]!, 'base64url').toString()).jti as string
  const hello = `${demo.url}/hello`

  for (const [c, token] of [[demo.client, leaked], [demo.client, sibling], [withCert, undefined]] as const) {
    t.equal((await c.send(hello, token !== undefined ? { token } : {})).status, 200, 'allowed before any revocation')
  }
  const callsBefore = await upstreamCalls(demo)

  const revoked = await admin('POST', '/admin/revocations', { kind: 'jti', value: jti, ttlSeconds: 3600, reason: 'leaked in a ticket' })
  t.equal(revoked.status, 201)
  t.match(revoked.json(), { kind: 'jti', value: jti, reason: 'leaked in a ticket' })
  const refused = await demo.client.send(hello, { token: leaked })
  t.equal(refused.status, 401, 'the leaked token is refused')
  t.equal(refused.json().code, 'GW_ERR_AUTHN_REVOKED')
  t.equal(refused.headers['www-authenticate'], 'Bearer realm="portcullis", error="invalid_token"')
  t.equal((await demo.client.send(hello, { token: sibling })).status, 200, 'another token of the same subject still works')

  // Hex with colons, as `openssl x509 -fingerprint -sha256` prints it.
  const hex = Buffer.from(thumbprint(cert.cert), 'base64url').toString('hex').toUpperCase().match(/../g)!.join(':')
  t.equal((await admin('POST', '/admin/revocations', { kind: 'cert', value: hex, ttlSeconds: 3600 })).status, 201)
  t.equal((await withCert.send(hello)).json().code, 'GW_ERR_AUTHN_REVOKED', 'the revoked certificate is refused')
  t.equal((await withCert.send(hello, { token: sibling })).json().code, 'GW_ERR_AUTHN_REVOKED', 'also when a valid token comes with it')
  t.equal((await withOther.send(hello)).status, 200, 'another certificate still works')

  t.equal((await admin('POST', '/admin/revocations', { kind: 'sub', value: 'alice', ttlSeconds: 3600 })).status, 201)
  t.equal((await demo.client.send(hello, { token: sibling })).json().code, 'GW_ERR_AUTHN_REVOKED', 'every token of the subject is refused')
  t.equal((await demo.client.send(hello, { token: await demo.token({ sub: 'alice' }) })).status, 401, 'and so is a fresh one')
  t.equal((await demo.client.send(hello, { token: await demo.token({ sub: 'bob' }) })).status, 200, 'another subject is not')

  t.equal(await upstreamCalls(demo), callsBefore + 3, 'only the three allowed requests reached the function')
  t.equal(await metric(demo, /portcullis_revoked_requests_total\{route="hello",kind="jti"\}/), 1)
  t.equal(await metric(demo, /portcullis_revoked_requests_total\{route="hello",kind="cert"\}/), 2)
  t.equal(await metric(demo, /portcullis_revoked_requests_total\{route="hello",kind="sub"\}/), 2)
  t.equal(await metric(demo, /portcullis_revocations\{kind="\w+"\}/), 3, 'three in force')
  t.equal((await admin('GET', '/admin/revocations')).json<{ revocations: unknown[] }>().revocations.length, 3)

  t.equal((await admin('DELETE', '/admin/revocations/sub/alice')).status, 204)
  t.equal((await admin('DELETE', '/admin/revocations/sub/alice')).status, 404, 'gone')
  t.equal((await demo.client.send(hello, { token: sibling })).status, 200, 'lifted: the subject is back')
  t.equal((await demo.client.send(hello, { token: leaked })).status, 401, 'the token id stays revoked')

  // A revocation ends at its TTL.
  const short = await demo.token({ sub: 'carol' })
  t.equal((await admin('POST', '/admin/revocations', { kind: 'sub', value: 'carol', ttlSeconds: 1 })).status, 201)
  t.equal((await demo.client.send(hello, { token: short })).status, 401)
  await new Promise(resolve => setTimeout(resolve, 1100))
  t.equal((await demo.client.send(hello, { token: short })).status, 200, 'after its TTL the subject is accepted again')
})

t.test('bans: repeated failures from one IP ban it, with Retry-After; an operator lifts it; it expires and doubles', async t => {
  const { demo, admin } = await setup(t, raw => {
    raw.routes[0].ban = { failures: 3, windowSeconds: 60, banSeconds: 1, maxBanSeconds: 60 }
    raw.routes[1].ban = { enabled: false }
    raw.bans = { default: { failures: 1, windowSeconds: 60 } }
  })
  const good = await demo.token()
  const hello = `${demo.url}/hello`
  for (let i = 0; i < 5; i++) t.equal((await demo.client.send(`${demo.url}/orders`, { token: 'not-a-jwt' })).status, 401, 'a route with ban: false never bans')
  t.equal((await demo.client.send(hello, { token: good })).status, 200)

  for (let i = 0; i < 3; i++) t.equal((await demo.client.send(hello, { token: 'not-a-jwt' })).status, 401, `failure ${i + 1}`)
  const banned = await demo.client.send(hello, { token: good })
  t.equal(banned.status, 429, 'banned: even a valid token is refused')
  t.equal(banned.json().code, 'GW_ERR_RATE_BANNED')
  t.equal(banned.headers['retry-after'], '1')
  t.equal((await demo.client.send(`${demo.url}/orders`, { token: good })).status, 429, 'on every route')
  t.equal(await metric(demo, /portcullis_bans_total\{scope="ip"\}/), 1)
  t.equal(await metric(demo, /portcullis_bans_active\{scope="ip"\}/), 1)
  t.ok(await metric(demo, /portcullis_banned_requests_total\{route="\w+",scope="ip"\}/) >= 2)
  const status = (await demo.client.send(`${demo.adminUrl}/status`)).json<{ bans: Array<{ scope: string, value: string }> }>()
  t.match(status.bans, [{ scope: 'ip', value: '127.0.0.1' }], '/status lists the ban')

  // Expires by itself after banSeconds.
  await new Promise(resolve => setTimeout(resolve, 1100))
  t.equal((await demo.client.send(hello, { token: good })).status, 200, 'the first ban ended after 1 s')

  // The second ban lasts twice as long; the operator lifts it.
  for (let i = 0; i < 3; i++) await demo.client.send(hello, { token: 'not-a-jwt' })
  const again = await demo.client.send(hello, { token: good })
  t.equal(again.status, 429)
  t.equal(again.headers['retry-after'], '2', 'doubled')
  t.match((await admin('GET', '/admin/bans')).json(), { bans: [{ scope: 'ip', value: '127.0.0.1', strikes: 2 }] })
  t.equal((await admin('DELETE', '/admin/bans/ip/127.0.0.1')).status, 204)
  t.equal((await demo.client.send(hello, { token: good })).status, 200, 'lifted')
  t.equal((await admin('DELETE', '/admin/bans/ip/127.0.0.1')).status, 404, 'nothing left to lift')
  t.equal(await metric(demo, /portcullis_bans_active\{scope="\w+"\}/), 0)
})

t.test('bans: trusted networks are never banned; policy denials ban the subject', async t => {
  // The project's policy: readers may not write orders.
  const { demo } = await setup(t, raw => {
    raw.bans = { default: { failures: 3, windowSeconds: 60, banSeconds: 60 }, trustedNetworks: ['127.0.0.0/8'] }
  }, join(import.meta.dirname, '../../build/bundle.tar.gz'))
  for (let i = 0; i < 5; i++) t.equal((await demo.client.send(`${demo.url}/hello`, { token: 'not-a-jwt' })).status, 401)
  const bob = await demo.token({ sub: 'bob', roles: ['reader'] })
  t.equal((await demo.client.send(`${demo.url}/hello`, { token: bob })).status, 200, 'the trusted client IP is not banned')

  const alice = await demo.token({ sub: 'alice', roles: ['reader'] })
  for (let i = 0; i < 3; i++) {
    t.equal((await demo.client.send(`${demo.url}/orders`, { method: 'POST', token: alice, body: '{}', headers: { 'content-type': 'application/json' } })).status, 403, `denial ${i + 1}`)
  }
  const banned = await demo.client.send(`${demo.url}/hello`, { token: await demo.token({ sub: 'alice', roles: ['admin'] }) })
  t.equal(banned.status, 429, 'the subject is banned, whatever token it comes with')
  t.equal(banned.json().code, 'GW_ERR_RATE_BANNED')
  t.equal((await demo.client.send(`${demo.url}/hello`, { token: bob })).status, 200, 'another subject from the same IP is not')
  t.equal(await metric(demo, /portcullis_bans_total\{scope="sub"\}/), 1)
  t.equal(await metric(demo, /portcullis_bans_total\{scope="ip"\}/), 0)
})
