import t, { type Test } from 'tap'
import { createHmac, createPrivateKey, createPublicKey, randomBytes, sign as signData, X509Certificate, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { createServer as createHttpServer, type RequestListener } from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { createServer as createNetServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { connect } from 'node:tls'
import { DEMO_AUDIENCE } from '../../src/demo/state.js'
import { createCa, loadCa, type PemPair } from '../../src/tls/pki.js'
import { compileEchoPolicy, expectRefusal, policySaw, upstreamCalls } from '../helpers/authn.js'
import { startDemoHarness, type DemoHarness } from '../helpers/demo.js'
import type { Reply } from '../helpers/http.js'
import { makeKey, sign, startIdp } from '../helpers/idp.js'

// Forged, tampered and confusing tokens against the real gateway over real TLS: each one is refused
// (401, or 503 when the issuer keys cannot be loaded) with its enumerated reason, and none of them
// ever reaches the function. A few controls that must be accepted are marked 200.

const now = (): number => Math.floor(Date.now() / 1000)
/** base64url of a JSON value, or of a string taken as the exact text. */
const b64u = (v: unknown): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url')

/** A compact ES256 JWS signed by hand, for headers and payloads jose refuses to produce. */
function es256 (key: KeyObject, header: Record<string, unknown>, payload: unknown, dsaEncoding: 'ieee-p1363' | 'der' = 'ieee-p1363'): string {
  const input = `${b64u(header)}.${b64u(payload)}`
  return `${input}.${signData('sha256', Buffer.from(input), { key, dsaEncoding }).toString('base64url')}`
}

/** The demo gateway plus the demo issuer's own signing key, so tokens can be valid in every other way. */
async function setup (t: Test, opts: Parameters<typeof startDemoHarness>[1] = {}) {
  const demo = await startDemoHarness(t, {
    ...opts,
    configure: (raw, paths) => { raw.rateLimit = {}; opts.configure?.(raw, paths) }
  })
  const jwk = JSON.parse(readFileSync(demo.paths.signingKey, 'utf8')) as Record<string, string>
  const key = createPrivateKey({ key: jwk, format: 'jwk' })
  const { d: _private, ...publicJwk } = jwk // exactly what the demo issuer publishes
  const kid = publicJwk.kid!
  const claims = (extra: Record<string, unknown> = {}): Record<string, unknown> =>
    ({ iss: demo.issuer.url, aud: DEMO_AUDIENCE, sub: 'alice', iat: now(), exp: now() + 300, ...extra })
  const hello = async (token: string, query = ''): Promise<Reply> => demo.client.send(`${demo.url}/hello${query}`, { token })
  return { demo, key, kid, publicJwk, claims, hello }
}

type Expected = string | 200
/** Sends every token to /hello: refusals must match their reason; 200 marks a token the gateway accepts. */
async function run (t: Test, demo: DemoHarness, cases: Array<[string, string, Expected]>): Promise<void> {
  let accepted = 0
  for (const [name, token, expected] of cases) {
    const send = async (): Promise<Reply> => demo.client.send(`${demo.url}/hello`, { token })
    if (expected === 200) {
      accepted++
      const res = await send()
      t.equal(res.status, 200, `${name}: accepted`, { body: res.text.slice(0, 300) })
    } else {
      await expectRefusal(t, demo, 'hello', name, expected, send)
    }
  }
  t.equal(await upstreamCalls(demo), accepted, `only the ${accepted} accepted token(s) reached the function`)
}

/** A plain HTTP(S) listener on loopback that counts every TCP connection it gets. */
async function listen (t: Test, handler: RequestListener, tls?: PemPair): Promise<{ url: string, connections: number }> {
  const server = tls === undefined ? createHttpServer(handler) : createHttpsServer(tls, handler)
  const l = { url: '', connections: 0 }
  server.on('connection', () => { l.connections++ })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  l.url = `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${(server.address() as AddressInfo).port}`
  t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  return l
}

/** One raw HTTP/1.1 request over TLS (for what no client library will send), read back as a Reply. */
async function rawSend (demo: DemoHarness, request: string): Promise<Reply> {
  const { port } = new URL(demo.url)
  const text = await new Promise<string>((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port: Number(port), ca: readFileSync(demo.paths.caCert) }, () => socket.end(request))
    let data = ''
    socket.on('data', d => { data += String(d) })
    socket.on('close', () => resolve(data))
    socket.on('error', reject)
  })
  const split = text.indexOf('\r\n\r\n')
  const [statusLine = '', ...lines] = text.slice(0, split).split('\r\n')
  const body = text.slice(split + 4)
  const headers = Object.fromEntries(lines.map(l => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]))
  return { status: Number(statusLine.split(' ')[1]), headers, text: body, json: <T>() => JSON.parse(body) as T }
}

t.test('alg "none" in any casing, and a missing alg, are refused', async t => {
  const { demo, kid, claims } = await setup(t)
  const cases: Array<[string, string, Expected]> = []
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    const unsigned = `${b64u({ alg, kid, typ: 'JWT' })}.${b64u(claims())}`
    cases.push([`alg ${alg}, empty signature`, `${unsigned}.`, 'malformed'])
    cases.push([`alg ${alg}, junk signature`, `${unsigned}.${b64u('x')}`, 'bad_algorithm'])
  }
  cases.push(['no alg at all', `${b64u({ kid, typ: 'JWT' })}.${b64u(claims())}.${b64u('x')}`, 'invalid'])
  await run(t, demo, cases)
})

t.test('algorithm confusion: HS* keyed with the issuer public key in every encoding', async t => {
  const { demo, key, kid, publicJwk, claims } = await setup(t)
  const x = Buffer.from(publicJwk.x!, 'base64url')
  const y = Buffer.from(publicJwk.y!, 'base64url')
  const secrets: Array<[string, Buffer | string]> = [
    ['SPKI PEM text', createPublicKey(key).export({ type: 'spki', format: 'pem' }) as string],
    ['JWK JSON text', JSON.stringify(publicJwk)],
    ['raw x||y', Buffer.concat([x, y])],
    ['uncompressed point 04||x||y', Buffer.concat([Buffer.from([4]), x, y])]
  ]
  const cases: Array<[string, string, Expected]> = []
  for (const [alg, hash] of [['HS256', 'sha256'], ['HS384', 'sha384'], ['HS512', 'sha512']] as const) {
    for (const [what, secret] of secrets) {
      const input = `${b64u({ alg, kid, typ: 'JWT' })}.${b64u(claims())}`
      cases.push([`${alg} keyed with the ${what}`, `${input}.${createHmac(hash, secret).update(input).digest('base64url')}`, 'bad_algorithm'])
    }
  }
  await run(t, demo, cases)
})

t.test('kid games: unknown or hostile kids never fall back to another key', async t => {
  const { demo, key, claims } = await setup(t)
  const attacker = makeKey('ES256')
  const cases: Array<[string, string, Expected]> = []
  // Signed with the real issuer key: any fallback to "the" key would make these verify.
  for (const kid of ['not-a-kid', '../../../../dev/null', "' OR 1=1 --", 'http://127.0.0.1:1/x', '', 42, null]) {
    cases.push([`kid ${JSON.stringify(kid)} on a real signature`, es256(key, { alg: 'ES256', kid }, claims()), 'unknown_key'])
  }
  cases.push(['no kid, signed by an attacker key', es256(attacker.privateKey, { alg: 'ES256' }, claims()), 'bad_signature'])
  await run(t, demo, cases)
})

t.test('tampered, truncated, re-encoded and all-zero signatures', async t => {
  const { demo, key, kid, claims } = await setup(t)
  const good = es256(key, { alg: 'ES256', kid }, claims())
  const [h, p, s] = good.split('.') as [string, string, string]
  await run(t, demo, [
    ['payload changed after signing', `${h}.${b64u(claims({ sub: 'root', roles: ['admin'] }))}.${s}`, 'bad_signature'],
    ['header changed after signing', `${b64u({ alg: 'ES256', kid, typ: 'JWT' })}.${p}.${s}`, 'bad_signature'],
    ['one signature character flipped', `${h}.${p}.${s[0] === 'A' ? 'B' : 'A'}${s.slice(1)}`, 'bad_signature'],
    ['signature truncated', `${h}.${p}.${s.slice(0, -8)}`, 'bad_signature'],
    ['valid signature, DER instead of raw r||s', es256(key, { alg: 'ES256', kid }, claims(), 'der'), 'bad_signature'],
    ['ES256 signature of 64 zero bytes (CVE-2022-21449)', `${h}.${p}.${Buffer.alloc(64).toString('base64url')}`, 'bad_signature']
  ])
})

t.test('keys carried in the token (jwk, x5c) or pointed at (jku, x5u) are never used or fetched', async t => {
  const { demo, kid, claims } = await setup(t)
  const attacker = makeKey('ES256', 'attacker-key')
  // The key URLs are served by a server the gateway would trust, so a fetch would be able to succeed.
  const demoCa = await loadCa({ cert: readFileSync(demo.paths.caCert, 'utf8'), key: readFileSync(join(demo.paths.dir, 'ca.key'), 'utf8') })
  const rogue = await createCa('Attacker CA')
  const rogueLeaf = await rogue.issue({ commonName: 'attacker', usage: 'both' })
  const rogueKey = createPrivateKey(rogueLeaf.key)
  const x5c = [rogueLeaf.cert, rogue.cert].map(pem => new X509Certificate(pem).raw.toString('base64'))
  const jku = await listen(t, (_req, res) => res.end(JSON.stringify({ keys: [attacker.publicJwk] })),
    await demoCa.issue({ commonName: 'attacker-jku', ipAddresses: ['127.0.0.1'], usage: 'server' }))
  const x5u = await listen(t, (_req, res) => res.end(rogueLeaf.cert))
  const a = attacker.privateKey
  await run(t, demo, [
    ['embedded jwk, the issuer kid', es256(a, { alg: 'ES256', kid, jwk: attacker.publicJwk }, claims()), 'bad_signature'],
    ['embedded jwk, no kid', es256(a, { alg: 'ES256', jwk: attacker.publicJwk }, claims()), 'bad_signature'],
    ['embedded jwk, its own kid', es256(a, { alg: 'ES256', kid: attacker.kid, jwk: attacker.publicJwk }, claims()), 'unknown_key'],
    ['x5c attacker chain, the issuer kid', es256(rogueKey, { alg: 'ES256', kid, x5c }, claims()), 'bad_signature'],
    ['x5c attacker chain, no kid', es256(rogueKey, { alg: 'ES256', x5c }, claims()), 'bad_signature'],
    ['jku (https), attacker kid', es256(a, { alg: 'ES256', kid: attacker.kid, jku: `${jku.url}/jwks.json` }, claims()), 'unknown_key'],
    ['jku (https), the issuer kid', es256(a, { alg: 'ES256', kid, jku: `${jku.url}/jwks.json` }, claims()), 'bad_signature'],
    ['x5u (http), no kid', es256(rogueKey, { alg: 'ES256', x5u: `${x5u.url}/cert.pem` }, claims()), 'bad_signature'],
    ['x5u (http), attacker kid', es256(rogueKey, { alg: 'ES256', kid: 'attacker-cert', x5u: `${x5u.url}/cert.pem` }, claims()), 'unknown_key']
  ])
  t.equal(jku.connections, 0, 'no connection to the jku server')
  t.equal(x5u.connections, 0, 'no connection to the x5u server')
})

t.test('exp, nbf and iat at the edges (leeway is the default 30 s)', async t => {
  const { demo, key, kid, claims } = await setup(t)
  const token = (extra: Record<string, unknown>): string => es256(key, { alg: 'ES256', kid }, claims(extra))
  await run(t, demo, [
    ['exp = now - leeway - 1', token({ exp: now() - 31 }), 'expired'],
    ['exp inside the leeway', token({ exp: now() - 20 }), 200],
    ['exp = 0', token({ exp: 0 }), 'expired'],
    ['exp negative', token({ exp: -1 }), 'expired'],
    ['exp as the string "9999999999"', token({ exp: '9999999999' }), 'invalid_claims'],
    ['exp null', token({ exp: null }), 'invalid_claims'],
    ['exp missing', token({ exp: undefined }), 'invalid_claims'],
    // NumericDate may be fractional (RFC 7519 §2), and jose sets no upper bound: the issuer's choice.
    ['exp fractional, in the future', token({ exp: now() + 300.75 }), 200],
    ['exp huge (1e300)', token({ exp: 1e300 }), 200],
    ['nbf beyond the leeway', token({ nbf: now() + 60 }), 'not_yet_valid'],
    ['nbf inside the leeway', token({ nbf: now() + 10 }), 200],
    ['nbf not a number', token({ nbf: 'soon' }), 'invalid_claims'],
    // jose checks iat only when a maximum token age is configured, and the gateway sets none:
    // a future iat is accepted (RFC 7519 does not forbid it); a non-numeric one is not.
    ['iat an hour in the future', token({ iat: now() + 3600 }), 200],
    ['iat not a number', token({ iat: 'yesterday' }), 'invalid_claims']
  ])
})

t.test('audience, issuer and subject confusion', async t => {
  const { demo, key, kid, claims } = await setup(t)
  const token = (extra: Record<string, unknown>): string => es256(key, { alg: 'ES256', kid }, claims(extra))
  const iss = demo.issuer.url
  await run(t, demo, [
    ['aud lists only other audiences', token({ aud: ['someone-else', 'portcullis'] }), 'invalid_claims'],
    ['aud in upper case', token({ aud: DEMO_AUDIENCE.toUpperCase() }), 'invalid_claims'],
    ['aud capitalized', token({ aud: 'Portcullis-Demo' }), 'invalid_claims'],
    ['aud with a trailing space', token({ aud: `${DEMO_AUDIENCE} ` }), 'invalid_claims'],
    ['aud empty array', token({ aud: [] }), 'invalid_claims'],
    ['aud as an object', token({ aud: { 0: DEMO_AUDIENCE } }), 'invalid_claims'],
    ['aud missing', token({ aud: undefined }), 'invalid_claims'],
    ['aud array that includes ours (control)', token({ aud: ['someone-else', DEMO_AUDIENCE] }), 200],
    ['iss with a trailing slash', token({ iss: `${iss}/` }), 'unknown_issuer'],
    ['iss in upper case', token({ iss: iss.toUpperCase() }), 'unknown_issuer'],
    ['iss as an array', token({ iss: [iss] }), 'unknown_issuer'],
    ['iss with trailing whitespace', token({ iss: `${iss} ` }), 'unknown_issuer'],
    ['iss missing', token({ iss: undefined }), 'unknown_issuer'],
    ['sub a number', token({ sub: 42 }), 'invalid_claims'],
    ['sub empty', token({ sub: '' }), 'invalid_claims']
  ])
})

t.test('payloads and headers that are not a plain JWT', async t => {
  const { demo, key, kid, claims } = await setup(t)
  const cases: Array<[string, string, Expected]> = []
  for (const text of ['[1,2]', '"alice"', '42', 'null', 'not json']) {
    cases.push([`payload ${text}`, es256(key, { alg: 'ES256', kid }, text), 'malformed'])
  }
  const badHeader = `${b64u('not json')}.${b64u(claims())}`
  cases.push(
    ['header that is not JSON', `${badHeader}.${signData('sha256', Buffer.from(badHeader), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`, 'invalid'],
    ['unknown crit header', es256(key, { alg: 'ES256', kid, crit: ['x-unknown'], 'x-unknown': true }, claims()), 'invalid'],
    ['unencoded payload (b64: false)', es256(key, { alg: 'ES256', kid, b64: false, crit: ['b64'] }, claims()), 'invalid'],
    ['a JWE (five segments)', [b64u({ alg: 'RSA-OAEP', enc: 'A256GCM', kid }), ...[256, 12, 64, 16].map(n => randomBytes(n).toString('base64url'))].join('.'), 'malformed'],
    ['a validly signed token over 8 KiB', es256(key, { alg: 'ES256', kid }, claims({ pad: 'x'.repeat(9000) })), 'too_large'],
    // Half a UTF-16 pair, as a JSON escape, in a claim no policy reads, in a nested value and in a
    // claim's name: a 401 with its reason (it used to be a 500 from the policy engine).
    ['a lone high surrogate in an unread claim', es256(key, { alg: 'ES256', kid }, claims({ note: 'a\ud800b' })), 'invalid_claims'],
    ['a lone low surrogate nested in an array', es256(key, { alg: 'ES256', kid }, claims({ groups: [{ name: '\udfff' }] })), 'invalid_claims'],
    ['a lone surrogate in a claim name', es256(key, { alg: 'ES256', kid }, claims({ 'x\ud83d': 1 })), 'invalid_claims'],
    ['a surrogate pair (an emoji) is fine', es256(key, { alg: 'ES256', kid }, claims({ note: '\ud83d\ude00' })), 200]
  )
  await run(t, demo, cases)
})

t.test('ambiguous credentials: two Authorization headers, or a token in the query', async t => {
  const { demo, hello, claims, key, kid } = await setup(t)
  const token = es256(key, { alg: 'ES256', kid }, claims())
  await expectRefusal(t, demo, 'hello', 'two Authorization headers, both valid', 'ambiguous', async () => rawSend(demo,
    `GET /hello HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`))
  const send = async (query: string, withHeader: boolean): Promise<Reply> =>
    withHeader ? hello(token, query) : demo.client.send(`${demo.url}/hello${query}`)
  for (const [name, query, withHeader] of [
    ['?access_token= alone', `?access_token=${token}`, false],
    ['?access_token= next to a valid header', '?access_token=x', true],
    ['access_token as a later, empty parameter', '?a=1&access_token=', true],
    // The policy input decodes the query (URLSearchParams): this is the same parameter, spelled differently.
    ['?access%5Ftoken= next to a valid header', `?access%5Ftoken=${token}`, true]
  ] as const) {
    await expectRefusal(t, demo, 'hello', name, 'ambiguous', async () => send(query, withHeader))
  }
  t.equal(await upstreamCalls(demo), 0)
})

t.test('__proto__, constructor and prototype claims in a valid token never reach the policy', async t => {
  const { demo, key, kid } = await setup(t, { bundle: await compileEchoPolicy(t) })
  const exp = now() + 300
  const iss = demo.issuer.url
  // Written by hand: an object literal with __proto__ would set a prototype, not a claim.
  const payload = `{"iss":${JSON.stringify(iss)},"aud":"${DEMO_AUDIENCE}","sub":"alice","exp":${exp},"roles":["reader"],` +
    '"__proto__":{"admin":true},"constructor":{"prototype":{"admin":true}},"prototype":{"admin":true},' +
    '"profile":{"name":"a","__proto__":{"polluted":true},"groups":[{"constructor":{"x":1},"id":"g1"}]}}'
  const res = await demo.client.send(`${demo.url}/hello`, { token: es256(key, { alg: 'ES256', kid }, payload) })
  t.equal(res.status, 200)
  const seen = policySaw(res)
  t.strictSame(seen.principal, {
    type: 'jwt',
    issuer: iss,
    subject: 'alice',
    claims: { iss, aud: DEMO_AUDIENCE, sub: 'alice', exp, roles: ['reader'], profile: { name: 'a', groups: [{ id: 'g1' }] } }
  })
  t.notMatch(seen.principalJson, /__proto__|constructor|prototype|admin|polluted/, 'no trace of them in what the policy saw')
  t.equal(({} as Record<string, unknown>).admin, undefined, 'Object.prototype of the gateway process is untouched')
  t.equal(({} as Record<string, unknown>).polluted, undefined)
})

t.test('a key removed from the JWKS stops verifying once the JWKS is refetched', async t => {
  const idp = await startIdp(t)
  const kept = makeKey('ES256', 'kept')
  const removed = makeKey('ES256', 'removed')
  idp.keys = [kept, removed]
  const { demo } = await setup(t, {
    configure: raw => {
      raw.issuers = [{
        id: 'idp', issuer: idp.issuer, audiences: ['api'], algorithms: ['ES256'], jwks: { discovery: true }, ca: idp.caFile,
        jwksCacheSeconds: 1, verifiedTokenCacheSeconds: 0
      }]
    }
  })
  const claims = { iss: idp.issuer, aud: 'api', sub: 'alice' }
  t.equal((await demo.client.send(`${demo.url}/hello`, { token: await sign(removed, claims) })).status, 200, 'published: accepted')
  idp.keys = [kept]
  const fetches = idp.hits['/keys'] ?? 0
  await new Promise(resolve => setTimeout(resolve, 1100)) // past jwksCacheSeconds, so the next use refetches
  await expectRefusal(t, demo, 'hello', 'token signed by the removed key', 'unknown_key',
    async () => demo.client.send(`${demo.url}/hello`, { token: await sign(removed, claims) }))
  t.ok((idp.hits['/keys'] ?? 0) > fetches, 'the JWKS was refetched')
  t.equal((await demo.client.send(`${demo.url}/hello`, { token: await sign(kept, claims) })).status, 200, 'the kept key still works')
  t.equal(await upstreamCalls(demo), 2)
})

t.test('issuers never share keys: a kid that collides across issuers verifies only its own', async t => {
  const a = makeKey('ES256', 'shared')
  const b = makeKey('ES256', 'shared')
  const dir = t.testdir()
  await writeFile(join(dir, 'a.json'), JSON.stringify({ keys: [a.publicJwk] }))
  await writeFile(join(dir, 'b.json'), JSON.stringify({ keys: [b.publicJwk] }))
  const issuer = (id: string, extra = {}) => ({
    id, issuer: `https://${id}.test`, audiences: ['api'], algorithms: ['ES256'], jwks: { file: join(dir, `${id}.json`) }, ...extra
  })
  const { demo } = await setup(t, { configure: raw => { raw.issuers = [issuer('a'), issuer('b', { typ: 'at+jwt' })] } })
  const as = (iss: string) => ({ iss: `https://${iss}.test`, aud: 'api', sub: 'alice' })
  await run(t, demo, [
    ['claims issuer b, signed with a\'s key', await sign(a, as('b'), { typ: 'at+jwt' }), 'bad_signature'],
    ['claims issuer a, signed with b\'s key', await sign(b, as('a')), 'bad_signature'],
    ['issuer a with its own key (control)', await sign(a, as('a')), 200],
    ['issuer b with its own key and typ (control)', await sign(b, as('b'), { typ: 'at+jwt' }), 200],
    ['issuer b without the required typ', await sign(b, as('b')), 'bad_type'],
    ['issuer b with typ JWT', await sign(b, as('b'), { typ: 'JWT' }), 'bad_type']
  ])
})

t.test('JWKS endpoints that are down, slow or broken: 503 keys_unavailable, never a 2xx', async t => {
  const ca = await createCa('JWKS test CA')
  const caFile = join(t.testdir({ 'ca.crt': ca.cert }), 'ca.crt')
  const tls = await ca.issue({ commonName: 'jwks', ipAddresses: ['127.0.0.1'], usage: 'server' })
  const key = makeKey('ES256', 'k')
  const down = await new Promise<string>(resolve => { // a port nobody listens on any more
    const s = createNetServer().listen(0, '127.0.0.1', () => { const { port } = s.address() as AddressInfo; s.close(() => resolve(`https://127.0.0.1:${port}`)) })
  })
  const slow = await listen(t, (_req, res) => { setTimeout(() => res.end(JSON.stringify({ keys: [key.publicJwk] })), 3000).unref() }, tls)
  const garbage = await listen(t, (_req, res) => res.end('<html>not a key set</html>'), tls)
  const wrongShape = await listen(t, (_req, res) => res.end('{"keys":"none"}'), tls)
  // Good at start, broken later: the cached set goes stale after jwksCacheSeconds and must be refetched.
  let later: 'ok' | 'garbage' | 'error' = 'ok'
  const turning = await listen(t, (_req, res) => {
    if (later === 'error') res.writeHead(500)
    res.end(later === 'ok' ? JSON.stringify({ keys: [key.publicJwk] }) : 'garbage')
  }, tls)
  const issuers = { down, slow: slow.url, garbage: garbage.url, 'wrong-shape': wrongShape.url, turning: turning.url }
  const { demo } = await setup(t, {
    configure: raw => {
      raw.issuers = Object.entries(issuers).map(([id, url]) => ({
        id, issuer: url, audiences: ['api'], algorithms: ['ES256'], jwks: { url: `${url}/keys` }, ca: caFile, fetchTimeoutMs: 200, jwksCacheSeconds: 1
      }))
    }
  })
  const token = async (iss: string, kid = 'k') => sign({ ...key, kid }, { iss, aud: 'api', sub: 'alice' })
  for (const [id, url] of Object.entries(issuers).filter(([id]) => id !== 'turning')) {
    await expectRefusal(t, demo, 'hello', `${id} at start, known kid`, 'keys_unavailable', async () => demo.client.send(`${demo.url}/hello`, { token: await token(url) }))
    await expectRefusal(t, demo, 'hello', `${id} at start, unknown kid`, 'keys_unavailable', async () => demo.client.send(`${demo.url}/hello`, { token: await token(url, 'other') }))
  }
  for (const mode of ['garbage', 'error'] as const) {
    later = mode
    await new Promise(resolve => setTimeout(resolve, 1100)) // the loaded set is now stale
    await expectRefusal(t, demo, 'hello', `JWKS turned ${mode} after start, unknown kid`, 'keys_unavailable',
      async () => demo.client.send(`${demo.url}/hello`, { token: await token(turning.url, `other-${mode}`) }))
  }
  t.equal(await upstreamCalls(demo), 0, 'nothing was forwarded')
})
