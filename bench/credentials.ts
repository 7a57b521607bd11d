/*
 * npm run bench:credentials: what attaching a credential for the function costs per request, next to
 * a plain forward, in one run on one gateway process. The same Portcullis (full pipeline, ES256
 * token, mTLS to the nginx upstream) serves three routes that differ only in what they attach:
 *
 *   /hello          nothing (the plain forward)
 *   /hello/signed   the gateway assertion (ES256 JWT minted per request)
 *   /hello/sigv4    AWS SigV4 (static credentials from the environment; nginx does not check them)
 *
 * Rounds are interleaved (A B C, A B C, ...) and medians reported, with per-operation costs of the
 * signers alone (tinybench, in this process) beside them. Whole load stays under ~20 s by default.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { cpus, loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { Bench } from 'tinybench'
import { Agent, request } from 'undici'
import { buildBundle } from '../scripts/opa.mjs'
import { createAssertionMinter } from '../src/pipeline/forward/credentials/assertion.js'
import { createAwsSigner } from '../src/pipeline/forward/credentials/aws-sigv4.js'
import { createKeyRing } from '../src/pipeline/forward/credentials/signing-keys.js'
import type { AssertionConfig } from '../src/config/schema.js'
import { runWrk, type WrkResult } from './lib/load.js'
import { start, stopAll, waitForPort, cpuSeconds } from './lib/procs.js'
import { median, spread } from './lib/report.js'
import { GATEWAY_NODE_ARGS, PORTS, prepare, RATE_LIMIT_MAX } from './lib/setup.js'
import { LOAD_CPU, SUT_CPU } from './lib/stack.js'
import { pinned, resolveTools } from './lib/tools.js'

const HERE = fileURLToPath(new URL('.', import.meta.url))
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const { values: opts } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, duration: { type: 'string', default: '2' }, connections: { type: 'string', default: '20' } } })
const ROUNDS = Number(opts.rounds)
const SECONDS = Number(opts.duration)
const CONNECTIONS = Number(opts.connections)
const AWS_ENV = { AWS_ACCESS_KEY_ID: 'AKIDBENCH', AWS_SECRET_ACCESS_KEY: 'bench-secret', AWS_EC2_METADATA_DISABLED: 'true' }

const dir = `${HERE}.work`
const tools = await resolveTools()
const work = await prepare(dir)
// The demo policy names its routes; this one allows any verified caller on all three alike.
await mkdir(`${dir}/credentials-policy/gateway`, { recursive: true })
await writeFile(`${dir}/credentials-policy/gateway/authz.rego`, `package gateway.authz

default decision := {"allow": false}

decision := {"allow": true, "reasons": ["bench.verified"]} if input.principal.type == "jwt"
`)
await buildBundle({ policiesDir: `${dir}/credentials-policy`, out: `${dir}/credentials-bundle.tar.gz`, force: true })
await writeFile(`${dir}/portcullis-credentials.yaml`, `# bench:credentials: one gateway, three routes that differ only in the credential attached.
listen: { host: 127.0.0.1, port: ${PORTS.portcullis}, tls: { cert: gateway.crt, key: gateway.key } }
admin: { host: 127.0.0.1, port: ${PORTS.portcullisAdmin} }
logging: { level: info }
issuers:
  - { id: es, issuer: "https://es256.bench.test", audiences: [bench], algorithms: [ES256], jwks: { file: es256.jwks.json } }
policy: { bundle: credentials-bundle.tar.gz }
rateLimit: { default: { max: ${RATE_LIMIT_MAX}, windowSeconds: 60 } }
upstreams:
  - id: fn
    url: https://127.0.0.1:${PORTS.upstream}
    tls: { ca: ca.crt, cert: client.crt, key: client.key, servername: localhost }
    credentials: { assertion: {}, awsSigV4: { region: eu-west-1 } }
routes:
  - { id: plain, prefix: /hello, methods: [GET], upstream: fn, credentials: [] }
  - { id: signed, prefix: /hello/signed, methods: [GET], upstream: fn, credentials: [assertion] }
  - { id: sigv4, prefix: /hello/sigv4, methods: [GET], upstream: fn, credentials: [aws-sigv4] }
`)
const upstream = start('nginx-upstream', pinned(tools, LOAD_CPU, [tools.nginx, '-c', `${dir}/nginx-upstream.conf`, '-p', dir, '-e', `${dir}/nginx-upstream.log`]))
const gateway = start('portcullis', pinned(tools, SUT_CPU, [process.execPath, ...GATEWAY_NODE_ARGS, `${ROOT}dist/cli.js`, 'start', '-c', `${dir}/portcullis-credentials.yaml`]), AWS_ENV)
const log = (m: string): void => { process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`) }
const scenarios = [
  { id: 'plain', label: 'plain forward', path: '/hello' },
  { id: 'assertion', label: 'with gateway assertion (ES256)', path: '/hello/signed' },
  { id: 'sigv4', label: 'with AWS SigV4', path: '/hello/sigv4' }
]
const headers = { authorization: `Bearer ${work.tokens.es256}` }
const samples = new Map<string, Array<WrkResult & { cpu_us: number }>>(scenarios.map(s => [s.id, []]))
try {
  await waitForPort(PORTS.upstream)
  await waitForPort(PORTS.portcullis)
  const dispatcher = new Agent({ connect: { ca: await readFile(`${dir}/ca.crt`, 'utf8') } })
  for (const s of scenarios) {
    const res = await request(`https://127.0.0.1:${PORTS.portcullis}${s.path}`, { headers, dispatcher })
    await res.body.text()
    if (res.statusCode !== 200) throw new Error(`${s.path} answered ${res.statusCode}`)
  }
  await dispatcher.close()
  for (const s of scenarios) await runWrk(tools, LOAD_CPU, `https://127.0.0.1:${PORTS.portcullis}${s.path}`, headers, 1, CONNECTIONS)
  for (let round = 1; round <= ROUNDS; round++) {
    for (const s of scenarios) {
      const before = cpuSeconds(gateway.pids())
      const r = await runWrk(tools, LOAD_CPU, `https://127.0.0.1:${PORTS.portcullis}${s.path}`, headers, SECONDS, CONNECTIONS)
      samples.get(s.id)!.push({ ...r, cpu_us: (cpuSeconds(gateway.pids()) - before) * 1e6 / r.requests })
      log(`round ${round}/${ROUNDS} ${s.id}: ${Math.round(r.rps)} req/s, p99 ${r.p99_us} us, errors ${r.errors + r.non2xx}`)
    }
  }
} finally {
  await stopAll([gateway, upstream])
}

// The signers alone, per call.
const config: AssertionConfig = { issuer: 'bench', algorithm: 'ES256', header: 'x-portcullis-assertion', ttlSeconds: 60, claims: [], rotateAfterSeconds: 86_400, publishAheadSeconds: 300 }
const principal = { type: 'jwt' as const, issuerId: 'es', issuer: 'https://es256.bench.test', subject: 'bench-user', claims: { roles: ['reader'] }, certificate: null }
const micro = new Bench({ time: 500, warmupTime: 100, throws: true })
for (const algorithm of ['ES256', 'EdDSA'] as const) {
  const mint = createAssertionMinter({ ...config, algorithm }, await createKeyRing({ config: { ...config, algorithm }, timer: false }))
  micro.add(`mint assertion ${algorithm}`, async () => { await mint({ principal, audience: 'https://fn', method: 'GET', path: '/hello', requestId: 'r' }) })
}
const sign = createAwsSigner({ region: 'eu-west-1', service: 'lambda', credentials: async () => ({ accessKeyId: 'AKIDBENCH', secretAccessKey: 'bench-secret' }) })
const kib = Buffer.alloc(1024, 1)
micro.add('SigV4 sign, 1 KiB body', async () => { await sign({ method: 'POST', host: 'fn.lambda-url.eu-west-1.on.aws', target: '/hello?a=1', body: kib }) })
await micro.run()

const rps = (id: string): number => median(samples.get(id)!.map(x => x.rps))
const row = (s: typeof scenarios[number]): string => {
  const xs = samples.get(s.id)!
  return `| ${s.label} | ${spread(xs.map(x => x.rps))} | ${(rps(s.id) / rps('plain')).toFixed(3)} | ` +
    `${median(xs.map(x => x.p50_us))} | ${median(xs.map(x => x.p99_us))} | ${median(xs.map(x => x.cpu_us)).toFixed(0)} | ${xs.reduce((n, x) => n + x.errors + x.non2xx, 0)} |`
}
const md = `# Credentials: cost per request

\`npm run bench:credentials -- --rounds ${ROUNDS} --duration ${SECONDS} --connections ${CONNECTIONS}\` on ${new Date().toISOString().slice(0, 10)};
one Portcullis process pinned to CPU ${SUT_CPU}, wrk and the mTLS nginx upstream on CPU ${LOAD_CPU}; ${ROUNDS} interleaved rounds
of ${SECONDS} s each, medians (min–max). Same gateway, same upstream, same token; only the credential differs.
Machine: ${cpus().length} CPUs, load average ${loadavg().map(x => x.toFixed(1)).join(' / ')} when the run ended (other work
running alongside makes every figure noisier; compare the rows, not the absolute numbers).

| route | req/s | × plain | p50 µs | p99 µs | gateway CPU µs/req | errors |
|---|---|---|---|---|---|---|
${scenarios.map(row).join('\n')}

Signers alone (tinybench, one call at a time, in the benchmark process):

| operation | mean µs | p99 µs |
|---|---|---|
${micro.tasks.map(t => `| ${t.name} | ${((t.result as any).latency.mean * 1000).toFixed(1)} | ${((t.result as any).latency.p99 * 1000).toFixed(1)} |`).join('\n')}
`
await writeFile(`${HERE}CREDENTIALS.md`, md)
await writeFile(`${HERE}credentials.json`, JSON.stringify({ rounds: ROUNDS, seconds: SECONDS, connections: CONNECTIONS, samples: Object.fromEntries(samples) }, null, 2) + '\n')
process.stdout.write(md)
