import { execFile } from 'node:child_process'
import { cpus, release, totalmem } from 'node:os'
import { readFile, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { parseArgs } from 'node:util'
import { DEFAULT_BUNDLE, OPA_VERSION } from '../scripts/opa.mjs'
import { cpuSeconds, rssMiB, stopAll } from './lib/procs.js'
import { runVegeta, runWrk, type RateResult } from './lib/load.js'
import { chartSvg, median, spread, type Sample, type ScenarioResult } from './lib/report.js'
import { LOAD_CPU, SUT_CPU, startOpaServer, startStack, type Scenario } from './lib/stack.js'
import { pinned, versionOf, VEGETA_VERSION } from './lib/tools.js'
import { findH2load, H2_SCENARIO, runH2load } from './lib/h2.js'

/*
 * npm run bench: every scenario against the same mTLS upstream in one run, interleaved (A B C ... A B
 * C ...) so that drift on a noisy machine hits them all alike; medians of the rounds are reported with
 * their min-max. Writes bench/RESULTS.md, bench/results.svg and bench/results.json.
 */

const run = promisify(execFile)
const HERE = fileURLToPath(new URL('.', import.meta.url))
const { values: opts } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    duration: { type: 'string', default: '8' },
    connections: { type: 'string', default: '50' },
    // Another checkout of the gateway (with dist/ built) measured beside this one: before and after a change.
    baseline: { type: 'string' }
  }
})
const ROUNDS = Number(opts.rounds)
const SECONDS = Number(opts.duration)
const CONNECTIONS = Number(opts.connections)
const command = `npm run bench -- --rounds ${ROUNDS} --duration ${SECONDS} --connections ${CONNECTIONS}${opts.baseline !== undefined ? ` --baseline ${opts.baseline}` : ''}`

const stack = await startStack(`${HERE}.work`, opts.baseline !== undefined ? { baseline: opts.baseline } : {})
const { tools } = stack
const log = (m: string): void => { process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`) }
try {
  // Saturation, closed loop (wrk).
  for (const s of stack.scenarios) await runWrk(tools, LOAD_CPU, s.url, s.headers, 3, CONNECTIONS) // warm-up: JIT, pools, TLS sessions
  const samples = new Map<string, Sample[]>(stack.scenarios.map(s => [s.id, []]))
  // HTTP/2 (issue #21): h2load against the ES256 scenario's process and route, in the same rounds.
  const h2load = await findH2load()
  const h2Target = stack.scenarios.find(s => s.id === 'portcullis-es256')!
  if (h2load === null) log('h2load not installed (Debian: nghttp2-client): the HTTP/2 scenario is left out')
  else samples.set(H2_SCENARIO.id, [])
  for (let round = 1; round <= ROUNDS; round++) {
    if (h2load !== null) {
      const r = await runH2load(h2load, tools, LOAD_CPU, h2Target, SECONDS, CONNECTIONS)
      samples.get(H2_SCENARIO.id)!.push(r)
      log(`round ${round}/${ROUNDS} ${H2_SCENARIO.id}: ${Math.round(r.rps)} req/s, p99 ${r.p99_us} us, errors ${r.errors}`)
    }
    for (const s of stack.scenarios) {
      const before = cpuSeconds(s.proc.pids())
      const r = await runWrk(tools, LOAD_CPU, s.url, s.headers, SECONDS, CONNECTIONS)
      const cpu = cpuSeconds(s.proc.pids()) - before
      samples.get(s.id)!.push({ rps: r.rps, p50_us: r.p50_us, p99_us: r.p99_us, p999_us: r.p999_us, cpu_us_per_req: cpu * 1e6 / r.requests, errors: r.errors + r.non2xx })
      log(`round ${round}/${ROUNDS} ${s.id}: ${Math.round(r.rps)} req/s, p99 ${r.p99_us} us, errors ${r.errors + r.non2xx}`)
    }
  }
  const results: ScenarioResult[] = stack.scenarios.map(s => ({ id: s.id, label: s.label, samples: samples.get(s.id)!, rss_mib: rssMiB(s.proc.pids()) }))
  if (samples.has(H2_SCENARIO.id)) results.push({ ...H2_SCENARIO, samples: samples.get(H2_SCENARIO.id)!, rss_mib: rssMiB(h2Target.proc.pids()) })
  const rpsOf = (id: string): number => median(samples.get(id)!.map(x => x.rps))

  // Added latency at half the bare proxy's saturation rate, open loop (vegeta).
  const rate = Math.round(rpsOf('bare') * 0.5)
  const fixed = new Map<string, RateResult[]>()
  // direct shows the noise floor of the load generator and the machine at this rate.
  const atRate = stack.scenarios.filter(s => ['direct', 'bare', 'portcullis-rs256', 'portcullis-es256'].includes(s.id))
  for (let round = 1; round <= 3; round++) {
    for (const s of atRate) {
      const r = await runVegeta(tools, LOAD_CPU, s.url, s.headers, rate, SECONDS)
      fixed.set(s.id, [...(fixed.get(s.id) ?? []), r])
      log(`fixed rate ${rate}/s round ${round}/3 ${s.id}: p50 ${r.p50_us.toFixed(0)} us, p99 ${r.p99_us.toFixed(0)} us, success ${r.success}`)
    }
  }

  // Scenario 6: authorization alone, in-process WASM versus an OPA sidecar over HTTP.
  await stopAll(Object.values(stack.procs)) // free CPU 1 for the OPA server
  const opa = await startOpaServer(tools, `${HERE}.work`)
  const probe = async (cpu: number, args: string[]): Promise<{ p50_us: number, p99_us: number }> => {
    const cmd = pinned(tools, cpu, [process.execPath, '--import', 'tsx', `${HERE}lib/authz-probe.ts`, ...args])
    const { stdout } = await run(cmd[0]!, cmd.slice(1))
    return JSON.parse(stdout) as { p50_us: number, p99_us: number }
  }
  const authz = { inproc: [] as Array<{ p50_us: number, p99_us: number }>, sidecar: [] as Array<{ p50_us: number, p99_us: number }> }
  for (let round = 1; round <= 3; round++) {
    authz.inproc.push(await probe(SUT_CPU, ['inproc', DEFAULT_BUNDLE]))
    authz.sidecar.push(await probe(LOAD_CPU, ['sidecar', opa.url]))
    log(`authz round ${round}/3: in-process p50 ${authz.inproc.at(-1)!.p50_us.toFixed(1)} us, sidecar p50 ${authz.sidecar.at(-1)!.p50_us.toFixed(1)} us`)
  }
  await stopAll([opa.proc])

  await writeReport(results, rate, fixed, authz)
} finally {
  await stack.stop()
}

async function writeReport (results: ScenarioResult[], rate: number, fixed: Map<string, RateResult[]>, authz: { inproc: Array<{ p50_us: number, p99_us: number }>, sidecar: Array<{ p50_us: number, p99_us: number }> }): Promise<void> {
  const med = (id: string, f: (s: Sample) => number): number => median(results.find(r => r.id === id)!.samples.map(f))
  const bareRps = med('bare', s => s.rps)
  const directRps = med('direct', s => s.rps)
  const pkg = async (name: string): Promise<string> => (JSON.parse(await readFile(`${HERE}../node_modules/${name}/package.json`, 'utf8')) as { version: string }).version
  const soak = await readFile(`${HERE}soak.json`, 'utf8').then(t => JSON.parse(t) as { flat: boolean, rss_start_mib: number, rss_end_mib: number, rss_max_mib: number, minutes: number }, () => null)

  const rows = results.map(r => {
    const x = (f: (s: Sample) => number, d = 0): string => spread(r.samples.map(f), d)
    const rps = median(r.samples.map(s => s.rps))
    const errors = r.samples.reduce((a, s) => a + s.errors, 0)
    return `| ${r.label} | ${x(s => s.rps)} | ${x(s => s.p50_us / 1000, 2)} | ${x(s => s.p99_us / 1000, 2)} | ${x(s => s.p999_us / 1000, 2)} | ${x(s => s.cpu_us_per_req)} | ${r.rss_mib.toFixed(0)} | ${(rps / bareRps).toFixed(2)} | ${(rps / directRps).toFixed(2)} | ${errors} |`
  })
  const fixedP99 = (id: string): number => median((fixed.get(id) ?? []).map(r => r.p99_us))
  const fixedRows = [...fixed.entries()].map(([id, rs]) =>
    `| ${results.find(r => r.id === id)!.label} | ${spread(rs.map(r => r.p50_us / 1000), 2)} | ${spread(rs.map(r => r.p99_us / 1000), 2)} | ${id.startsWith('portcullis') ? ((fixedP99(id) - fixedP99('bare')) / 1000).toFixed(2) : '—'} | ${Math.min(...rs.map(r => r.success)).toFixed(4)} |`)
  const inP50 = median(authz.inproc.map(a => a.p50_us))
  const sideP50 = median(authz.sidecar.map(a => a.p50_us))
  const pRss = results.find(r => r.id === 'portcullis-es256')!.rss_mib
  const bRss = results.find(r => r.id === 'bare')!.rss_mib
  const worstRatio = Math.min(med('portcullis-rs256', s => s.rps), med('portcullis-es256', s => s.rps)) / bareRps
  const worstAdded = Math.max(fixedP99('portcullis-rs256'), fixedP99('portcullis-es256')) - fixedP99('bare')
  const verdict = (ok: boolean): string => ok ? 'met' : '**missed**'
  const cpu = cpus()

  const md = `# Benchmark results

Produced by \`${command}\` on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC. Method and
scenarios: [README.md](README.md). Chart: [results.svg](results.svg). Raw numbers: [results.json](results.json).
Per-step costs (token verification, policy, path, headers): [MICRO.md](MICRO.md).

![throughput and p99 per scenario](results.svg)

## Targets

| target | measured | verdict |
|---|---|---|
| full pipeline throughput ≥ 0.8 × bare proxy | ${worstRatio.toFixed(2)} × (worse of RS256/ES256) | ${verdict(worstRatio >= 0.8)} |
| p99 added over bare proxy ≤ 1 ms at 50 % of its saturation (${rate} req/s) | ${(worstAdded / 1000).toFixed(2)} ms | ${verdict(worstAdded <= 1000)} |
| policy evaluation p50 ≤ 20 µs (demo policy) | ${inP50.toFixed(1)} µs | ${verdict(inP50 <= 20)} |
| in-process authorization ≥ 20 × lower latency than an OPA sidecar | ${(sideP50 / inP50).toFixed(1)} × | ${verdict(sideP50 / inP50 >= 20)} |
| RSS under load within 2 × bare proxy | ${(pRss / bRss).toFixed(2)} × (${pRss.toFixed(0)} vs ${bRss.toFixed(0)} MiB) | ${verdict(pRss / bRss <= 2)} |
| RSS flat over a 5-minute soak | ${soak === null ? 'not run (`npm run bench:soak`)' : `${soak.rss_start_mib.toFixed(0)} → ${soak.rss_end_mib.toFixed(0)} MiB (max ${soak.rss_max_mib.toFixed(0)}) over ${soak.minutes} min`} | ${soak === null ? '—' : verdict(soak.flat)} |

## Saturation (closed loop: wrk, 1 thread, ${CONNECTIONS} connections, ${SECONDS} s × ${ROUNDS} interleaved rounds)

Median of the rounds, (min–max). Latency in ms. CPU is user+system time of the system under test per
request. RSS is measured after the rounds (scenario 4 is one process serving both token types).

| scenario | requests/s | p50 | p99 | p99.9 | CPU µs/req | RSS MiB | × bare (2) | × direct (1) | errors |
|---|---|---|---|---|---|---|---|---|---|
${rows.join('\n')}
| 5 Portcullis, Redis store / --workers 2 | not yet: the Redis store and cluster mode do not exist yet | | | | | | | | |

## Added latency at a fixed rate (open loop: vegeta, ${rate} req/s = 50 % of scenario 2's saturation, ${SECONDS} s × 3 rounds)

The first 8 s of each run (a fresh load generator opening its connections, then catching up) are left out. Scenario 1 at the
same rate shows the noise floor of the load generator and the machine.

| scenario | p50 ms | p99 ms | p99 added over bare, ms | success ratio (min) |
|---|---|---|---|---|
${fixedRows.join('\n')}

## Authorization alone (scenario 6, one decision at a time, 3 rounds)

| where the policy runs | p50 µs | p99 µs |
|---|---|---|
| in-process WASM (\`@open-policy-agent/opa-wasm\`), 50 000 decisions | ${spread(authz.inproc.map(a => a.p50_us), 1)} | ${spread(authz.inproc.map(a => a.p99_us), 1)} |
| \`opa run --server\` sidecar over HTTP/1.1 keep-alive, 10 000 decisions | ${spread(authz.sidecar.map(a => a.p50_us), 1)} | ${spread(authz.sidecar.map(a => a.p99_us), 1)} |

## Machine and versions

- CPU: ${cpu[0]?.model ?? '?'}, ${cpu.length} cores; memory ${(totalmem() / 2 ** 30).toFixed(0)} GiB; Linux ${release()}
- Pinning: load generator and shared upstream on CPU ${LOAD_CPU}, system under test on CPU ${SUT_CPU} (taskset)
- Node ${process.version}; fastify ${await pkg('fastify')}; undici ${await pkg('undici')}; @fastify/reply-from ${await pkg('@fastify/reply-from')}; @open-policy-agent/opa-wasm ${await pkg('@open-policy-agent/opa-wasm')}; jose ${await pkg('jose')}
- ${await versionOf(tools.nginx, ['-v'])}; ${await versionOf(tools.wrk, ['-v'])}; vegeta ${VEGETA_VERSION}; OPA ${OPA_VERSION}
`
  await writeFile(`${HERE}RESULTS.md`, md)
  await writeFile(`${HERE}results.svg`, chartSvg(results))
  await writeFile(`${HERE}results.json`, JSON.stringify({ command, date: new Date().toISOString(), results, fixedRate: { rate, runs: Object.fromEntries(fixed) }, authz }, null, 2) + '\n')
  log('wrote bench/RESULTS.md, bench/results.svg, bench/results.json')
}
