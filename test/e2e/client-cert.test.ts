import t, { type Test } from 'tap'
import { createHash, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { createCa, loadCa } from '../../src/tls/pki.js'
import { compileEchoPolicy, expectRefusal, issueExpiredClientCert, policySaw, thumbprint, upstreamCalls } from '../helpers/authn.js'
import { startDemoHarness } from '../helpers/demo.js'
import { httpsClient, type Client, type Reply } from '../helpers/http.js'

// Client certificates on a real TLS listener with a client CA: what each route's authentication mode
// accepts, what the policy is told about the caller, and certificate-bound tokens (RFC 8705).

const SPIFFE_A = 'spiffe://portcullis.test/svc-a'
const SPIFFE_B = 'spiffe://portcullis.test/svc-b'
const CA_DN = 'CN=Portcullis Demo CA'
const MODES = { jwt: 'jwt', mtls: 'mtls', both: 'jwt-and-mtls', either: 'jwt-or-mtls', open: 'public' } as const
type Route = keyof typeof MODES

async function setup (t: Test) {
  const demo = await startDemoHarness(t, {
    bundle: await compileEchoPolicy(t),
    configure: (raw, paths) => {
      raw.listen.tls.clientCa = paths.caCert
      raw.rateLimit = {}
      raw.routes = Object.entries(MODES).map(([id, authentication]) => ({
        id, prefix: `/${id}`, methods: ['GET'], upstream: 'demo-function', authentication, metadata: id === 'open' ? { anonymous_ok: true } : {}
      }))
    }
  })
  const ca = await loadCa({ cert: readFileSync(demo.paths.caCert, 'utf8'), key: readFileSync(join(demo.paths.dir, 'ca.key'), 'utf8') })
  const rogueCa = await createCa('Rogue CA')
  const certs = {
    a: await ca.issue({ commonName: 'svc-a', uris: [SPIFFE_A], dnsNames: ['svc-a.internal'], ipAddresses: ['10.0.0.7'], usage: 'client' }),
    b: await ca.issue({ commonName: 'svc-b', uris: [SPIFFE_B], usage: 'client' }),
    // The same identity as A, each wrong in one way.
    rogue: await rogueCa.issue({ commonName: 'svc-a', uris: [SPIFFE_A], usage: 'client' }),
    expired: await issueExpiredClientCert(ca, 'svc-a', SPIFFE_A),
    serverOnly: await ca.issue({ commonName: 'svc-a', uris: [SPIFFE_A], usage: 'server' })
  }
  type Who = 'none' | keyof typeof certs
  const clients = new Map<Who, Client>([['none', demo.client]])
  for (const [who, pair] of Object.entries(certs)) clients.set(who as Who, httpsClient(t, demo.paths.caCert, pair))
  const send = async (who: Who, route: Route, token?: string): Promise<Reply> =>
    clients.get(who)!.send(`${demo.url}/${route}`, token === undefined ? {} : { token })
  return { demo, certs, send, token: await demo.token() }
}

t.test('mtls route: no certificate, or one TLS did not verify, is refused whatever token comes with it', async t => {
  const { demo, send, token } = await setup(t)
  for (const [name, who, reason] of [
    ['no certificate', 'none', 'cert_missing'],
    ['certificate from another CA', 'rogue', 'cert_untrusted'],
    ['expired certificate', 'expired', 'cert_untrusted'],
    ['server-only certificate (no clientAuth EKU)', 'serverOnly', 'cert_untrusted']
  ] as const) {
    await expectRefusal(t, demo, 'mtls', name, reason, async () => send(who, 'mtls'))
    await expectRefusal(t, demo, 'mtls', `${name}, with a valid token`, reason, async () => send(who, 'mtls', token))
  }
  t.equal(await upstreamCalls(demo), 0)
})

t.test('mtls route: a verified client certificate is the principal, and the policy sees its facts', async t => {
  const { demo, certs, send } = await setup(t)
  const res = await send('a', 'mtls')
  t.equal(res.status, 200)
  const seen = policySaw(res)
  t.strictSame(seen.principal, { type: 'mtls', issuer: CA_DN, subject: SPIFFE_A, claims: {} })
  const x = new X509Certificate(certs.a.cert)
  const thumb = createHash('sha256').update(x.raw).digest('base64url')
  t.strictSame(seen.tls.client_certificate, {
    subject: 'CN=svc-a',
    issuer: CA_DN,
    serial_number: x.serialNumber,
    not_after: new Date(x.validTo).toISOString(),
    sans: { dns: ['svc-a.internal'], uri: [SPIFFE_A], email: [], ip: ['10.0.0.7'] },
    spiffe_id: SPIFFE_A,
    thumbprint_sha256: thumb
  })
  t.equal(res.json<{ headers: Record<string, string> }>().headers['x-portcullis-subject'], SPIFFE_A, 'the function is told the SPIFFE ID')
  const other = policySaw(await send('b', 'mtls'))
  t.equal(other.principal?.subject, SPIFFE_B)
  t.not(other.tls.client_certificate?.thumbprint_sha256, thumb, 'each certificate has its own thumbprint')
  t.equal(await upstreamCalls(demo), 2)
})

t.test('mtls route: an invalid token next to a good certificate is not ignored', async t => {
  // chain.ts: "an invalid token is never ignored, not even on a public route".
  const { demo, send } = await setup(t)
  const expired = await demo.token({ ttl: -120 })
  await expectRefusal(t, demo, 'mtls', 'expired token with certificate A', 'expired', async () => send('a', 'mtls', expired))
  await expectRefusal(t, demo, 'mtls', 'garbage token with certificate A', 'malformed', async () => send('a', 'mtls', 'not-a-jwt'))
  t.equal(await upstreamCalls(demo), 0)
})

t.test('jwt-and-mtls needs both; jwt-or-mtls takes either; jwt needs the token', async t => {
  const { demo, certs, send, token } = await setup(t)
  const thumbA = thumbprint(certs.a.cert)

  const both = policySaw(await send('a', 'both', token))
  t.equal(both.principal?.type, 'jwt', 'both: the token is the principal')
  t.equal(both.principal?.subject, 'alice')
  t.equal(both.tls.client_certificate?.thumbprint_sha256, thumbA, 'both: the certificate is in the input too')
  await expectRefusal(t, demo, 'both', 'both: token without a certificate', 'cert_missing', async () => send('none', 'both', token))
  await expectRefusal(t, demo, 'both', 'both: certificate without a token', 'missing', async () => send('a', 'both'))
  await expectRefusal(t, demo, 'both', 'both: token with an untrusted certificate', 'cert_untrusted', async () => send('rogue', 'both', token))

  const viaToken = policySaw(await send('none', 'either', token))
  t.equal(viaToken.principal?.type, 'jwt', 'either: token alone')
  t.equal(viaToken.tls.client_certificate, null)
  const viaCert = policySaw(await send('a', 'either'))
  t.strictSame(viaCert.principal, { type: 'mtls', issuer: CA_DN, subject: SPIFFE_A, claims: {} }, 'either: certificate alone')
  const viaBoth = policySaw(await send('a', 'either', token))
  t.equal(viaBoth.principal?.type, 'jwt', 'either: with both, the token is the principal')
  t.equal(viaBoth.tls.client_certificate?.thumbprint_sha256, thumbA)
  await expectRefusal(t, demo, 'either', 'either: nothing', 'missing', async () => send('none', 'either'))
  await expectRefusal(t, demo, 'either', 'either: only an untrusted certificate', 'cert_untrusted', async () => send('rogue', 'either'))
  await expectRefusal(t, demo, 'either', 'either: only an expired certificate', 'cert_untrusted', async () => send('expired', 'either'))

  await expectRefusal(t, demo, 'jwt', 'jwt: a certificate is no substitute for the token', 'missing', async () => send('a', 'jwt'))
  const untrusted = policySaw(await send('rogue', 'jwt', token))
  t.equal(untrusted.principal?.type, 'jwt', 'jwt: a valid token with an untrusted certificate')
  t.equal(untrusted.tls.client_certificate, null, 'an unverified certificate never reaches the policy')
  t.equal(await upstreamCalls(demo), 5)
})

t.test('public route: anonymous without credentials, and bad credentials are still refused', async t => {
  const { demo, certs, send, token } = await setup(t)
  const anonymous = await send('none', 'open')
  t.equal(anonymous.status, 200)
  t.strictSame(policySaw(anonymous).principal, { type: 'anonymous', issuer: '', subject: '', claims: {} })
  t.strictSame(policySaw(anonymous).tls, { client_certificate: null })
  const withCert = policySaw(await send('a', 'open'))
  t.equal(withCert.principal?.type, 'anonymous', 'a certificate alone does not make a principal on a public route')
  t.equal(withCert.tls.client_certificate?.thumbprint_sha256, thumbprint(certs.a.cert), 'but the policy may look at it')
  t.equal(policySaw(await send('rogue', 'open')).tls.client_certificate, null, 'an untrusted certificate is not shown')
  t.equal(policySaw(await send('none', 'open', token)).principal?.type, 'jwt', 'a valid token is used')
  await expectRefusal(t, demo, 'open', 'expired token', 'expired', async () => send('none', 'open', await demo.token({ ttl: -120 })))
  await expectRefusal(t, demo, 'open', 'garbage token', 'malformed', async () => send('none', 'open', 'not-a-jwt'))
  t.equal(await upstreamCalls(demo), 4)
})

t.test('the demo policy denies an anonymous principal on a public route', async t => {
  const demo = await startDemoHarness(t, { configure: raw => { raw.routes[0].authentication = 'public' } })
  const res = await demo.client.send(`${demo.url}/hello`)
  t.equal(res.status, 401)
  t.equal(res.json().code, 'GW_ERR_AUTHZ_DENIED')
  // RFC 9110 §15.5.2: a 401 MUST carry a WWW-Authenticate challenge, whichever stage produced it.
  t.match(res.headers['www-authenticate'], /^Bearer realm="portcullis"/)
  t.equal(await upstreamCalls(demo), 0)
})

t.test('certificate-bound tokens (cnf x5t#S256) work only with their certificate', async t => {
  const { demo, certs, send } = await setup(t)
  const thumbA = thumbprint(certs.a.cert)
  const bound = await demo.token({ claims: { cnf: { 'x5t#S256': thumbA } } })
  const ok = await send('a', 'jwt', bound)
  t.equal(ok.status, 200, 'with certificate A')
  t.strictSame(policySaw(ok).principal?.claims.cnf, { 'x5t#S256': thumbA })
  // The first success is cached; the binding must still be checked on every request.
  for (const [name, who, route] of [
    ['with certificate B', 'b', 'jwt'],
    ['without a certificate', 'none', 'jwt'],
    ['with an untrusted certificate for the same identity', 'rogue', 'jwt'],
    ['with certificate B on an mtls-and-jwt route', 'b', 'both']
  ] as const) {
    await expectRefusal(t, demo, route, name, 'cert_binding_mismatch', async () => send(who, route, bound))
  }
  const hex = createHash('sha256').update(new X509Certificate(certs.a.cert).raw).digest('hex')
  const std = createHash('sha256').update(new X509Certificate(certs.a.cert).raw).digest('base64')
  for (const [name, cnf] of [
    ['cnf without x5t#S256', {}],
    ['cnf with only the SHA-1 x5t', { x5t: thumbA }],
    ['cnf null', null],
    ['cnf a string', thumbA],
    ['x5t#S256 not a string', { 'x5t#S256': [thumbA] }],
    ['x5t#S256 in hex', { 'x5t#S256': hex }],
    ['x5t#S256 in padded standard base64', { 'x5t#S256': std }]
  ] as const) {
    await expectRefusal(t, demo, 'jwt', `${name}, with certificate A`, 'cert_binding_mismatch', async () => send('a', 'jwt', await demo.token({ claims: { cnf } })))
  }
  t.equal(await upstreamCalls(demo), 1)
})
