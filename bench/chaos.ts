import { randomInt } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { createFaultRunner } from './lib/chaos-faults.js'
import { answerLine, readGatewayLogs, summary, writeReports, type RssSample } from './lib/chaos-report.js'
import { notReadyPeriods, startProbe, storeDownPeriods } from './lib/chaos-probe.js'
import { judge } from './lib/chaos-rules.js'
import { createRandom, describe, planFaults, QUIET_HEAD_S } from './lib/chaos-schedule.js'
import { ISSUER, startChaosStack, type ChaosStack } from './lib/chaos-stack.js'
import { driveTraffic } from './lib/chaos-traffic.js'
import { rssMiB } from './lib/procs.js'

/*
 * npm run chaos [-- --duration <s>] [--seed <n>] [--rate <req/s>]
 *
 * Issue #17's gate: mixed traffic at a moderate fixed rate against two gateway replicas (the real
 * CLI; one with --workers 2) while a seeded schedule kills, pauses and restarts the IdP, Redis, the
 * function and a worker, slows the IdP, rotates its keys and reloads the gateways. Every answer is
 * judged against the failure modes declared for the faults active at that moment
 * (bench/lib/chaos-rules.ts); any other answer is printed and makes the run exit 1. Writes
 * bench/CHAOS.md and bench/chaos.json. Loopback only; about three minutes with the defaults, plus the build.
 */

const HERE = fileURLToPath(new URL('.', import.meta.url))
const { values } = parseArgs({
  options: {
    duration: { type: 'string', default: '150' },
    seed: { type: 'string' },
    rate: { type: 'string', default: '100' }
  }
})
const durationS = Number(values.duration)
const rate = Number(values.rate)
const seed = values.seed !== undefined ? Number(values.seed) : randomInt(1, 2 ** 31)
if (!Number.isInteger(durationS) || durationS < 40) throw new Error('--duration must be an integer of at least 40 (seconds)')
if (!Number.isInteger(seed)) throw new Error('--seed must be an integer')
if (!(rate > 0 && rate <= 500)) throw new Error('--rate must be between 1 and 500 requests/s: this measures behaviour, not capacity')

const log = (line: string): void => { process.stderr.write(`${line}\n`) }

function rss (stack: ChaosStack): RssSample[] {
  return stack.replicas.flatMap(r => {
    const primary = r.proc.child.pid!
    const workers = r.proc.workers()
    return [
      { process: workers.length > 0 ? `${r.name} primary` : r.name, pid: primary, mib: rssMiB([primary]) },
      ...workers.map(pid => ({ process: `${r.name} worker`, pid, mib: rssMiB([pid]) }))
    ]
  })
}

// Fast enough to load keys, or slower than the fetch timeout (a fetch fails).
const plan = planFaults(seed, durationS, { fast: 800, timeout: ISSUER.fetchTimeoutMs + 500 })
log(`chaos: seed ${seed}, ${durationS} s at ${rate} req/s; schedule:`)
for (const f of plan) log(`  ${describe(f)}`)

const stack = await startChaosStack(`${HERE}.work-chaos`)
log(`chaos: stack up in ${stack.dir} (logs there); replicas ${stack.replicas.map(r => `${r.name} ${r.url}`).join(', ')}`)
let exitCode = 1
try {
  const random = createRandom(seed ^ 0x5eed)
  const t0 = Date.now()
  const faults = createFaultRunner(stack, t0, random)
  let before: RssSample[] = []
  const measured = new Promise<void>(resolve => setTimeout(() => { before = rss(stack); resolve() }, (QUIET_HEAD_S - 2) * 1000))
  const probe = startProbe(stack.replicas, t0)
  const progress = setInterval(() => log(`chaos: ${Math.round((Date.now() - t0) / 1000)} s`), 10_000)
  const [traffic] = await Promise.all([
    driveTraffic({ replicas: stack.replicas, caPem: stack.caPem, issuer: stack.issuer, signing: faults.signing, random, rate, durationMs: durationS * 1000, t0 }),
    faults.play(plan, log),
    measured
  ])
  clearInterval(progress)
  const probes = await probe.stop()
  const after = rss(stack)

  const logs = await Promise.all(stack.replicas.map(async r => ({ replica: r.name, text: await readFile(`${stack.dir}/gateway-${r.name}.log`, 'utf8'), t0 })))
  const judged = traffic.answers.sort((a, b) => a.t0 - b.t0).map(answer => ({ answer, judgement: judge(answer, faults.episodes, probes) }))
  const run = {
    command: `npm run chaos -- --duration ${durationS} --seed ${seed} --rate ${rate}`,
    seed,
    durationS,
    rate,
    date: new Date().toISOString(),
    plan,
    episodes: faults.episodes,
    judged,
    skipped: traffic.skipped,
    rss: { before, after },
    ...readGatewayLogs(logs),
    notReady: notReadyPeriods(probes),
    storeDown: storeDownPeriods(probes)
  }
  const s = summary(run)
  for (const j of s.outside) process.stdout.write(`${answerLine(j.answer, j.judgement)}\n`)
  process.stdout.write(`\n${s.answers} answers: ${Object.entries(s.byVerdict).map(([k, v]) => `${v} ${k}`).join(', ')}; ${traffic.skipped} not sent\n`)
  for (const [mode, n] of s.byMode) process.stdout.write(`  ${String(n).padStart(6)}  ${mode}\n`)
  process.stdout.write('RSS MiB before → after:\n')
  for (const b of before) process.stdout.write(`  ${b.process} (pid ${b.pid}): ${b.mib.toFixed(1)} → ${after.find(a => a.pid === b.pid)?.mib.toFixed(1) ?? 'gone'}\n`)
  for (const a of after.filter(a => !before.some(b => b.pid === a.pid))) process.stdout.write(`  ${a.process} (pid ${a.pid}, new): ${a.mib.toFixed(1)}\n`)
  for (const p of run.notReady) process.stdout.write(`not ready: ${p}\n`)
  for (const e of run.unexpectedExits) process.stdout.write(`unexpected worker exit: ${e}\n`)
  await writeReports(run, `${HERE}CHAOS.md`, `${HERE}chaos.json`)
  // Every answer with its judgement, beside the process logs, for whoever looks into a finding.
  await writeFile(`${stack.dir}/answers.jsonl`, judged.map(j => JSON.stringify({ ...j.answer, ...j.judgement })).join('\n') + '\n')
  // A run that hardly served anyone proves nothing, however few answers were "outside".
  const served = judged.filter(j => j.answer.status === 200).length
  if (served < judged.length * 0.3) log(`chaos: only ${served} of ${judged.length} answers were 200: the run itself is suspect`)
  exitCode = s.outside.length === 0 && served >= judged.length * 0.3 ? 0 : 1
  log(`chaos: ${s.outside.length} answers outside the declared failure modes; wrote bench/CHAOS.md and bench/chaos.json`)
} finally {
  await stack.stop()
}
process.exit(exitCode)
