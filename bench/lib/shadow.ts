import { readFile, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { runWrk } from './load.js'
import { start, stopAll, waitForPort } from './procs.js'
import { median, type ScenarioResult } from './report.js'
import { LOAD_CPU, SUT_CPU, startStack, type Stack } from './stack.js'
import { GATEWAY_NODE_ARGS, PORTS as STACK_PORTS } from './setup.js'
import { pinned } from './tools.js'

/*
 * Scenario 4s: scenario 4 (ES256) with a shadow policy (policy.shadow) judging every request
 * (sample 1). The shadow bundle is the active one, so every request costs a second evaluation and a
 * comparison but logs no difference: what is measured is the cost of shadowing, not of logging.
 * Target: throughput within 10 % of scenario 4 (ES256), in the same interleaved rounds.
 *
 * Smoke run of this scenario alone (beside scenario 4, for the ratio):
 *   node --import tsx bench/lib/shadow.ts --duration 2
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
// Past the ports of the stack's own scenarios (setup.ts), whatever base they start from.
const PORTS = { gateway: STACK_PORTS.upstream + 30, admin: STACK_PORTS.upstream + 31 }
export const SHADOW_SCENARIO = 'portcullis-shadow-es256'

/**
 * Starts scenario 4s beside the stack's scenario 4 and adds it to the stack's scenarios and processes,
 * so it is stopped with them (also where bench/run.ts frees the CPU for scenario 6).
 */
export async function addShadowScenario (stack: Stack): Promise<void> {
  const dir = stack.work.dir
  const base = await readFile(`${dir}/portcullis.yaml`, 'utf8')
  const policy = /^policy: \{ bundle: ([^ ]+) \}$/m.exec(base)
  if (policy === null) throw new Error('bench/lib/shadow.ts: no "policy: { bundle: ... }" line in portcullis.yaml')
  const config = base
    .replace(/^# Scenario 4:.*$/m, '# Scenario 4s: scenario 4 with a shadow policy judging every request (bench/lib/shadow.ts).')
    .replace(/port: \d+, tls:/, `port: ${PORTS.gateway}, tls:`)
    .replace(/^admin: \{ host: 127\.0\.0\.1, port: \d+ \}$/m, `admin: { host: 127.0.0.1, port: ${PORTS.admin} }`)
    .replace(policy[0], `policy: { bundle: ${policy[1]!}, shadow: { bundle: ${policy[1]!}, sample: 1 } }`)
  await writeFile(`${dir}/portcullis-shadow.yaml`, config)
  const proc = start('portcullis-shadow', pinned(stack.tools, SUT_CPU, [process.execPath, ...GATEWAY_NODE_ARGS, `${ROOT}dist/cli.js`, 'start', '-c', `${dir}/portcullis-shadow.yaml`]))
  try {
    await waitForPort(PORTS.gateway)
  } catch (err) {
    await stopAll([proc])
    throw err
  }
  Object.assign(stack.procs, { shadow: proc })
  const es256 = stack.scenarios.find(s => s.id === 'portcullis-es256')!
  // Right after scenario 4 in each round, beside the scenario it is compared with. Run last, right after
  // the two-CPU scenario (5c, two workers on both CPUs), it came out at 0.76 x of scenario 4 with 30 %
  // more CPU per request of its own, where the smoke run below, beside scenario 4 alone, gave 0.94 x.
  stack.scenarios.splice(stack.scenarios.indexOf(es256) + 1, 0, { id: SHADOW_SCENARIO, label: '4s Portcullis, ES256, shadow policy on every request', url: es256.url.replace(/:\d+\//, `:${PORTS.gateway}/`), headers: es256.headers, proc, cpus: 1, bare: 'bare', gateway: true })
}

/** The targets table's row: shadowing every request costs at most 10 % of scenario 4's throughput. */
export function shadowTargetRow (results: ScenarioResult[]): string {
  const rps = (id: string): number | null => {
    const r = results.find(x => x.id === id)
    return r === undefined ? null : median(r.samples.map(s => s.rps))
  }
  const shadowed = rps(SHADOW_SCENARIO)
  const plain = rps('portcullis-es256')
  if (shadowed === null || plain === null) return '| shadow policy on every request costs ≤ 10 % throughput | not run | — |'
  const ratio = shadowed / plain
  return `| shadow policy on every request costs ≤ 10 % throughput (4s vs 4 ES256) | ${ratio.toFixed(2)} × | ${ratio >= 0.9 ? 'met' : '**missed**'} |`
}

// Smoke run: scenario 4 (ES256) and 4s, one short round each, and their ratio.
if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { duration: { type: 'string', default: '2' }, connections: { type: 'string', default: '10' } } })
  const stack = await startStack(`${ROOT}bench/.work`)
  try {
    await addShadowScenario(stack)
    const rps: Record<string, number> = {}
    const pair = stack.scenarios.filter(x => x.id === 'portcullis-es256' || x.id === SHADOW_SCENARIO)
    for (const s of pair) await runWrk(stack.tools, LOAD_CPU, s.url, s.headers, 1, Number(values.connections)) // warm-up: JIT, TLS sessions
    for (const s of pair) {
      const r = await runWrk(stack.tools, LOAD_CPU, s.url, s.headers, Number(values.duration), Number(values.connections))
      rps[s.id] = r.rps
      process.stdout.write(`${s.label}: ${Math.round(r.rps)} req/s, p99 ${r.p99_us} us, errors ${r.errors + r.non2xx}\n`)
    }
    process.stdout.write(`ratio 4s / 4: ${(rps[SHADOW_SCENARIO]! / rps['portcullis-es256']!).toFixed(2)} (smoke run: not a measurement)\n`)
  } finally {
    await stack.stop()
  }
}
