import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { cpuSeconds } from './procs.js'
import type { Sample } from './report.js'
import type { Scenario } from './stack.js'
import { pinned, type Tools } from './tools.js'

/*
 * The HTTP/2 scenario of `npm run bench` (issue #21): h2load (Debian's nghttp2-client) against the
 * ES256 scenario's config and route on a process of its own, so the same upstream (forwarded over
 * HTTP/1.1 as configured). One TLS connection per client with up to `streams` requests in flight on
 * each; latency percentiles come from h2load's per-request log. One stream per connection by default:
 * the same 50 requests in flight as wrk's HTTP/1.1 runs (ten each would put 500 in flight, past the
 * upstream's queue, and measure the gateway shedding them with 503).
 */

const run = promisify(execFile)

export const H2_SCENARIO = { id: 'portcullis-es256-h2', label: '4h Portcullis, ES256, HTTP/2 (h2load)' } as const

/** h2load's path, or null when it is not installed (the scenario is then left out, and said so). */
export async function findH2load (): Promise<string | null> {
  return run('sh', ['-c', 'command -v h2load']).then(r => r.stdout.trim() || null, () => null)
}

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * p) - 1)] ?? 0

/** One closed-loop run of `seconds`: `connections` connections, `streams` concurrent streams each. */
export async function runH2load (h2load: string, tools: Tools, cpu: number, s: Scenario, seconds: number, connections: number, streams = 1): Promise<Sample> {
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-h2load-'))
  try {
    const logFile = join(dir, 'requests.tsv')
    const args = [h2load, '-t1', `-c${connections}`, `-m${streams}`, `-D${seconds}`, '--log-file', logFile,
      ...Object.entries(s.headers).flatMap(([k, v]) => ['-H', `${k}: ${v}`]), s.url]
    const before = cpuSeconds(s.proc.pids())
    const cmd = pinned(tools, cpu, args)
    const { stdout } = await run(cmd[0]!, cmd.slice(1), { maxBuffer: 16 << 20 })
    const cpu_s = cpuSeconds(s.proc.pids()) - before
    if (!/Application protocol: h2/.test(stdout)) throw new Error(`h2load did not negotiate h2:\n${stdout}`)
    // start (µs since epoch) \t status \t µs until the response ended
    const rows = (await readFile(logFile, 'utf8')).trim().split('\n').map(l => l.split('\t').map(Number))
    const latencies = rows.map(r => r[2]!).sort((a, b) => a - b)
    const failed = rows.filter(r => r[1]! < 200 || r[1]! >= 300).length
    const errored = Number(/(\d+) errored/.exec(stdout)?.[1] ?? 0) + Number(/(\d+) timeout/.exec(stdout)?.[1] ?? 0)
    return {
      rps: rows.length / seconds,
      p50_us: percentile(latencies, 0.5),
      p99_us: percentile(latencies, 0.99),
      p999_us: percentile(latencies, 0.999),
      cpu_us_per_req: rows.length > 0 ? cpu_s * 1e6 / rows.length : 0,
      errors: failed + errored
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}
