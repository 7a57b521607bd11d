import type { RateResult } from './load.js'
import { median } from './report.js'

/*
 * The open-loop plan of npm run bench: which scenario runs at which constant rate. A gateway is
 * measured at half of its OWN saturation (measured in the same run), so that it is loaded but not
 * overloaded, with the function called directly and the bare proxy at the same rate beside it; and
 * every scenario at one common rate, half the slowest proxy's saturation, below every proxy's
 * saturation. Rates are rounded down to a multiple of RATE_STEP, so that gateways of about the same
 * speed share the references' runs.
 *
 * The added p99 is over calling the function directly (scenario 1): what a caller pays for the gateway
 * in front of the function, and a reference that holds still between rounds. The bare proxy's p99 is
 * shown beside it but is no reference for latency: @fastify/reply-from builds a TLS context (CA,
 * certificate and key parsed again) for every connection it opens to the function, 1.2–1.4 ms each
 * here, and under an open-loop load it opens them in bursts (README.md says more).
 */

export const RATE_STEP = 50
/** The scenario that calls the function without a proxy: the reference of every added p99. */
export const DIRECT = 'direct'

export interface PlannedScenario { id: string, cpus: 1 | 2, bare: string, gateway: boolean }
export interface RatePlan {
  /** Gateway scenario (one CPU) → half its saturation. */
  own: Map<string, number>
  common: number
  /** In the order they run in each round, each (scenario, rate) once. */
  jobs: Array<{ id: string, rate: number }>
}

export const halfRate = (rps: number): number => Math.max(RATE_STEP, Math.floor(rps / 2 / RATE_STEP) * RATE_STEP)
export const rateKey = (id: string, rate: number): string => `${id}@${rate}`

export function planFixedRates (scenarios: PlannedScenario[], saturation: (id: string) => number): RatePlan {
  const own = new Map(scenarios.filter(s => s.gateway && s.cpus === 1).map(s => [s.id, halfRate(saturation(s.id))]))
  const common = Math.min(...scenarios.filter(s => s.id !== DIRECT).map(s => halfRate(saturation(s.id))))
  const jobs = new Map<string, { id: string, rate: number }>()
  const add = (id: string, rate: number): void => { if (!jobs.has(rateKey(id, rate))) jobs.set(rateKey(id, rate), { id, rate }) }
  for (const s of scenarios) {
    const rate = own.get(s.id)
    if (rate === undefined) continue
    add(s.id, rate)
    add(DIRECT, rate)
    add(s.bare, rate)
  }
  for (const s of scenarios) add(s.id, common)
  return { own, common, jobs: [...jobs.values()] }
}

/** Median p99 of a scenario's runs at a rate, in µs (NaN when it did not run there). */
export function p99At (runs: Map<string, RateResult[]>, id: string, rate: number): number {
  const rs = runs.get(rateKey(id, rate)) ?? []
  return rs.length === 0 ? NaN : median(rs.map(r => r.p99_us))
}

/** How far a scenario's p99 at a rate moved between rounds (max − min, µs): the noise an added p99 sits in. */
export function p99Span (runs: Map<string, RateResult[]>, id: string, rate: number): number {
  const p99s = (runs.get(rateKey(id, rate)) ?? []).map(r => r.p99_us)
  return p99s.length === 0 ? NaN : Math.max(...p99s) - Math.min(...p99s)
}
