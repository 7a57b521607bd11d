import type { Replica } from './chaos-stack.js'

/*
 * What each replica says about itself, once a second: /readyz, and portcullis_ratelimit_store_up
 * from /metrics (summed over workers by the cluster primary). The judge needs the store's own view
 * to tell a late store answer (declared: that one request fails) from a store marked down while
 * Redis is healthy (issue #17 case 7: flapping), which look alike from outside. Readiness is
 * reported, not judged.
 */

export interface ProbeSample {
  t: number
  replica: 'A' | 'B'
  ready: boolean | null
  /** Processes whose store is up, and processes serving (workers, or 1). */
  storeUp: number | null
  processes: number
}

const INTERVAL_MS = 1000

async function get (url: string): Promise<{ status: number, text: string } | null> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(3000) })
    return { status: res.status, text: await res.text() }
  } catch {
    return null
  }
}

export function startProbe (replicas: Replica[], t0: number): { stop: () => Promise<ProbeSample[]> } {
  const samples: ProbeSample[] = []
  let running = true
  const loops = replicas.map(async r => {
    while (running) {
      const t = Date.now() - t0
      const processes = Math.max(1, r.proc.workers().length)
      const [ready, metrics] = await Promise.all([get(`${r.admin}/readyz`), get(`${r.admin}/metrics`)])
      const up = metrics !== null ? /^portcullis_ratelimit_store_up(?:\{[^}]*\})? (\S+)$/m.exec(metrics.text)?.[1] : undefined
      samples.push({ t, replica: r.name, ready: ready === null ? null : ready.status === 200, storeUp: up === undefined ? null : Number(up), processes })
      await new Promise(resolve => setTimeout(resolve, INTERVAL_MS))
    }
  })
  return {
    async stop () {
      running = false
      await Promise.all(loops)
      return samples
    }
  }
}

/** True when the replica reported its store down (in any process) between `from` and `to`. */
export function storeDownBetween (samples: ProbeSample[], replica: 'A' | 'B', from: number, to: number): boolean {
  return samples.some(s => s.replica === replica && s.t >= from && s.t <= to && s.storeUp !== null && s.storeUp < s.processes)
}

function periods (samples: ProbeSample[], bad: (s: ProbeSample) => boolean): string[] {
  const out: string[] = []
  for (const name of ['A', 'B'] as const) {
    let from: number | null = null
    let last = 0
    for (const s of samples.filter(x => x.replica === name)) {
      if (bad(s) && from === null) from = s.t
      if (!bad(s) && from !== null) { out.push(`${name}: ${(from / 1000).toFixed(1)}–${(s.t / 1000).toFixed(1)} s`); from = null }
      last = s.t
    }
    if (from !== null) out.push(`${name}: ${(from / 1000).toFixed(1)}–${(last / 1000).toFixed(1)} s (to the end)`)
  }
  return out
}

/** Periods in which a replica answered /readyz other than 200 (or not at all), for the report. */
export const notReadyPeriods = (samples: ProbeSample[]): string[] => periods(samples, s => s.ready !== true)

/** Periods in which a replica reported its store down in some process, for the report. */
export const storeDownPeriods = (samples: ProbeSample[]): string[] => periods(samples, s => s.storeUp !== null && s.storeUp < s.processes)
