import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { parseArgs } from 'node:util'
import { DEFAULT_BUNDLE } from '../scripts/opa.mjs'
import { alone, cpuSeconds, rssMiB, stopAll, type Proc } from './lib/procs.js'
import { probeOnce, runVegeta, runWrk, type RateResult } from './lib/load.js'
import { planFixedRates, rateKey } from './lib/fixed-rate.js'
import { chartSvg, median, type Sample, type ScenarioResult } from './lib/report.js'
import { resultsMarkdown, type Authz } from './lib/results-md.js'
import { LOAD_CPU, SUT_CPU, startOpaServer, startStack } from './lib/stack.js'
import { pinned } from './lib/tools.js'
import { addShadowScenario } from './lib/shadow.js'
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
    // Rounds of the fixed-rate (open loop) runs; each run is --duration plus 8 s left out as warm-up.
    'rate-rounds': { type: 'string', default: '3' },
    // Another checkout of the gateway (with dist/ built) measured beside this one: before and after a change.
    baseline: { type: 'string' }
  }
})
const ROUNDS = Number(opts.rounds)
const SECONDS = Number(opts.duration)
const CONNECTIONS = Number(opts.connections)
const RATE_ROUNDS = Number(opts['rate-rounds'])
const command = `npm run bench -- --rounds ${ROUNDS} --duration ${SECONDS} --connections ${CONNECTIONS} --rate-rounds ${RATE_ROUNDS}${opts.baseline !== undefined ? ` --baseline ${opts.baseline}` : ''}`

const stack = await startStack(`${HERE}.work`, opts.baseline !== undefined ? { baseline: opts.baseline } : {})
const { tools } = stack
// Scenario 4s, the shadow policy on every request (bench/lib/shadow.ts): in the same rounds as the others.
await addShadowScenario(stack).catch(async (err: unknown) => { await stack.stop(); throw err })
const log = (m: string): void => { process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`) }
// Every load runs with the other systems under test stopped (procs.ts alone: why).
const systems = [...new Set([...stack.scenarios.map(s => s.proc), stack.h2.proc])]
const only = <T>(proc: Proc, measure: () => Promise<T>): Promise<T> => alone(systems.filter(p => p !== proc), measure)
try {
  // Saturation, closed loop (wrk).
  // HTTP/2 (issue #21): h2load against the ES256 scenario's config and route, in the same rounds.
  const h2load = await findH2load()
  const h2Target = stack.h2
  if (h2load === null) log('h2load not installed (Debian: nghttp2-client): the HTTP/2 scenario is left out')
  // Warm-up: JIT, pools, TLS sessions.
  for (const s of stack.scenarios) await only(s.proc, () => runWrk(tools, LOAD_CPU, s.url, s.headers, 3, CONNECTIONS))
  if (h2load !== null) await only(h2Target.proc, () => runH2load(h2load, tools, LOAD_CPU, h2Target, 3, CONNECTIONS))
  const samples = new Map<string, Sample[]>(stack.scenarios.map(s => [s.id, []]))
  if (h2load !== null) samples.set(H2_SCENARIO.id, [])
  // CPU time of the system under test over wall time: how many cores it used.
  const cores = new Map<string, number[]>(stack.scenarios.map(s => [s.id, []]))
  // Resident memory at the end of each measured run, under that run's load (median reported).
  const rss = new Map<string, number[]>([...stack.scenarios.map(s => [s.id, []] as [string, number[]]), [H2_SCENARIO.id, []]])
  for (let round = 1; round <= ROUNDS; round++) {
    if (h2load !== null) {
      const r = await only(h2Target.proc, async () => {
        await runH2load(h2load, tools, LOAD_CPU, h2Target, 1, CONNECTIONS) // unmeasured, as below
        const r = await runH2load(h2load, tools, LOAD_CPU, h2Target, SECONDS, CONNECTIONS)
        rss.get(H2_SCENARIO.id)!.push(rssMiB(h2Target.proc.pids()))
        return r
      })
      samples.get(H2_SCENARIO.id)!.push(r)
      log(`round ${round}/${ROUNDS} ${H2_SCENARIO.id}: ${Math.round(r.rps)} req/s, p99 ${r.p99_us} us, errors ${r.errors}`)
    }
    // A B C ... in odd rounds, ... C B A in even ones: the first scenario measured on a process just
    // resumed (4's two tokens share one) measured lower in every run, warm second or not, so neither
    // token is always first, and drift over a round hits both ends alike.
    for (const s of round % 2 === 1 ? stack.scenarios : [...stack.scenarios].reverse()) {
      const { r, cpu, failed } = await only(s.proc, async () => {
        // Just resumed after the others' runs (SIGCONT): a second of load first, unmeasured.
        await runWrk(tools, LOAD_CPU, s.url, s.headers, 1, CONNECTIONS)
        const before = cpuSeconds(s.proc.pids())
        const r = await runWrk(tools, LOAD_CPU, s.url, s.headers, SECONDS, CONNECTIONS)
        const cpu = cpuSeconds(s.proc.pids()) - before
        rss.get(s.id)!.push(rssMiB(s.proc.pids()))
        const failed = r.errors + r.non2xx === 0 ? undefined : `${r.errors} socket errors, ${r.non2xx} non-2xx; one request after the run got ${await probeOnce(s.url, s.headers)}`
        return { r, cpu, failed }
      })
      samples.get(s.id)!.push({ rps: r.rps, p50_us: r.p50_us, p99_us: r.p99_us, p999_us: r.p999_us, cpu_us_per_req: cpu * 1e6 / r.requests, errors: r.errors + r.non2xx, ...(failed === undefined ? {} : { failure: failed }) })
      cores.get(s.id)!.push(cpu * r.rps / r.requests)
      log(`round ${round}/${ROUNDS} ${s.id}: ${Math.round(r.rps)} req/s, p99 ${r.p99_us} us, errors ${r.errors + r.non2xx}${failed === undefined ? '' : ` (${failed})`}`)
    }
  }
  const results: ScenarioResult[] = stack.scenarios.map(s => ({ id: s.id, label: s.label, samples: samples.get(s.id)!, rss_mib: median(rss.get(s.id)!) }))
  if (samples.has(H2_SCENARIO.id)) results.push({ ...H2_SCENARIO, samples: samples.get(H2_SCENARIO.id)!, rss_mib: median(rss.get(H2_SCENARIO.id)!) })

  // Added latency, open loop (vegeta): each gateway at half its own saturation with the bare proxy at
  // the same rate, and every scenario at one common rate (lib/fixed-rate.ts).
  const plan = planFixedRates(stack.scenarios, id => median(samples.get(id)!.map(x => x.rps)))
  const fixed = new Map<string, RateResult[]>()
  for (let round = 1; round <= RATE_ROUNDS; round++) {
    for (const job of plan.jobs) {
      const s = stack.scenarios.find(x => x.id === job.id)!
      const r = await only(s.proc, () => runVegeta(tools, LOAD_CPU, s.url, s.headers, job.rate, SECONDS))
      fixed.set(rateKey(job.id, job.rate), [...(fixed.get(rateKey(job.id, job.rate)) ?? []), r])
      log(`fixed rate ${job.rate}/s round ${round}/${RATE_ROUNDS} ${s.id}: p50 ${r.p50_us.toFixed(0)} us, p99 ${r.p99_us.toFixed(0)} us, success ${r.success}${r.failures.length > 0 ? ` (${r.failures.join('; ')})` : ''}`)
    }
  }

  // Scenario 6: authorization alone, in-process WASM versus an OPA sidecar over HTTP.
  await stack.stop() // free CPU 1 for the OPA server
  const opa = await startOpaServer(tools, `${HERE}.work`)
  const probe = async (cpu: number, args: string[]): Promise<{ p50_us: number, p99_us: number }> => {
    const cmd = pinned(tools, cpu, [process.execPath, '--import', 'tsx', `${HERE}lib/authz-probe.ts`, ...args])
    const { stdout } = await run(cmd[0]!, cmd.slice(1))
    return JSON.parse(stdout) as { p50_us: number, p99_us: number }
  }
  const authz: Authz = { inproc: [], sidecar: [] }
  for (let round = 1; round <= 3; round++) {
    authz.inproc.push(await probe(SUT_CPU, ['inproc', DEFAULT_BUNDLE]))
    authz.sidecar.push(await probe(LOAD_CPU, ['sidecar', opa.url]))
    log(`authz round ${round}/3: in-process p50 ${authz.inproc.at(-1)!.p50_us.toFixed(1)} us, sidecar p50 ${authz.sidecar.at(-1)!.p50_us.toFixed(1)} us`)
  }
  await stopAll([opa.proc])

  const meta = { command, connections: CONNECTIONS, seconds: SECONDS, rounds: ROUNDS, rateRounds: RATE_ROUNDS }
  await writeFile(`${HERE}RESULTS.md`, await resultsMarkdown({ run: meta, scenarios: stack.scenarios, results, cores, plan, fixed, authz, tools }))
  await writeFile(`${HERE}results.svg`, chartSvg(results))
  await writeFile(`${HERE}results.json`, JSON.stringify({
    command,
    date: new Date().toISOString(),
    results,
    cores: Object.fromEntries(cores),
    fixedRate: { own: Object.fromEntries(plan.own), common: plan.common, runs: Object.fromEntries(fixed) },
    authz
  }, null, 2) + '\n')
  log('wrote bench/RESULTS.md, bench/results.svg, bench/results.json')
} finally {
  await stack.stop()
}
