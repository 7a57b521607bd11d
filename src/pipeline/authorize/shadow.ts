import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import type { Masked } from '../../observability/decision-log.js'
import type { ShadowMetrics, ShadowOutcome } from '../../observability/shadow-metrics.js'
import { decisionDifferences } from './decision-diff.js'
import { ShadowQueue } from './shadow-queue.js'
import { policyMasks } from './log-mask.js'
import { PolicyEvaluationFault, type PolicyEngine } from './policy-engine.js'
import type { PolicyStatus, PolicyStore } from './policy-store.js'

/*
 * The shadow policy (policy.shadow): a second bundle, loaded and verified by a policy store of its
 * own, that judges live traffic without a say in it. The authorize stage offers each decision once it
 * is made; a sampled share is queued (bounded: beyond maxQueued it is dropped and counted) and judged
 * later, in slices of about 2 ms per setImmediate, so requests never wait for it. Whatever the shadow
 * does (decide otherwise, fail, time out, not be loaded) is counted and never reaches an answer.
 */

export interface ShadowJob {
  route: string
  decisionId: string
  entrypoint: string
  /** The input as the active policy was given it, as JSON text. */
  inputJson: string
  /** What the active policy returned. */
  result: unknown
  /** The active policy that returned it: its revision and its log masks. */
  engine: PolicyEngine
}

export interface ShadowStatus extends PolicyStatus {
  sample: number
  max_queued: number
  queued: number
  last_evaluation_error: { message: string, at: string } | null
  /** Outcomes and differences per shadow revision, kept across reloads (oldest first). */
  revisions: ReturnType<ShadowMetrics['tallies']>
}

export interface Shadow {
  /** Never throws and never waits: the request it came from is already decided. */
  offer: (job: ShadowJob) => void
  status: () => ShadowStatus
  close: () => Promise<void>
}

export interface ShadowOptions {
  store: PolicyStore
  sample: number
  maxQueued: number
  metrics: ShadowMetrics
  /** The decision log's masking (createMasker with decisionLog.mask), for the difference log lines. */
  mask: (fields: { input: unknown, result: unknown }, masks?: unknown) => Masked
  log: FastifyBaseLogger
  random?: () => number
}

// Judged per turn of the event loop at most (then I/O goes first), so a burst waiting for the shadow
// never holds requests up for long; a single evaluation is bounded by policy.evaluationTimeoutMs.
const TURN_NS = 2_000_000n

// long: the queue, its drain and the tally per revision share one state; split, they would pass it around.
export function createShadow (opts: ShadowOptions): Shadow {
  const { store, metrics, log } = opts
  const random = opts.random ?? Math.random
  const queue = new ShadowQueue<ShadowJob>(opts.maxQueued)
  let scheduled = false
  let closed = false
  let lastError: { message: string, at: string } | null = null

  const judge = (job: ShadowJob): void => {
    const engine = store.current
    if (engine === null) return metrics.outcome('not_ready', null)
    let value: unknown
    try {
      value = engine.evaluateJson(job.inputJson, job.entrypoint)
    } catch (err) {
      lastError = { message: err instanceof Error ? err.message : String(err), at: new Date().toISOString() }
      return metrics.outcome(err instanceof PolicyEvaluationFault && err.reason === 'timeout' ? 'timeout' : 'error', engine.revision)
    }
    const kinds = decisionDifferences(job.result, value)
    metrics.outcome(kinds.length === 0 ? 'same' : 'different', engine.revision)
    if (kinds.length === 0) return
    for (const kind of kinds) metrics.difference(job.route, kind, engine.revision)
    const input: unknown = JSON.parse(job.inputJson)
    log.info({
      decision_id: job.decisionId,
      shadow_decision_id: randomUUID(),
      route_id: job.route,
      kinds,
      policy_revision: job.engine.revision,
      shadow_revision: engine.revision,
      active: masked(job.engine, input, job.result),
      shadow: masked(engine, input, value)
    }, 'shadow policy decided differently')
  }
  // Only the result is logged (the input is in the decision log under decision_id), masked as there.
  const masked = (engine: PolicyEngine, input: unknown, result: unknown): { result?: unknown, erased?: string[], masked?: string[] } => {
    const masks = policyMasks(engine, input, result, err => {
      log.error({ policy_revision: engine.revision, err }, 'decision log mask policy failed; input and result left out')
    })
    const m = opts.mask({ input, result }, masks)
    const onResult = (paths: string[]): string[] => paths.filter(p => p === '/result' || p.startsWith('/result/'))
    const erased = onResult(m.erased)
    const upserted = onResult(m.masked)
    return { result: m.result, ...(erased.length > 0 ? { erased } : {}), ...(upserted.length > 0 ? { masked: upserted } : {}) }
  }
  const drain = (): void => {
    scheduled = false
    const until = process.hrtime.bigint() + TURN_NS
    while (queue.length > 0 && process.hrtime.bigint() < until) {
      const job = queue.shift()!
      try {
        judge(job)
      } catch (err) { // a fault of ours (logging, masking): counted like the shadow's own, never thrown
        lastError = { message: (err as Error).message, at: new Date().toISOString() }
        metrics.outcome('error', store.current?.revision ?? null)
      }
    }
    if (queue.length > 0 && !closed) schedule()
  }
  const schedule = (): void => {
    if (scheduled) return
    scheduled = true
    setImmediate(drain)
  }

  return {
    offer (job) {
      if (closed || (opts.sample < 1 && random() >= opts.sample)) return
      if (!queue.push(job)) return metrics.outcome('dropped', store.current?.revision ?? null)
      schedule()
    },
    status: () => ({
      ...store.status(),
      sample: opts.sample,
      max_queued: opts.maxQueued,
      queued: queue.length,
      last_evaluation_error: lastError,
      revisions: metrics.tallies()
    }),
    async close () {
      closed = true
      queue.clear()
      await store.close()
    }
  }
}
