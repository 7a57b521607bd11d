import { createHash } from 'node:crypto'
import { readFileSync, unwatchFile, watchFile, type Stats } from 'node:fs'
import type { Server } from 'node:http'
import { createGateway, type Gateway, type GatewayOptions } from './app.js'
import { ConfigError, loadConfig, type ConfigProblem } from './config/load.js'
import type { Config } from './config/schema.js'
import { createListener, type Generation } from './lifecycle/listener.js'
import { restartOnlyChanges } from './lifecycle/restart-only.js'
import { createProcessState, type KeySnapshots } from './lifecycle/process-state.js'

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }

export interface StartOptions extends Pick<GatewayOptions, 'bundleWatchIntervalMs'> {
  /** Where the config came from: a reload reads it again, and `lifecycle.watch` polls it. */
  configFile?: string
  /** Open the admin listener (default). Cluster workers leave it to the primary. */
  admin?: boolean
  /** Issuer key sets a sibling worker holds (lifecycle/worker-pool.ts): this process starts from them. */
  keySeeds?: KeySnapshots
}

export type ReloadResult = { ok: true, configHash: string } | { ok: false, problems: ConfigProblem[] }

export interface RunningGateway {
  /** The gateway built from the active config; a reload replaces it. */
  readonly gateway: Gateway
  readonly configHash: string
  /** https://host:port of the public listener (the real port when 0 was configured). */
  url: string
  adminUrl: string
  /**
   * Builds a whole new gateway from `next`, else from the config file, else from the active config
   * (which re-reads certificates, keys and bundles), and swaps it in. Refused with every problem
   * listed when it cannot be built; the previous gateway then keeps serving.
   */
  reload: (next?: Config) => Promise<ReloadResult>
  /** Graceful: /readyz fails, no new connections, in-flight requests finish (bounded), then closed. */
  close: () => Promise<void>
  /** The remote issuer key sets this process holds, to seed a new cluster worker. */
  keySnapshots: () => KeySnapshots
}

interface Active { config: Config, hash: string, gateway: Gateway, pub: Generation, admin: Generation }

function urlOf (server: Server, host: string, scheme: string): string {
  const { port } = server.address() as { port: number }
  const h = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host
  return `${scheme}://${h.includes(':') ? `[${h}]` : h}:${port}`
}

export function configHash (config: Config): string {
  return createHash('sha256').update(JSON.stringify(config)).digest('hex').slice(0, 16)
}

async function listen (server: Server, host: string, port: number): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => { server.off('error', reject); resolve() })
  })
}

/** After the drain timeout, how long the 503s of the requests cut off may take to be written. */
const CUT_OFF_GRACE_MS = 1000

const sleep = async (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms).unref())

/**
 * Process lifecycle: builds the gateway, opens both listeners, reloads the config by building a new
 * gateway and swapping it in, and drains on close. The sockets belong to this module and outlive
 * every gateway built on them (lifecycle/listener.ts).
 */
// long: the process lifecycle (build, swap, retire, watch, drain) over one active generation, whose state its parts share.
export async function startGateway (config: Config, opts: StartOptions = {}): Promise<RunningGateway> {
  // What outlives every config: metrics, deny lists, rate-limit counters, issuer keys, Redis.
  const proc = createProcessState(undefined, opts.keySeeds !== undefined ? { keySeeds: opts.keySeeds } : {})
  const { metrics } = proc
  const pub = createListener()
  const adm = createListener()
  let draining = false
  let closing: Promise<void> | undefined
  const retiring = new Set<Promise<void>>()
  // Generations still finishing their requests after a reload: a drain that times out cuts them off too.
  const retiringGateways = new Set<Gateway>()

  const build = async (cfg: Config): Promise<Active> => {
    const gateway = await createGateway(cfg, {
      ...(opts.bundleWatchIntervalMs !== undefined ? { bundleWatchIntervalMs: opts.bundleWatchIntervalMs } : {}),
      process: proc,
      serverFactory: pub.factory,
      adminServerFactory: adm.factory
    })
    // Fastify calls the factories while createGateway runs; builds never overlap (see reload).
    const built: Active = { config: cfg, hash: configHash(cfg), gateway, pub: pub.pending!, admin: adm.pending! }
    try {
      await gateway.app.ready()
      await gateway.admin.ready()
    } catch (err) {
      await gateway.close()
      throw err
    }
    gateway.health.addCheck('accepting', () => draining ? { ok: false, detail: 'shutting down' } : true)
    const loadedAt = new Date().toISOString()
    gateway.health.addStatus('version', () => version)
    gateway.health.addStatus('config', () => ({ hash: built.hash, loaded_at: loadedAt, ...(opts.configFile !== undefined ? { file: opts.configFile } : {}) }))
    return built
  }

  let active: Active
  try {
    active = await build(config)
  } catch (err) {
    await proc.close()
    throw err
  }
  const log = (): Gateway['app']['log'] => active.gateway.app.log
  pub.activate(active.pub)
  adm.activate(active.admin)
  active.gateway.activate()
  metrics.configLoadedAt.set(Date.now() / 1000)
  try {
    await listen(pub.server as Server, config.listen.host, config.listen.port)
    if (opts.admin !== false) await listen(adm.server as Server, config.admin.host, config.admin.port)
  } catch (err) {
    pub.server?.close()
    adm.server?.close()
    await active.gateway.close()
    await proc.close()
    throw err
  }

  // The old gateway finishes what it started, then releases its pools, watchers and key sources.
  const retire = (old: Active): void => {
    const done = (async () => {
      await Promise.race([old.pub.idle(), sleep(active.config.lifecycle.drainTimeoutMs)])
      await old.gateway.close().catch((err: unknown) => { log().warn({ err: (err as Error).message }, 'closing the previous config failed') })
    })()
    retiring.add(done)
    retiringGateways.add(old.gateway)
    void done.finally(() => { retiring.delete(done); retiringGateways.delete(old.gateway) })
  }

  const swap = async (cfg: Config): Promise<ReloadResult> => {
    const changed = restartOnlyChanges(active.config, cfg)
    if (changed.length > 0) throw new ConfigError(opts.configFile ?? '<config>', changed)
    const next = await build(cfg)
    // Fully built is not enough: a new config whose policy did not load must not replace one whose did.
    if (next.gateway.policy.current === null && active.gateway.policy.current !== null) {
      await next.gateway.close()
      throw new ConfigError(opts.configFile ?? '<config>', [{ path: '/policy/bundle', message: 'the policy bundle did not load' }])
    }
    const old = active
    pub.activate(next.pub)
    adm.activate(next.admin)
    active = next
    next.gateway.activate()
    metrics.configReloads.inc({ result: 'success' })
    metrics.configLoadedAt.set(Date.now() / 1000)
    log().info({ config_hash: next.hash, previous_config_hash: old.hash }, 'config reloaded')
    retire(old)
    watch()
    return { ok: true, configHash: next.hash }
  }

  let reloading: Promise<ReloadResult> = Promise.resolve({ ok: true, configHash: active.hash })
  const reload = async (next?: Config): Promise<ReloadResult> => {
    // Reloads run one at a time, in the order asked for.
    reloading = reloading.then(async () => {
      if (closing !== undefined) return { ok: false, problems: [{ path: '', message: 'shutting down' }] }
      try {
        const cfg = next ?? (opts.configFile !== undefined ? await loadConfig(opts.configFile) : active.config)
        return await swap(cfg)
      } catch (err) {
        const problems = err instanceof ConfigError ? err.problems : [{ path: '', message: (err as Error).message }]
        metrics.configReloads.inc({ result: 'failure' })
        log().error({ problems: problems.map(p => `${p.path || '/'}: ${p.message}`), config_hash: active.hash }, 'config reload refused; the previous config keeps serving')
        return { ok: false, problems }
      }
    })
    return reloading
  }

  // File watching: the config file and the listener's certificate and key, polled (works on every
  // file system and across the rename a certificate rotation tool does).
  let watched: Array<[string, (now: Stats, before: Stats) => void]> = []
  let settle: NodeJS.Timeout | undefined
  const unwatch = (): void => { clearTimeout(settle); for (const [f, l] of watched) unwatchFile(f, l); watched = [] }
  const watch = (): void => {
    unwatch()
    const { lifecycle, listen: l, admin: a } = active.config
    if (!lifecycle.watch || closing !== undefined) return
    for (const f of [opts.configFile, l.tls?.cert, l.tls?.key, l.tls?.clientCa, a.tls?.cert, a.tls?.key, a.tls?.clientCa]) {
      if (f === undefined) continue
      const onChange = (now: Stats, before: Stats): void => {
        if (now.mtimeMs === before.mtimeMs && now.size === before.size) return
        // One reload for changes that come together (a certificate and its key), once they settle.
        clearTimeout(settle)
        settle = setTimeout(() => { void reload() }, lifecycle.watchIntervalMs).unref()
      }
      watchFile(f, { interval: lifecycle.watchIntervalMs, persistent: false }, onChange)
      watched.push([f, onChange])
    }
  }
  watch()

  const close = async (): Promise<void> => {
    closing ??= (async () => {
      draining = true
      pub.drain()
      unwatch()
      await reloading
      const server = pub.server as Server
      // close(): no new connections, idle keep-alive connections are closed now. Busy ones get
      // `Connection: close` on their response and are closed by the sweep once idle.
      const closed = new Promise<void>(resolve => server.close(() => resolve()))
      const sweep = setInterval(() => pub.closeIdle(), 50)
      const drained = await Promise.race([closed.then(() => true), sleep(active.config.lifecycle.drainTimeoutMs).then(() => false)])
      clearInterval(sweep)
      if (!drained) {
        log().warn({ drain_timeout_ms: active.config.lifecycle.drainTimeoutMs }, 'drain timeout reached; closing the remaining connections')
        // Requests still waiting on a function are answered 503 GW_ERR_UPSTREAM_SHUTDOWN with
        // `Connection: close` (through the error handler, so the access line and metrics have them)
        // rather than cut without a reply; a little time for those answers to be written.
        await Promise.all([active.gateway, ...retiringGateways].map(async g => g.cutOff().catch(() => {})))
        await Promise.race([closed, sleep(CUT_OFF_GRACE_MS)])
        pub.closeAll()
        await closed
      }
      await Promise.all(retiring)
      await active.gateway.close()
      await proc.close()
      const admin = adm.server as Server
      if (admin.listening) await new Promise<void>(resolve => { admin.close(() => resolve()); admin.closeAllConnections() })
    })()
    return closing
  }

  return {
    get gateway () { return active.gateway },
    get configHash () { return active.hash },
    url: urlOf(pub.server as Server, config.listen.host, config.listen.tls !== undefined ? 'https' : 'http'),
    adminUrl: opts.admin !== false ? urlOf(adm.server as Server, config.admin.host, config.admin.tls !== undefined ? 'https' : 'http') : '',
    reload,
    close,
    keySnapshots: () => proc.keySnapshots()
  }
}

/**
 * Signals: SIGTERM or SIGINT drains and exits 0 (1 if closing failed); a second one while draining
 * is logged and otherwise ignored. SIGHUP reloads the config.
 */
export function closeOnSignals (running: { close: () => Promise<void>, reload?: () => Promise<unknown> }, log: { info: (o: object, m: string) => void }): void {
  let closing = false
  const onSignal = (signal: NodeJS.Signals): void => {
    if (closing) {
      log.info({ signal }, 'already shutting down')
      return
    }
    closing = true
    log.info({ signal }, 'shutting down: draining in-flight requests')
    running.close().then(() => process.exit(0), () => process.exit(1))
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
  process.on('SIGHUP', () => {
    if (closing || running.reload === undefined) return
    log.info({ signal: 'SIGHUP' }, 'reloading config')
    void running.reload()
  })
}
