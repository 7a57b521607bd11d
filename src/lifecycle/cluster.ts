import { unwatchFile, watchFile, type Stats } from 'node:fs'
import type { FastifyInstance } from 'fastify'
import { AggregatorRegistry, Registry, type MetricObjectWithValues, type MetricValue } from 'prom-client'
import { readAdminToken, registerAdminApi } from '../admin/api.js'
import { createAdminListener } from '../admin/listener.js'
import type { Readiness } from '../admin/health.js'
import { ConfigError, loadConfig, type ConfigProblem } from '../config/load.js'
import type { Config } from '../config/schema.js'
import { createDenyList } from '../pipeline/deny-list/deny-list.js'
import { createClusterMetrics } from '../observability/metrics.js'
import { configHash } from '../server.js'
import { ask } from './cluster-ipc.js'
import { primaryOnlyChanges, restartOnlyChanges } from './restart-only.js'
import { createWorkerPool } from './worker-pool.js'
import { maxSemiSpaceMiB, pretenuringNamed } from './node-flags.js'

/*
 * `portcullis start --workers N`: Node's cluster module. Workers each run a whole gateway and share the
 * public port (the primary hands out connections to the workers that listen); the primary holds the
 * admin listener alone, so /metrics is one scrape summed across workers and the primary's own
 * metrics (prom-client's AggregatorRegistry), and /readyz is ready while at least one worker is.
 *
 * The primary owns the config: it loads and validates the file, keeps the last good config and hands
 * it to every worker it starts (lifecycle/cluster-worker.ts), so a worker started after a bad edit
 * still runs the config that serves. SIGHUP (and a change of the file, with lifecycle.watch) makes
 * the primary read the file again: a valid config is sent to every worker, which rebuilds with it; an
 * invalid one is refused in the primary with every problem logged, and no worker sees it. A worker
 * that dies is replaced after a back-off (lifecycle/worker-pool.ts). SIGTERM drains every worker.
 *
 * Rate limits with the memory store are per worker: each worker counts alone, so a client spread over
 * N workers can make up to N times a route's limit. Use a shared store for exact limits; it is also
 * what lets the primary serve the admin API (serveAdminApi).
 */

interface LastReload { at: string, result: 'success' | 'failure', problems?: string[] }

const describeProblems = (problems: ConfigProblem[]): string[] => problems.map(p => `${p.path || '/'}: ${p.message}`)

/** In the primary: fork the workers, keep the last good config, serve the admin listener, handle signals. */
// long: the primary's lifecycle over one last-good config (reload, watch, signals); its admin routes are serveClusterAdmin.
export async function runPrimary (config: Config, count: number, configFile: string): Promise<void> {
  let good = { config, hash: configHash(config), loadedAt: new Date().toISOString() }
  let lastReload: LastReload | undefined
  const registry = new Registry()
  const metrics = createClusterMetrics(registry, () => pool.states())
  // The same protections as a single process's admin listener (limits, TLS, Host allow-list).
  const admin = createAdminListener({ admin: config.admin, limits: config.limits, logLevel: config.logging.level })
  const log = admin.log
  const shared = await serveAdminApi(config, admin)
  let shuttingDown = false
  let announced = false
  const pool = createWorkerPool({
    count,
    log,
    metrics,
    current: () => good,
    onListening: url => {
      if (announced) return
      announced = true
      const adminUrl = `${config.admin.tls !== undefined ? 'https' : 'http'}://${config.admin.host}:${(admin.server.address() as { port: number }).port}`
      log.info({ url, admin: adminUrl, workers: count, config_hash: good.hash, max_semi_space_mib: maxSemiSpaceMiB(),
        // Each worker's start turns it off unless the command line names it (cli.ts), as the primary's did.
        allocation_site_pretenuring: pretenuringNamed() ?? false }, 'portcullis is listening')
    }
  })

  serveClusterAdmin(admin, {
    registry,
    pool,
    count,
    shuttingDown: () => shuttingDown,
    config: () => ({ file: configFile, hash: good.hash, loaded_at: good.loadedAt, last_reload: lastReload ?? null })
  })

  const refuse = (problems: ConfigProblem[], counted: boolean): void => {
    if (counted) metrics.configReloads.inc({ result: 'failure' })
    lastReload = { at: new Date().toISOString(), result: 'failure', problems: describeProblems(problems) }
    log.error({ problems: lastReload.problems, config_hash: good.hash }, 'config reload refused; the previous config keeps serving')
  }

  // One reload at a time, in the order asked for.
  let reloading = Promise.resolve()
  const reload = async (): Promise<void> => {
    reloading = reloading.then(async () => {
      if (shuttingDown) return
      let next: Config
      try {
        next = await loadConfig(configFile)
        const fixed = [...restartOnlyChanges(good.config, next), ...primaryOnlyChanges(good.config, next)]
        if (fixed.length > 0) throw new ConfigError(configFile, fixed)
      } catch (err) {
        refuse(err instanceof ConfigError ? err.problems : [{ path: '', message: (err as Error).message }], true)
        return
      }
      const results = await pool.reload(next)
      const applied = results.filter(r => r.result?.ok === true)
      for (const r of results.filter(r => r.result?.ok !== true)) {
        log.warn({ slot: r.slot, worker_pid: r.pid, problems: r.result?.ok === false ? describeProblems(r.result.problems) : ['no answer'] }, 'a worker did not apply the new config; it keeps its own')
      }
      // A config that no worker could build (its bundle did not load, say) would not serve either.
      // The workers counted their own failures.
      if (results.length > 0 && applied.length === 0) {
        const first = results.find(r => r.result?.ok === false)?.result
        refuse(first?.ok === false ? first.problems : [{ path: '', message: 'no worker applied it' }], false)
        return
      }
      const previous = good.hash
      good = { config: next, hash: configHash(next), loadedAt: new Date().toISOString() }
      lastReload = { at: good.loadedAt, result: 'success' }
      log.info({ config_hash: good.hash, previous_config_hash: previous, workers_applied: applied.length, workers: results.length }, 'config reloaded')
      pool.catchUp()
      watch()
    })
    return reloading
  }

  // lifecycle.watch: the primary polls the config file (workers watch only their certificates).
  let unwatch = (): void => {}
  const watch = (): void => {
    unwatch()
    const { lifecycle } = good.config
    if (!lifecycle.watch || shuttingDown) return
    let settle: NodeJS.Timeout | undefined
    const onChange = (now: Stats, before: Stats): void => {
      if (now.mtimeMs === before.mtimeMs && now.size === before.size) return
      clearTimeout(settle)
      settle = setTimeout(() => { void reload() }, lifecycle.watchIntervalMs).unref()
    }
    watchFile(configFile, { interval: lifecycle.watchIntervalMs, persistent: false }, onChange)
    unwatch = () => { clearTimeout(settle); unwatchFile(configFile, onChange) }
  }

  await admin.listen({ host: config.admin.host, port: config.admin.port })
  pool.start()
  watch()

  const onSignal = (signal: NodeJS.Signals): void => {
    if (shuttingDown) { log.info({ signal }, 'already shutting down'); return }
    shuttingDown = true
    unwatch()
    log.info({ signal, workers: pool.workers().length }, 'shutting down: draining every worker')
    void pool.stop()
      .then(async () => Promise.all([admin.close(), shared?.close()]))
      .then(() => process.exit(0), () => process.exit(1))
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
  // SIGHUP: the primary re-reads the config (and its admin token, so that a rotated one takes effect).
  process.on('SIGHUP', () => {
    if (shuttingDown) return
    shared?.rereadToken()
    log.info({ signal: 'SIGHUP' }, 'reloading config')
    void reload()
  })
}

type WorkerPool = ReturnType<typeof createWorkerPool>

interface ClusterAdminState {
  registry: Registry
  pool: WorkerPool
  count: number
  shuttingDown: () => boolean
  config: () => { file: string, hash: string, loaded_at: string, last_reload: LastReload | null }
}

/**
 * The primary's admin routes: /metrics summed across workers, /readyz ready while at least one worker
 * is, /status from the first ready worker with the primary's config and every worker's state.
 */
function serveClusterAdmin (admin: FastifyInstance, state: ClusterAdminState): void {
  admin.get('/metrics', async (_request, reply) => {
    // A worker that does not answer in time is left out of this scrape rather than failing it.
    const answers = await Promise.all(state.pool.listening().map(async w => ask(w, { what: 'metrics' }, 5000)))
    const each = answers.filter((a): a is Array<MetricObjectWithValues<MetricValue<string>>> => Array.isArray(a))
    reply.type(state.registry.contentType)
    return AggregatorRegistry.aggregate([...each, await state.registry.getMetricsAsJSON()]).metrics()
  })
  admin.get('/healthz', async () => ({ status: 'ok' }))

  const readinessOfEach = async (): Promise<Array<Readiness | undefined>> =>
    Promise.all(state.pool.view().map(async v => {
      const w = v.state === 'listening' ? state.pool.worker(v.slot) : undefined
      return w !== undefined ? await ask(w, { what: 'readiness' }) as Readiness | undefined : undefined
    }))

  // Ready while at least one worker is: the primary hands connections only to workers that listen,
  // so one ready worker serves the whole port. Fewer than all is "degraded", still 200.
  admin.get('/readyz', async (_request, reply) => {
    const view = state.pool.view()
    const readiness = await readinessOfEach()
    const readyWorkers = readiness.filter(r => r?.ready === true).length
    const ready = !state.shuttingDown() && readyWorkers > 0
    reply.code(ready ? 200 : 503)
    return {
      status: !ready ? 'not ready' : readyWorkers < state.count ? 'degraded' : 'ready',
      checks: { accepting: !state.shuttingDown(), workers: readyWorkers > 0 },
      ready_workers: readyWorkers,
      configured_workers: state.count,
      workers: view.map((v, i) => ({ slot: v.slot, pid: v.pid, state: v.state, readiness: readiness[i] ?? null }))
    }
  })
  admin.get('/status', async () => {
    const view = state.pool.view()
    const readiness = await readinessOfEach()
    const firstReady = view.find((v, i) => readiness[i]?.ready === true) ?? view.find(v => v.state === 'listening')
    const w = firstReady !== undefined ? state.pool.worker(firstReady.slot) : undefined
    const status = w !== undefined ? (await ask(w, { what: 'status' }) ?? {}) as Record<string, unknown> : {}
    return {
      ...status,
      ready: !state.shuttingDown() && readiness.some(r => r?.ready === true),
      config: state.config(),
      workers: view.map((v, i) => ({ ...v, ready: readiness[i]?.ready === true }))
    }
  })
}

/**
 * The admin API in the primary. Workers share revocations and bans through the rate-limit store's
 * Redis, so the primary keeps a mirror of both sets and writes through Redis, which every worker
 * follows. Without a shared store each worker would hold lists of its own that one API could not
 * reach: refused at start rather than started with an API that changes nothing.
 */
async function serveAdminApi (config: Config, admin: FastifyInstance): Promise<{ rereadToken: () => void, close: () => Promise<void> } | null> {
  const first = readAdminToken(config.admin.tokenFile)
  if (first === undefined) return null
  let token = first
  const denyList = createDenyList()
  const onError = (): void => {} // each failure is logged; the workers count theirs in /metrics
  const shared = denyList.share(config, { log: admin.log, onRevocationError: onError, onBanError: onError })
  if (shared === null) {
    denyList.close()
    throw new Error('admin.tokenFile (the admin API) with --workers above 1 needs rateLimit.store.type: redis, through which the workers share revocations and bans; or run one process per replica')
  }
  await shared.ready(5000)
  registerAdminApi(admin, { token: () => token, revocations: denyList.revocations, bans: denyList.bans, ...denyList.writers(shared), maxTtlSeconds: config.revocation.maxTtlSeconds })
  return {
    rereadToken () {
      try {
        token = readAdminToken(config.admin.tokenFile) ?? token
        admin.log.info('admin token re-read')
      } catch (err) {
        admin.log.error({ err: (err as Error).message }, 'admin token not re-read; the previous one stays')
      }
    },
    async close () {
      denyList.close()
      await shared.close()
    }
  }
}
