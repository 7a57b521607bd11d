import { CATEGORY_ORDER } from './stage-map.js'
import type { Hot, ProfileSums } from './stage-profile.js'
import { LOAD_CPU, SUT_CPU } from './stack.js'

/*
 * bench/STAGES.md from one npm run bench:stages: CPU µs and allocated KiB per request by stage, for
 * the bare proxy and the gateway side by side, and the hottest functions of the gateway.
 */

export interface StageRun {
  id: string
  label: string
  /** Requests served and their rate during the profiled run; failed ones (errors, non-2xx) among them. */
  requests: number
  rps: number
  failed: number
  /** CPU time of the process and of its main thread during the profiled run, µs. */
  cpuUs: number
  mainUs: number
  /** The same load without the profiler: CPU per request and rate. */
  plainCpuUsPerReq: number
  plainRps: number
  sums: ProfileSums
}
export interface StagesMeta { command: string, date: string, seconds: number, connections: number, intervalUs: number, cpus: number, loadavg: number[] }

const OTHER_THREADS = 'other threads (GC helpers, JIT compilers, libuv pool)'

/** µs of CPU per request by category: a category's share of the main thread's busy samples × its CPU time. */
export function cpuPerRequest (run: StageRun): Record<string, number> {
  const busy = Object.entries(run.sums.samples).reduce((a, [c, n]) => c === 'idle' ? a : a + n, 0)
  const out: Record<string, number> = {}
  for (const [c, n] of Object.entries(run.sums.samples)) if (c !== 'idle') out[c] = n / Math.max(1, busy) * run.mainUs / run.requests
  out[OTHER_THREADS] = (run.cpuUs - run.mainUs) / run.requests
  return out
}

const f0 = (x: number | undefined): string => x === undefined ? '0' : x.toFixed(x < 10 ? 1 : 0)
const kib = (x: number | undefined): string => ((x ?? 0) / 1024).toFixed(2)

export function stagesMarkdown (meta: StagesMeta, runs: StageRun[]): string {
  const us = runs.map(cpuPerRequest)
  const bytes = runs.map(r => Object.fromEntries(Object.entries(r.sums.bytes).map(([c, b]) => [c, b / r.requests])))
  const bare = runs.findIndex(r => r.id === 'bare')
  const gw = runs.findIndex(r => r.id === 'portcullis')
  const known = new Set([...CATEGORY_ORDER, OTHER_THREADS])
  const extra = [...new Set(runs.flatMap(r => Object.keys(r.sums.samples)))].filter(c => !known.has(c) && c !== 'idle')
  const rows = [...CATEGORY_ORDER, ...extra, OTHER_THREADS]
  const diff = (m: Array<Record<string, number>>, c: string): string => bare < 0 || gw < 0 ? '—' : f0((m[gw]![c] ?? 0) - (m[bare]![c] ?? 0))
  const total = (m: Record<string, number>): number => Object.values(m).reduce((a, b) => a + b, 0)
  const head = `| stage | ${runs.map(r => r.label).join(' | ')} | Portcullis − bare |\n|---|${runs.map(() => '---|').join('')}---|`
  const cpuRows = rows.map(c => `| ${c} | ${us.map(m => f0(m[c])).join(' | ')} | ${diff(us, c)} |`)
  const allocRows = [...CATEGORY_ORDER, ...extra].filter(c => bytes.some(m => (m[c] ?? 0) > 0))
    .map(c => `| ${c} | ${bytes.map(m => kib(m[c])).join(' | ')} | ${bare < 0 || gw < 0 ? '—' : kib((bytes[gw]![c] ?? 0) - (bytes[bare]![c] ?? 0))} |`)
  const idle = (r: StageRun): string => `${((r.sums.samples.idle ?? 0) / Math.max(1, Object.values(r.sums.samples).reduce((a, b) => a + b, 0)) * 100).toFixed(0)} %`
  const hotRows = (hot: Hot[], value: (h: Hot) => string): string => hot.map(h => `| ${h.fn} | ${h.where} | ${h.category} | ${value(h)} |`).join('\n')
  const g = gw >= 0 ? runs[gw]! : runs[runs.length - 1]!
  const busy = Object.entries(g.sums.samples).reduce((a, [c, n]) => c === 'idle' ? a : a + n, 0)

  return `# Where a request's CPU and memory go, stage by stage

Produced by \`${meta.command}\` on ${meta.date.slice(0, 16).replace('T', ' ')} UTC (load average at the end
${meta.loadavg.map(x => x.toFixed(1)).join(' / ')} on ${meta.cpus} CPUs${meta.loadavg[0]! > meta.cpus ? ': above the CPU count, other work shared the cores and the figures are noisy' : ''}). Method:
[README.md](README.md#per-stage-cpu-and-allocation-npm-run-benchstages). Raw numbers: [stages.json](stages.json).

Each system under test runs alone on CPU ${SUT_CPU}, wrk (1 thread, ${meta.connections} connections, ES256 token) and an nginx mTLS
upstream on CPU ${LOAD_CPU}: a warm-up, a ${meta.seconds} s run without the profiler, then a ${meta.seconds} s run under V8's CPU profiler
(a sample every ${meta.intervalUs} µs) and its sampling heap profiler (collected objects included). Each sample goes to the
innermost frame of its stack that belongs to a stage (the mapping is one table, \`lib/stage-map.ts\`);
samples with no stage on their stack go to where they ran (Fastify's router and hooks, Node's HTTP and
TLS, native code, GC). µs per request = a category's share of the main thread's busy samples × the
main thread's CPU time (from /proc) ÷ requests served; the other threads' CPU is a row of its own, so
each column adds up to the profiled run's CPU per request.

## CPU µs per request

${head}
${cpuRows.join('\n')}
| **total, profiled run** | ${us.map(m => `**${f0(total(m))}**`).join(' | ')} | ${bare < 0 || gw < 0 ? '—' : `**${f0(total(us[gw]!) - total(us[bare]!))}**`} |
| CPU µs/req, a run of the same length just before, without the profiler | ${runs.map(r => f0(r.plainCpuUsPerReq)).join(' | ')} | ${bare < 0 || gw < 0 ? '—' : f0(runs[gw]!.plainCpuUsPerReq - runs[bare]!.plainCpuUsPerReq)} |
| requests/s: without / with the profiler | ${runs.map(r => `${Math.round(r.plainRps)} / ${Math.round(r.rps)}`).join(' | ')} | |
| main thread idle during the profiled run | ${runs.map(idle).join(' | ')} | |
| CPU samples (busy) | ${runs.map(r => String(Object.entries(r.sums.samples).reduce((a, [c, n]) => c === 'idle' ? a : a + n, 0))).join(' | ')} | |
| failed requests in the profiled run | ${runs.map(r => String(r.failed)).join(' | ')} | |

A stage costs what its own code and the libraries it calls cost: "authenticate" includes the JWT library,
"forward" includes undici and, for the bare proxy, @fastify/reply-from, "access log" includes pino and
the observe hook that builds the line, "metrics" prom-client. "tracing (off)" is what the tracing hooks
cost with tracing not configured. On a quiet machine the two CPU rows differ by the profiler's own
cost. Where they differ much more, the machine's state differed between the runs: on a loaded, shared
2-vCPU VM the profiled run served 4–6 × the requests/s of the run before it, at half the CPU per
request, in either order (more requests per event-loop turn; the cause is not established). The
shares within a column hold either way; read differences between columns with that in mind.

## Allocation, KiB per request (sampled, collected objects included)

| stage | ${runs.map(r => r.label).join(' | ')} | Portcullis − bare |
|---|${runs.map(() => '---|').join('')}---|
${allocRows.join('\n')}
| **total** | ${bytes.map(m => `**${kib(total(m))}**`).join(' | ')} | ${bare < 0 || gw < 0 ? '—' : `**${kib(total(bytes[gw]!) - total(bytes[bare]!))}**`} |

## Hottest functions of ${g.label} (self time)

µs per request spent in the function itself (not its callees), and the stage its sample counted for.

| function | where | stage | µs/req |
|---|---|---|---|
${hotRows(g.sums.topSelf, h => f0(h.value / Math.max(1, busy) * g.mainUs / g.requests))}

## Most allocating functions of ${g.label}

| function | where | stage | KiB/req |
|---|---|---|---|
${hotRows(g.sums.topAlloc, h => kib(h.value / g.requests))}
`
}
