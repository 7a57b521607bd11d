import type { Config } from '../../config/schema.js'
import { createDecisionLogFromConfig } from '../../observability/decision-log.js'
import { stageOf, type Stage, type StageServices } from '../types.js'
import { bundleSettings } from './bundle-config.js'
import { authorizePlugin, type AuthorizeOptions } from './plugin.js'
import { createPolicyStore, type PolicyStore } from './policy-store.js'
import { createShadowFromConfig } from './shadow-config.js'

export interface AuthorizeStage extends Stage { policy: PolicyStore }

export interface AuthorizeStageOptions {
  /** How often to look for a changed bundle file when the config does not say; 0 turns watching off. */
  bundleWatchIntervalMs?: number
  onEvaluated?: AuthorizeOptions['onEvaluated']
}

/** Stage 4, authorize: the policy store (its bundle watched), the decision log, ready once a bundle is loaded. */
export async function createAuthorizeStage (config: Pick<Config, 'policy' | 'routes' | 'decisionLog'>, services: StageServices, opts: AuthorizeStageOptions = {}): Promise<AuthorizeStage> {
  const { log, metrics, health, closer, certificates } = services
  const bundles = await bundleSettings(config.policy)
  const routeEntrypoints = new Map(config.routes.flatMap(r => r.entrypoint !== undefined ? [[r.id, r.entrypoint] as const] : []))
  const entrypoints = [...new Set([config.policy.entrypoint, ...routeEntrypoints.values()])]
  const policy = await createPolicyStore({
    source: bundles.source,
    parse: bundles.parse,
    entrypoints,
    ...(config.policy.persistDirectory !== undefined ? { persistDirectory: config.policy.persistDirectory } : {}),
    log,
    metrics,
    watchIntervalMs: bundles.intervalMs ?? opts.bundleWatchIntervalMs ?? 2000,
    evaluation: { timeoutMs: config.policy.evaluationTimeoutMs, guard: config.policy.evaluationGuard }
  })
  closer.add('policy', () => policy.close())
  // The shadow policy (policy.shadow): judges decided requests off their path; never answers one.
  const shadow = await createShadowFromConfig(config, { log, metrics, entrypoints, ...(opts.bundleWatchIntervalMs !== undefined ? { watchIntervalMs: opts.bundleWatchIntervalMs } : {}) })
  if (shadow !== undefined) closer.add('shadow policy', () => shadow.close())
  const decisionLog = createDecisionLogFromConfig(config.decisionLog, log, metrics)
  closer.add('decision log', () => decisionLog.close())

  health.addCheck('policy', () => policy.current !== null ? { ok: true, detail: `revision ${policy.current.revision}` } : { ok: false, detail: 'no policy bundle loaded' })
  health.addStatus('policy', () => {
    const status = policy.status()
    const age = status.activated_at === null ? null : Math.round((Date.now() - Date.parse(status.activated_at)) / 1000)
    return { ...status, age_seconds: age, entrypoint: config.policy.entrypoint }
  })
  if (shadow !== undefined) health.addStatus('policy_shadow', () => shadow.status())
  certificates.file('policy-server/ca', config.policy.server?.tls?.ca)
  certificates.file('policy-shadow-server/ca', config.policy.shadow?.server?.tls?.ca)
  certificates.file('policy-shadow-server/client', config.policy.shadow?.server?.tls?.cert)
  certificates.file('policy-server/client', config.policy.server?.tls?.cert)
  certificates.file('decision-log/ca', config.decisionLog.http?.tls?.ca)
  certificates.file('decision-log/client', config.decisionLog.http?.tls?.cert)

  return {
    ...stageOf(authorizePlugin, {
      policy,
      metrics,
      decisionLog,
      routeEntrypoints,
      ...(shadow !== undefined ? { shadow } : {}),
      ...(opts.onEvaluated !== undefined ? { onEvaluated: opts.onEvaluated } : {})
    }, 'closed'),
    policy
  }
}
