import type { FastifyBaseLogger } from 'fastify'
import type { Config } from '../../config/schema.js'
import { createMasker } from '../../observability/decision-log.js'
import type { Metrics } from '../../observability/metrics.js'
import { bundleSettings } from './bundle-config.js'
import { createPolicyStore } from './policy-store.js'
import { createShadow, type Shadow } from './shadow.js'

export interface ShadowSettings {
  log: FastifyBaseLogger
  metrics: Metrics
  /** The active store's: the shadow bundle must have every one of them too. */
  entrypoints: readonly string[]
  /** How often to look for a changed bundle file (GatewayOptions.bundleWatchIntervalMs). */
  watchIntervalMs?: number
}

/**
 * The shadow policy of the validated config, or undefined when it has none. Its bundle comes through
 * the same loader as the active one (bundle-config.ts, policy-store.ts): same verification keys, size
 * cap, entrypoint and smoke checks, evaluation timeout and guard. A shadow bundle that does not load
 * leaves the gateway serving; /status says why, and decisions are counted as not_ready.
 */
export async function createShadowFromConfig (config: Pick<Config, 'policy' | 'decisionLog'>, opts: ShadowSettings): Promise<Shadow | undefined> {
  const section = config.policy.shadow
  const m = opts.metrics.shadow
  // Promoted or removed: the info series of the last shadow goes with it.
  if (section === undefined) {
    m.bundleInfo.reset()
    return undefined
  }
  const log = opts.log.child({ policy: 'shadow' })
  const bundles = await bundleSettings(config.policy, section)
  const store = await createPolicyStore({
    source: bundles.source,
    parse: bundles.parse,
    entrypoints: opts.entrypoints,
    log,
    metrics: opts.metrics,
    watchIntervalMs: bundles.intervalMs ?? opts.watchIntervalMs ?? 2000,
    evaluation: { timeoutMs: config.policy.evaluationTimeoutMs, guard: config.policy.evaluationGuard },
    report: {
      loaded (revision) {
        m.bundleInfo.reset()
        if (revision !== null) m.bundleInfo.set({ revision }, 1)
      },
      failed: () => m.bundleLoadFailures.inc(),
      // The faulted evaluation itself is counted (outcome error or timeout).
      reset: () => {}
    }
  })
  return createShadow({
    store,
    sample: section.sample,
    maxQueued: section.maxQueued,
    metrics: m,
    mask: createMasker(config.decisionLog.mask),
    log
  })
}
