import { readFile, writeFile } from 'node:fs/promises'
import { cpus, loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { cpuSeconds, rssMiB, start, stopAll, waitForPort, type Proc } from './lib/procs.js'
import { runWrk } from './lib/load.js'
import { median, spread, type Sample } from './lib/report.js'
import { GATEWAY_NODE_ARGS, prepare } from './lib/setup.js'
import { LOAD_CPU, SUT_CPU } from './lib/stack.js'
import { pinned, resolveTools, versionOf } from './lib/tools.js'

/*
 * npm run bench:ratelimit: what the rate-limit stage costs, in one run. The same full pipeline with
 * no limit, the in-memory store, and the Redis store (fixed window and GCRA), next to the bare proxy,
 * against the same mTLS upstream; interleaved rounds, medians with min-max. Redis runs on the load
 * generator's CPU, as it would on its own host: the figures are the gateway's cost of asking it.
 * Writes bench/RATELIMIT.md and bench/ratelimit.json. Own ports (18470-18489), own work folder.
 */

const HERE = fileURLToPath(new URL('.', import.meta.url))
const { values: opts } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    duration: { type: 'string', default: '3' },
    connections: { type: 'string', default: '50' }
  }
})
const ROUNDS = Number(opts.rounds)
const SECONDS = Number(opts.duration)
const CONNECTIONS = Number(opts.connections)
const command = `npm run bench:ratelimit -- --rounds ${ROUNDS} --duration ${SECONDS} --connections ${CONNECTIONS}`
const P = { upstream: 18470, bare: 18471, redis: 18479 }
const NEVER = 1_000_000_000 // counted on every request, never reached

interface Variant { id: string, label: string, port: number, rateLimit: string }
const VARIANTS: Variant[] = [
  { id: 'none', label: 'no rate limit', port: 18472, rateLimit: '{}' },
  { id: 'memory', label: 'memory store, fixed window', port: 18473, rateLimit: `{ default: { max: ${NEVER}, windowSeconds: 60 } }` },
  { id: 'redis', label: 'Redis store, fixed window', port: 18474, rateLimit: `{ default: { max: ${NEVER}, windowSeconds: 60 }, store: { type: redis, url: "redis://127.0.0.1:${P.redis}", commandTimeoutMs: 2000 } }` },
  { id: 'redis-gcra', label: 'Redis store, GCRA', port: 18475, rateLimit: `{ default: { max: ${NEVER}, windowSeconds: 60, algorithm: gcra }, store: { type: redis, url: "redis://127.0.0.1:${P.redis}", commandTimeoutMs: 2000 } }` }
]

const dir = `${HERE}.work-ratelimit`
const work = await prepare(dir)
const tools = await resolveTools()
const log = (m: string): void => { process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`) }

const config = (v: Variant): string => `listen: { host: 127.0.0.1, port: ${v.port}, tls: { cert: gateway.crt, key: gateway.key } }
admin: { host: 127.0.0.1, port: ${v.port + 10} }
logging: { level: info }
issuers:
  - { id: es, issuer: "https://es256.bench.test", audiences: [bench], algorithms: [ES256], jwks: { file: es256.jwks.json } }
policy: { bundle: ../../build/bundle.tar.gz }
rateLimit: ${v.rateLimit}
upstreams:
  - { id: fn, url: "https://127.0.0.1:${P.upstream}", tls: { ca: ca.crt, cert: client.crt, key: client.key, servername: localhost } }
routes:
  - { id: hello, prefix: /hello, methods: [GET], upstream: fn }
`
await writeFile(`${dir}/nginx-rl-upstream.conf`, (await readFile(`${dir}/nginx-upstream.conf`, 'utf8'))
  .replaceAll('nginx-upstream', 'nginx-rl-upstream').replace(/listen 127\.0\.0\.1:\d+/, `listen 127.0.0.1:${P.upstream}`))
for (const v of VARIANTS) await writeFile(`${dir}/portcullis-${v.id}.yaml`, config(v))

const procs: Record<string, Proc> = {
  upstream: start('nginx-rl-upstream', pinned(tools, LOAD_CPU, [tools.nginx, '-c', `${dir}/nginx-rl-upstream.conf`, '-p', dir, '-e', `${dir}/nginx-rl-upstream.log`])),
  redisServer: start('redis', pinned(tools, LOAD_CPU, ['redis-server', '--port', String(P.redis), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'])),
  bare: start('bare-proxy', pinned(tools, SUT_CPU, [process.execPath, '--import', 'tsx', `${HERE}servers/bare-proxy.ts`, String(P.bare), `https://127.0.0.1:${P.upstream}`, dir]))
}
for (const v of VARIANTS) procs[v.id] = start(`portcullis-${v.id}`, pinned(tools, SUT_CPU, [process.execPath, ...GATEWAY_NODE_ARGS, `${HERE}../dist/cli.js`, 'start', '-c', `${dir}/portcullis-${v.id}.yaml`]))

try {
  // Five Node processes start on one core at once: give them time.
  for (const port of [P.upstream, P.redis, P.bare, ...VARIANTS.map(v => v.port)]) await waitForPort(port, 90_000)
  const auth = { authorization: `Bearer ${work.tokens.es256}` }
  const scenarios = [
    { id: 'bare', label: 'Fastify + reply-from (bare proxy)', url: `https://127.0.0.1:${P.bare}/hello`, headers: {} },
    ...VARIANTS.map(v => ({ id: v.id, label: `Portcullis, ${v.label}`, url: `https://127.0.0.1:${v.port}/hello`, headers: auth }))
  ]
  for (const s of scenarios) await runWrk(tools, LOAD_CPU, s.url, s.headers, 1, CONNECTIONS) // warm-up
  const samples = new Map<string, Sample[]>(scenarios.map(s => [s.id, []]))
  for (let round = 1; round <= ROUNDS; round++) {
    for (const s of scenarios) {
      const before = cpuSeconds(procs[s.id]!.pids())
      const r = await runWrk(tools, LOAD_CPU, s.url, s.headers, SECONDS, CONNECTIONS)
      const cpu = cpuSeconds(procs[s.id]!.pids()) - before
      samples.get(s.id)!.push({ rps: r.rps, p50_us: r.p50_us, p99_us: r.p99_us, p999_us: r.p999_us, cpu_us_per_req: cpu * 1e6 / r.requests, errors: r.errors + r.non2xx })
      log(`round ${round}/${ROUNDS} ${s.id}: ${Math.round(r.rps)} req/s, p99 ${r.p99_us} us, errors ${r.errors + r.non2xx}`)
    }
  }
  const rps = (id: string): number => median(samples.get(id)!.map(x => x.rps))
  const rows = scenarios.map(s => {
    const xs = samples.get(s.id)!
    const x = (f: (x: Sample) => number, d = 0): string => spread(xs.map(f), d)
    return `| ${s.label} | ${x(v => v.rps)} | ${x(v => v.p50_us / 1000, 2)} | ${x(v => v.p99_us / 1000, 2)} | ${x(v => v.cpu_us_per_req)} | ${rssMiB(procs[s.id]!.pids()).toFixed(0)} | ${(rps(s.id) / rps('none')).toFixed(2)} | ${(rps(s.id) / rps('bare')).toFixed(2)} | ${xs.reduce((a, v) => a + v.errors, 0)} |`
  })
  const md = `# Rate-limit stage: cost of each store

Produced by \`${command}\` on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC. Method as in
[README.md](README.md): wrk (1 thread, ${CONNECTIONS} keep-alive connections, TLS) and the shared mTLS nginx
upstream on CPU ${LOAD_CPU}, the system under test alone on CPU ${SUT_CPU}, ${ROUNDS} interleaved rounds of ${SECONDS} s after a
1 s warm-up each; medians with (min–max). Every Portcullis variant runs the full pipeline (ES256 token,
demo policy, mTLS forwarding, access log at info); the limit (${NEVER.toLocaleString('en-US')} per minute) is checked
on every request and never reached. Redis (${await versionOf('redis-server', ['--version'])}) runs on CPU ${LOAD_CPU}, like a
Redis on its own host, so its own CPU time is not counted: the rows show what asking it costs the gateway.
The Redis variants use \`commandTimeoutMs: 2000\`: this measures the cost of asking, not the fault path (on a loaded
machine the default 200 ms turns event-loop stalls into store errors).

| scenario | requests/s | p50 ms | p99 ms | CPU µs/req | RSS MiB | × no limit | × bare | errors |
|---|---|---|---|---|---|---|---|---|
${rows.join('\n')}

Short runs on a shared machine: read the ratios, not the absolute numbers. Load average at the end of the run:
${loadavg().map(x => x.toFixed(1)).join(', ')} on ${cpus().length} CPUs; far above the CPU count, other work shared the cores and the figures are noise.
Raw samples: [ratelimit.json](ratelimit.json).
`
  await writeFile(`${HERE}RATELIMIT.md`, md)
  await writeFile(`${HERE}ratelimit.json`, JSON.stringify({ command, date: new Date().toISOString(), samples: Object.fromEntries(samples) }, null, 2) + '\n')
  log('wrote bench/RATELIMIT.md and bench/ratelimit.json')
} finally {
  await stopAll(Object.values(procs))
}
