import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { FastifyBaseLogger } from 'fastify'
import type { Metrics } from '../../observability/metrics.js'
import { parseBundle, type ParseOptions } from './bundle.js'
import type { BundleSource } from './bundle-source.js'
import { createPolicyEngine, type EngineFault, type PolicyEngine, type PolicyEngineOptions } from './policy-engine.js'

/*
 * The active policy, swapped as a whole. A new bundle is verified, size-checked, instantiated and
 * smoke-evaluated off the request path; only then does `current` change, in one assignment, so each
 * request is judged wholly by the old or wholly by the new policy. A bundle that fails any step is
 * logged, counted and dropped, and the previous one stays active. With no bundle at all, `current`
 * is null and requests get 503.
 *
 * The last good bundle is kept on disk (persistDirectory) and used when no source delivers one at
 * start; it goes through the same checks, signature included, so a copy changed on disk is refused.
 */

export interface PolicyStatus {
  revision: string | null
  activated_at: string | null
  /** Where the active bundle came from: the source, or the persisted copy. */
  origin: 'source' | 'persisted' | null
  signed_by: string | null
  source: string
  last_error: { message: string, at: string } | null
  failures: number
}

export interface PolicyStore {
  readonly current: PolicyEngine | null
  /** Fetches from the source now; resolves to whether a new bundle was activated. */
  reload: () => Promise<boolean>
  status: () => PolicyStatus
  close: () => Promise<void>
}

export interface PolicyStoreOptions {
  source: BundleSource
  /** The default entrypoint first, then the ones routes name; a bundle must have them all. */
  entrypoints: readonly string[]
  parse: ParseOptions
  persistDirectory?: string
  log: FastifyBaseLogger
  metrics: Metrics
  /** How often to look for a new bundle; 0 disables watching. */
  watchIntervalMs: number
  /** policy.evaluationTimeoutMs and policy.evaluationGuard; the engine's defaults when absent. */
  evaluation?: Pick<PolicyEngineOptions, 'timeoutMs' | 'guard'>
  /** Where loads, failures and resets are counted: the active policy's metrics unless given (the shadow's are its own). */
  report?: StoreReport
}

export interface StoreReport {
  /** A bundle was activated (null: none yet, before the first load). */
  loaded: (revision: string | null) => void
  failed: () => void
  reset: (reason: EngineFault) => void
}

/** The active policy's metrics. */
function activeReport (metrics: Metrics): StoreReport {
  return {
    loaded (revision) {
      metrics.bundleLoaded.set(revision === null ? 0 : 1)
      if (revision === null) return
      metrics.bundleActivatedAt.set(Date.now() / 1000)
      // One series at a time: the old revision's goes, so the label set stays bounded.
      metrics.bundleInfo.reset()
      metrics.bundleInfo.set({ revision }, 1)
    },
    failed: () => metrics.bundleLoadFailures.inc(),
    reset: reason => metrics.policyEngineResets.inc({ reason })
  }
}

export const PERSISTED_BUNDLE = 'bundle.tar.gz'

// A representative input: a bundle whose policy cannot evaluate even this is not activated.
const SMOKE_INPUT = {
  method: 'GET', path: '/', segments: [], query: {}, headers: {}, client: { ip: '127.0.0.1' },
  tls: { client_certificate: null }, principal: null, route: { id: 'smoke', metadata: {} }, time_ns: 0
}

// long: one closure over the active bundle; load, watch, swap and status share it.
export async function createPolicyStore (opts: PolicyStoreOptions): Promise<PolicyStore> {
  const { source, entrypoints, log } = opts
  const report = opts.report ?? activeReport(opts.metrics)
  let current: PolicyEngine | null = null
  let loading: Promise<boolean> | undefined
  const status: PolicyStatus = {
    revision: null, activated_at: null, origin: null, signed_by: null, source: source.location, last_error: null, failures: 0
  }
  const persisted = opts.persistDirectory !== undefined ? join(opts.persistDirectory, PERSISTED_BUNDLE) : undefined

  const activate = async (archive: Buffer, origin: 'source' | 'persisted'): Promise<void> => {
    const bundle = await parseBundle(archive, opts.parse)
    const engine = await createPolicyEngine(bundle, entrypoints, {
      ...opts.evaluation,
      onReset: (reason, err) => {
        // The smoke evaluation below faulting rejects the bundle instead; that is no reset.
        if (current !== engine) return
        report.reset(reason)
        log.warn({ policy_revision: bundle.revision, reason, err: err instanceof Error ? err.message : String(err) }, 'policy instance discarded after a faulted evaluation; a fresh one replaces it')
      }
    })
    for (const e of entrypoints) engine.evaluate(SMOKE_INPUT, e)
    const previous = current?.revision ?? null
    current = engine
    Object.assign(status, { revision: engine.revision, activated_at: new Date().toISOString(), origin, signed_by: bundle.signedBy })
    report.loaded(engine.revision)
    log.info({ policy_revision: engine.revision, previous_revision: previous, entrypoints, origin, signed_by: bundle.signedBy, evaluation_guard: engine.guardedBecause }, 'policy bundle activated')
    if (origin === 'source' && persisted !== undefined) await persist(archive)
  }
  // Written beside the target and renamed, so a crash never leaves half a bundle to load next time.
  const persist = async (archive: Buffer): Promise<void> => {
    try {
      await mkdir(opts.persistDirectory!, { recursive: true })
      const tmp = `${persisted!}.${process.pid}.tmp`
      await writeFile(tmp, archive, { mode: 0o600 })
      await rename(tmp, persisted!)
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'could not keep the policy bundle on disk')
    }
  }
  const fail = (err: unknown, origin: string): void => {
    const message = (err as Error).message
    status.failures++
    status.last_error = { message, at: new Date().toISOString() }
    report.failed()
    log.error({ source: origin, active_revision: current?.revision ?? null, err: message }, 'policy bundle rejected; keeping the active one')
  }

  const load = async (): Promise<boolean> => {
    try {
      const archive = await source.fetch()
      if (archive === null) return false
      await activate(archive, 'source')
      return true
    } catch (err) {
      fail(err, source.location)
      return false
    }
  }
  // Reloads never overlap: a change seen during a load waits for it, then loads again.
  const reload = async (): Promise<boolean> => {
    while (loading !== undefined) await loading.catch(() => {})
    loading = load().finally(() => { loading = undefined })
    return loading
  }

  report.loaded(null)
  await reload()
  if (current === null && persisted !== undefined) {
    try {
      await activate(await readFile(persisted), 'persisted')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') fail(err, persisted)
    }
  }
  const stop = opts.watchIntervalMs > 0 ? source.watch(() => { void reload() }, opts.watchIntervalMs) : () => {}

  return {
    get current () { return current },
    reload,
    status: () => ({ ...status, last_error: status.last_error === null ? null : { ...status.last_error } }),
    async close () {
      stop()
      await loading?.catch(() => {})
      await source.close()
    }
  }
}
