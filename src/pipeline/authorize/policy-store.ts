import { unwatchFile, watchFile, type Stats } from 'node:fs'
import type { FastifyBaseLogger } from 'fastify'
import type { Metrics } from '../../observability/metrics.js'
import { readBundleFile } from './bundle.js'
import { createPolicyEngine, type PolicyEngine } from './policy-engine.js'

/*
 * The active policy, swapped as a whole. A new bundle is read, instantiated and probed off the request
 * path; only then does `current` change. A bundle that fails any step is logged, counted and dropped,
 * and the previous one stays active. With no bundle at all, `current` is null and requests get 503.
 */

export interface PolicyStore {
  readonly current: PolicyEngine | null
  /** Loads the bundle file now; resolves to whether it was activated. */
  reload: () => Promise<boolean>
  close: () => void
}

export interface PolicyStoreOptions {
  file: string
  entrypoint: string
  log: FastifyBaseLogger
  metrics: Metrics
  /** Poll interval for bundle file changes; 0 disables watching. */
  watchIntervalMs: number
}

export async function createPolicyStore (opts: PolicyStoreOptions): Promise<PolicyStore> {
  const { file, entrypoint, log, metrics } = opts
  let current: PolicyEngine | null = null
  let loading: Promise<boolean> | undefined

  const load = async (): Promise<boolean> => {
    try {
      const bundle = await readBundleFile(file)
      const engine = await createPolicyEngine(bundle, entrypoint)
      const previous = current?.revision
      current = engine
      metrics.bundleLoaded.set(1)
      metrics.bundleActivatedAt.set(Date.now() / 1000)
      log.info({ policy_revision: engine.revision, previous_revision: previous ?? null, entrypoint }, 'policy bundle activated')
      return true
    } catch (err) {
      metrics.bundleLoadFailures.inc()
      const message = (err as NodeJS.ErrnoException).code === 'ENOENT' ? `bundle file not found: ${file}` : (err as Error).message
      log.error({ bundle: file, active_revision: current?.revision ?? null, err: message }, 'policy bundle rejected; keeping the active one')
      return false
    }
  }
  // Reloads never overlap: a change seen during a load waits for it, then loads again.
  const reload = async (): Promise<boolean> => {
    while (loading !== undefined) await loading.catch(() => {})
    loading = load().finally(() => { loading = undefined })
    return loading
  }

  metrics.bundleLoaded.set(0)
  await reload()

  const onChange = (now: Stats, before: Stats): void => {
    if (now.mtimeMs !== before.mtimeMs || now.size !== before.size) void reload()
  }
  if (opts.watchIntervalMs > 0) {
    watchFile(file, { interval: opts.watchIntervalMs, persistent: false }, onChange)
  }

  return {
    get current () { return current },
    reload,
    close: () => { if (opts.watchIntervalMs > 0) unwatchFile(file, onChange) }
  }
}
