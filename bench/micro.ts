/*
 * Micro-benchmarks of the per-request pipeline steps, in isolation (no HTTP, no Fastify), so a
 * regression in one step shows up as that step and not as noise in an end-to-end run.
 *
 *   node --import tsx bench/micro.ts [--json out.json]
 *
 * Every task times one call per sample; tinybench subtracts the timer's own cost, so sub-µs steps
 * are not inflated by it. Async tasks (token verification) also include one microtask turn.
 */
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import type { IncomingHttpHeaders } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { SignJWT } from 'jose'
import { Bench, type Task } from 'tinybench'
import { buildBundle } from '../scripts/opa.mjs'
import type { IssuerConfig } from '../src/config/schema.js'
import { authenticateRequest } from '../src/pipeline/authenticate/chain.js'
import { createJwtAuthenticator } from '../src/pipeline/authenticate/jwt.js'
import { createKeySource } from '../src/pipeline/authenticate/key-source.js'
import { readBundleFile } from '../src/pipeline/authorize/bundle.js'
import { toDecision } from '../src/pipeline/authorize/decision.js'
import { createPolicyEngine } from '../src/pipeline/authorize/policy-engine.js'
import { ASSERTION_TYP, createAssertionMinter } from '../src/pipeline/forward/credentials/assertion.js'
import { createKeyRing } from '../src/pipeline/forward/credentials/signing-keys.js'
import { buildUpstreamHeaders, filterResponseHeaders } from '../src/pipeline/forward/headers.js'
import { canonicalizeTarget } from '../src/pipeline/guard/canonical-path.js'
import type { Decision, JwtPrincipal, PolicyInput, RouteContext } from '../src/pipeline/types.js'

const jsonIdx = process.argv.indexOf('--json')
const jsonOut = jsonIdx === -1 ? undefined : process.argv[jsonIdx + 1]
if (jsonIdx !== -1 && jsonOut === undefined) throw new Error('--json needs a file name')
const mdIdx = process.argv.indexOf('--md')
const mdOut = mdIdx === -1 ? undefined : process.argv[mdIdx + 1]
if (mdIdx !== -1 && mdOut === undefined) throw new Error('--md needs a file name')

// Results go here so V8 cannot drop a call whose value is never read.
let sink: unknown
// Four times this machine's L2 cache per core (2 MiB): touching it pushes what came before out of it.
const evictable = new Uint8Array(8 << 20)
function evictCaches (): void {
  for (let i = 0; i < evictable.length; i += 64) evictable[i]!++
}

// ~1.25 s per task (1 s measured + warmup) keeps the whole run around 20 s.
const bench = new Bench({ time: 1000, warmupTime: 250, throws: true, subtractTimerOverhead: true })
bench.addEventListener('warning', e => console.warn(`warning: ${e.task?.name}: timer saturated (${e.reason ?? '?'})`))

// 1. Policy evaluation, on the real demo bundle compiled by the pinned OPA.
const { out } = await buildBundle({})
const engine = await createPolicyEngine(await readBundleFile(out), 'gateway/authz/decision')
const fill = <T>(n: number, f: (i: number) => [string, T]): Record<string, T> => Object.fromEntries(Array.from({ length: n }, (_, i) => f(i)))
const smallInput: PolicyInput = {
  method: 'GET',
  protocol: 'HTTP/1.1',
  path: '/orders/123',
  segments: ['orders', '123'],
  query: {},
  headers: { accept: 'application/json' },
  client: { ip: '203.0.113.7' },
  tls: { client_certificate: null },
  principal: { type: 'jwt', issuer: 'https://idp.example', subject: 'alice', claims: { sub: 'alice', roles: ['reader'] } },
  route: { id: 'orders', metadata: {} },
  time_ns: Date.now() * 1_000_000
}
const largeInput: PolicyInput = {
  ...smallInput,
  headers: fill(50, i => [`x-header-${i}`, `value-${i}-${'v'.repeat(20)}`]),
  query: fill(30, i => [`q${i}`, [`${i}`]]),
  principal: { ...smallInput.principal!, claims: { ...fill(48, i => [`claim_${i}`, `c${i}`]), sub: 'alice', roles: ['reader'] } }
}
// A wrong bundle or input would deny; measuring the deny path instead would be silently misleading.
if (toDecision(engine.evaluate(smallInput))?.allow !== true || toDecision(engine.evaluate(largeInput))?.allow !== true) {
  throw new Error('policy does not allow the benchmark inputs')
}
bench
  .add('policy evaluate (small)', () => { sink = engine.evaluate(smallInput) })
  .add('policy evaluate (large)', () => { sink = engine.evaluate(largeInput) })
  .add('authorize = toDecision(evaluate) (small)', () => { sink = toDecision(engine.evaluate(smallInput)) })
  .add('authorize = toDecision(evaluate) (large)', () => { sink = toDecision(engine.evaluate(largeInput)) })

// 2. Token verification against a JWKS file: cached (the same token again, the usual case), warm
// (keys imported, signature checked every time) and cold (as after a reload).
const dir = await mkdtemp(join(tmpdir(), 'portcullis-bench-'))
try {
  const route: RouteContext = { id: 'r', prefix: '/r', upstream: 'u', stripPrefix: false, authentication: 'jwt', maxBodyBytes: 1_048_576, metadata: {} }
  const keys: Array<{ alg: 'ES256' | 'RS256', kid: string, privateKey: KeyObject, jwk: Record<string, unknown> }> = []
  for (const alg of ['ES256', 'RS256'] as const) {
    const pair = alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('rsa', { modulusLength: 2048 })
    const kid = randomUUID()
    keys.push({ alg, kid, privateKey: pair.privateKey, jwk: { ...pair.publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' } })
  }
  const jwksFile = join(dir, 'jwks.json')
  await writeFile(jwksFile, JSON.stringify({ keys: keys.map(k => k.jwk) }))
  const issuer: IssuerConfig = {
    id: 'bench',
    issuer: 'https://idp.example',
    audiences: ['portcullis'],
    algorithms: ['ES256', 'RS256'],
    jwks: { file: jwksFile },
    clockToleranceSeconds: 30,
    jwksCacheSeconds: 600,
    requiredClaims: [],
    maxTokenBytes: 8192,
    verifiedTokenCacheSeconds: 0,
    fetchTimeoutMs: 5000
  }
  const cachingIssuer: IssuerConfig = { ...issuer, verifiedTokenCacheSeconds: 60 }
  const newAuthenticator = async (config = issuer) => createJwtAuthenticator([{ config, keys: await createKeySource(config) }])
  const warm = await newAuthenticator()
  const cached = await newAuthenticator(cachingIssuer)
  for (const k of keys) {
    const now = Math.floor(Date.now() / 1000)
    const token = await new SignJWT({ sub: 'alice', roles: ['reader'], iat: now, exp: now + 3600 })
      .setProtectedHeader({ alg: k.alg, kid: k.kid })
      .setIssuer(issuer.issuer)
      .setAudience('portcullis')
      .sign(k.privateKey)
    // The whole authenticate step as the plugin runs it (carriage checks, route mode, token).
    const request = { headers: { authorization: `Bearer ${token}` }, rawHeaders: ['authorization', `Bearer ${token}`], query: '', peer: { state: 'none' as const } }
    // Benchmarking a rejected token would time the failure path (and look fast).
    const first = await authenticateRequest(request, route, warm)
    if (first.kind !== 'principal') throw new Error(`${k.alg} token was not accepted: ${first.kind === 'failure' ? first.reason : first.kind}`)
    if ((await authenticateRequest(request, route, cached)).kind !== 'principal') throw new Error('cached authenticator refused the token')
    bench
      .add(`authenticate ${k.alg} (cached)`, async () => { sink = await authenticateRequest(request, route, cached) })
      .add(`authenticate ${k.alg} (warm)`, async () => { sink = await authenticateRequest(request, route, warm) })
      // Includes reading the JWKS file, parsing it and importing the key: the first request after a reload.
      .add(`authenticate ${k.alg} (cold)`, async () => { sink = await authenticateRequest(request, route, await newAuthenticator()) })
  }
  // The same step on a public route without credentials: the cost of no authentication, for scale.
  const publicRoute: RouteContext = { ...route, authentication: 'public' }
  const anonymous = { headers: {}, rawHeaders: [], query: '', peer: { state: 'none' as const } }
  if ((await authenticateRequest(anonymous, publicRoute, cached)).kind !== 'principal') throw new Error('public route refused an anonymous request')
  bench.add('authenticate, public route, no credentials', async () => { sink = await authenticateRequest(anonymous, publicRoute, cached) })

  // 3. Canonical path check.
  const longPath = '/' + Array.from({ length: 40 }, (_, i) => `segment-${i}`).join('/') + '?limit=10'
  bench
    .add('canonicalizeTarget (typical)', () => { sink = canonicalizeTarget('/orders/123/items?limit=10&offset=20') })
    .add('canonicalizeTarget (40 segments)', () => { sink = canonicalizeTarget(longPath) })

  // 4. Header rewriting, with a browser-like request that also tries to spoof forwarding/identity headers.
  const requestHeaders: IncomingHttpHeaders = {
    host: 'api.example.com',
    'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
    accept: 'application/json, text/plain, */*',
    'accept-language': 'en-US,en;q=0.9',
    'accept-encoding': 'gzip, deflate, br, zstd',
    referer: 'https://app.example.com/orders',
    origin: 'https://app.example.com',
    cookie: 'session=abc123; theme=dark',
    authorization: 'Bearer eyJhbGciOiJFUzI1NiJ9.e30.sig',
    connection: 'keep-alive, x-debug',
    'x-debug': '1',
    'sec-fetch-mode': 'cors',
    'x-forwarded-for': '10.0.0.1',
    'x-portcullis-subject': 'admin',
    'x-real-ip': '127.0.0.1'
  }
  const responseHeaders = {
    'content-type': 'application/json', 'content-length': '512', 'cache-control': 'no-store', etag: '"abc"',
    date: new Date().toUTCString(), connection: 'keep-alive', 'keep-alive': 'timeout=5', 'transfer-encoding': 'chunked',
    vary: 'accept-encoding', 'x-request-id': 'r-1'
  }
  const decision: Decision = { allow: true, reasons: ['x'], headers: { upstream: { 'x-portcullis-roles': 'reader' }, client: {} } }
  const principal: JwtPrincipal = { type: 'jwt', issuerId: 'i', issuer: 'https://i', subject: 'alice', claims: {}, certificate: null }
  const ctx = { principal, decision, requestId: 'req-1', clientIp: '203.0.113.7', host: 'api.example.com', upstreamHost: 'orders.internal' }
  bench
    .add('buildUpstreamHeaders (15 headers)', () => { sink = buildUpstreamHeaders(requestHeaders, ctx) })
    .add('filterResponseHeaders (10 headers)', () => { sink = filterResponseHeaders(responseHeaders) })

  // 5. The gateway assertion, minted per request (ES256 and EdDSA keys made at start, as without keysFile).
  for (const algorithm of ['ES256', 'EdDSA'] as const) {
    const config = { issuer: 'https://gateway.example.com', algorithm, header: 'x-portcullis-assertion', ttlSeconds: 60, claims: [], rotateAfterSeconds: 86_400, publishAheadSeconds: 300 }
    const keys = await createKeyRing({ config, timer: false })
    const mint = createAssertionMinter(config, keys)
    const req = { principal, audience: 'https://orders.internal', method: 'POST', path: '/orders/7?x=1', requestId: 'req-1', bodySha256: 'n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg' }
    bench.add(`assertion minting (${algorithm})`, async () => { sink = await mint(req) })
    if (algorithm === 'ES256') {
      // As in the gateway, where a request's work between two signatures evicts OpenSSL's P-256 tables
      // from the caches (credentials/turn-batch.ts): 8 MiB touched before each iteration, not timed.
      bench.add('assertion minting (ES256), caches cold', () => { sink = mint(req) }, { beforeEach: evictCaches })
      bench.add('8 assertions minted in a row (ES256), caches cold', () => { for (let i = 0; i < 8; i++) sink = mint(req) }, { beforeEach: evictCaches })
    }
    // The same claims through jose's SignJWT (WebCrypto), as the minter did before: for comparison.
    bench.add(`assertion minting with jose SignJWT (${algorithm})`, async () => {
      const key = keys.current()
      sink = await new SignJWT({ method: req.method, path: req.path, auth: 'jwt', rid: req.requestId, idp: principal.issuer, body_sha256: req.bodySha256 })
        .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: ASSERTION_TYP }).setIssuer(config.issuer).setAudience(req.audience)
        .setIssuedAt().setExpirationTime('60s').setJti(randomUUID()).setSubject(principal.subject).sign(key.privateKey)
    })
  }

  await bench.run()
} finally {
  await rm(dir, { recursive: true, force: true })
}
void sink

interface Row { name: string, p50_ns: number, p99_ns: number, mean_ns: number, rme_pct: number, samples: number }
const rows: Row[] = bench.tasks.map((t: Task) => {
  const r = t.result
  if (r.state !== 'completed') throw new Error(`${t.name}: ${r.state}`)
  const ns = (ms: number) => Math.round(ms * 1e6)
  return { name: t.name, p50_ns: ns(r.latency.p50), p99_ns: ns(r.latency.p99), mean_ns: ns(r.latency.mean), rme_pct: Number(r.latency.rme.toFixed(2)), samples: r.latency.samplesCount }
})

const cols: Array<[string, (r: Row) => string]> = [
  ['task', r => r.name],
  ['p50 ns', r => r.p50_ns.toLocaleString('en-US')],
  ['p99 ns', r => r.p99_ns.toLocaleString('en-US')],
  ['mean ns', r => r.mean_ns.toLocaleString('en-US')],
  ['±rme %', r => r.rme_pct.toFixed(2)],
  ['samples', r => r.samples.toLocaleString('en-US')]
]
const widths = cols.map(([h, f]) => Math.max(h.length, ...rows.map(r => f(r).length)))
const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ')
console.log(`\nnode ${process.version}\n`)
console.log(line(cols.map(([h]) => h)))
console.log(line(widths.map(w => '-'.repeat(w))))
for (const r of rows) console.log(line(cols.map(([, f]) => f(r))))

// How much of the authorize step is the WASM evaluation itself (the rest is toDecision's validation).
for (const size of ['small', 'large']) {
  const evalNs = rows.find(r => r.name === `policy evaluate (${size})`)!.p50_ns
  const authzNs = rows.find(r => r.name === `authorize = toDecision(evaluate) (${size})`)!.p50_ns
  console.log(`policy evaluate is ${((100 * evalNs) / authzNs).toFixed(1)}% of the authorize step (${size}, by p50)`)
}

if (jsonOut !== undefined) {
  await writeFile(jsonOut, JSON.stringify({ node: process.version, tasks: rows }, null, 2) + '\n')
  console.log(`wrote ${jsonOut}`)
}

if (mdOut !== undefined) {
  const command = 'npm run bench:micro'
  await writeFile(mdOut, `# Micro-benchmarks

Produced by \`${command}\` on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC, Node ${process.version}, one process,
no pinning (tinybench: 1 s per task after warm-up; the timer's own cost subtracted). Each step is timed
alone, without HTTP: see [RESULTS.md](RESULTS.md) for whole requests.

The authenticate rows are the whole authenticate step as the gateway runs it: *cached* is the usual
case (the token was verified before and is remembered, \`verifiedTokenCacheSeconds\`), *warm* checks
the signature every time with keys already imported, *cold* also reads and imports the JWKS (the
first request after a reload), and the public route without credentials shows what no
authentication costs, for scale.

| task | p50 ns | p99 ns | mean ns | ±rme % | samples |
|---|---:|---:|---:|---:|---:|
${rows.map(r => `| ${r.name} | ${r.p50_ns.toLocaleString('en-US')} | ${r.p99_ns.toLocaleString('en-US')} | ${r.mean_ns.toLocaleString('en-US')} | ${r.rme_pct.toFixed(2)} | ${r.samples.toLocaleString('en-US')} |`).join('\n')}

The assertion rows sign one gateway assertion as the forward stage does for each request (claims,
\`jti\`, method, path, body hash), with node:crypto's one-shot \`sign\` as the gateway does, and the
same claims through jose's \`SignJWT\` (WebCrypto) beside it; \`npm run bench:credentials\` shows the
cost on whole requests. The *caches cold* rows touch 8 MiB before each run, as a request's own work
does between two signatures in the gateway: one signature then costs two and a half warm ones,
and eight in a row, as the gateway signs the assertions of one event-loop turn, little more than eight
warm ones (src/pipeline/forward/credentials/turn-batch.ts).
`)
  console.log(`wrote ${mdOut}`)
}
