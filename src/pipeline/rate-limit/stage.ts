import type { Config } from '../../config/schema.js'
import { stageOf, type Stage, type StageServices } from '../types.js'
import { preAuthLimitPlugin, rateLimitPlugin } from './plugin.js'

export interface RateLimitStages {
  /** Stage 1: the per-IP limit before any credential is looked at. */
  preAuth: Stage
  /** Stage 5: the route's and tier's limits, after the policy. */
  main: Stage
}

/**
 * Both rate-limit stages, on the process's store for this config (its counters and Redis connection
 * outlive a reload that leaves `rateLimit.store` alone). The store is shown, never failing readiness:
 * each route decides (onStoreError) what a store outage means for it.
 */
export async function createRateLimitStages (config: Pick<Config, 'rateLimit' | 'routes'>, services: StageServices): Promise<RateLimitStages> {
  const { log, metrics, health, closer, process } = services
  const store = closer.hold(await process.rateLimitStore(config.rateLimit, log), 'rate-limit store')
  health.addCheck('rate_limit_store', () => {
    const s = store.detail()
    return { ok: true, detail: `${s.type} ${s.up ? 'up' : 'down'}${s.last_error !== undefined ? `: ${s.last_error}` : ''}` }
  })
  health.addStatus('rate_limit_store', () => store.detail())
  const options = { metrics, store, config }
  return {
    preAuth: stageOf(preAuthLimitPlugin, options),
    // Its hook runs per route, after the policy; the span stays open until the forward stage starts.
    main: stageOf(rateLimitPlugin, options, 'open')
  }
}
