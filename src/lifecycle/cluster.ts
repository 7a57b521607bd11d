import cluster, { type Worker } from 'node:cluster'
import { randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { AggregatorRegistry } from 'prom-client'
import { readAdminToken, registerAdminApi } from '../admin/api.js'
import { createAdminListener } from '../admin/listener.js'
import type { Config } from '../config/schema.js'
import { createBanList } from '../pipeline/deny-list/bans.js'
import { createDenyListSync } from '../pipeline/deny-list/redis-sync.js'
import { createRevocationList } from '../pipeline/deny-list/revocations.js'
import type { RunningGateway } from '../server.js'

/*
 * `portcullis start --workers N`: Node's cluster module. Workers each run a whole gateway and share the
 * public port (the primary hands out connections); the primary holds the admin listener alone, so
 * /metrics is one scrape summed across workers (prom-client's AggregatorRegistry) and /readyz is
 * ready only when every worker is. Signals go to the primary, which passes them on: SIGTERM drains
 * every worker, SIGHUP reloads each. A worker that dies unexpectedly is replaced.
 *
 * Rate limits with the memory store are per worker: each worker counts alone, so a client spread over
 * N workers can make up to N times a route's limit. Use a shared store for exact limits; it is also
 * what lets the primary serve the admin API (serveAdminApi).
 */

type Ask = { type: 'portcullis:ask', id: string, what: 'readiness' | 'status' }
type Answer = { type: 'portcullis:answer', id: string, value: unknown }
type Listening = { type: 'portcullis:listening', url: string }

/** In a worker: answer the primary's questions from the running gateway. */
export function serveWorker (running: RunningGateway): void {
  // The metrics registry outlives reloads. Constructing an AggregatorRegistry in a worker is what
  // installs prom-client's reply to the primary's collection request.
  AggregatorRegistry.setRegistries([running.gateway.metrics.registry])
  void new AggregatorRegistry()
  process.on('message', (m: Ask) => {
    if (m?.type !== 'portcullis:ask') return
    const answer = async (): Promise<unknown> => m.what === 'readiness' ? running.gateway.health.readiness() : running.gateway.health.status()
    void answer().then(value => process.send?.({ type: 'portcullis:answer', id: m.id, value } satisfies Answer))
  })
  process.send?.({ type: 'portcullis:listening', url: running.url } satisfies Listening)
}

async function ask (worker: Worker, what: Ask['what']): Promise<unknown> {
  const id = randomUUID()
  return new Promise(resolve => {
    const timer = setTimeout(() => { worker.off('message', onMessage); resolve(undefined) }, 2000)
    const onMessage = (m: Answer): void => {
      if (m?.type !== 'portcullis:answer' || m.id !== id) return
      clearTimeout(timer)
      worker.off('message', onMessage)
      resolve(m.value)
    }
    worker.on('message', onMessage)
    worker.send({ type: 'portcullis:ask', id, what } satisfies Ask)
  })
}

/** In the primary: fork the workers, serve the admin listener, pass signals on. */
export async function runPrimary (config: Config, count: number): Promise<void> {
  const aggregator = new AggregatorRegistry()
  // The same protections as a single process's admin listener (limits, TLS, Host allow-list).
  const admin = createAdminListener({ admin: config.admin, limits: config.limits, logLevel: config.logging.level })
  const shared = await serveAdminApi(config, admin)
  let shuttingDown = false
  const workers = (): Worker[] => Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined)

  admin.get('/metrics', async (_request, reply) => {
    reply.type(aggregator.contentType)
    return aggregator.clusterMetrics()
  })
  admin.get('/healthz', async () => ({ status: 'ok' }))
  admin.get('/readyz', async (_request, reply) => {
    const each = await Promise.all(workers().map(async w => ({ pid: w.process.pid, readiness: await ask(w, 'readiness') as { ready: boolean } | undefined })))
    const ready = !shuttingDown && each.length === count && each.every(w => w.readiness?.ready === true)
    reply.code(ready ? 200 : 503)
    return { status: ready ? 'ready' : 'not ready', checks: { accepting: !shuttingDown, workers: ready }, workers: each }
  })
  admin.get('/status', async () => {
    const first = workers()[0]
    const status = first !== undefined ? await ask(first, 'status') as Record<string, unknown> : {}
    return { ...status, workers: workers().map(w => ({ id: w.id, pid: w.process.pid })) }
  })

  let announced = false
  const fork = (): void => {
    const worker = cluster.fork({ PORTCULLIS_WORKER: '1' })
    worker.on('message', (m: Listening) => {
      if (m?.type !== 'portcullis:listening' || announced) return
      announced = true
      const adminUrl = `${config.admin.tls !== undefined ? 'https' : 'http'}://${config.admin.host}:${(admin.server.address() as { port: number }).port}`
      admin.log.info({ url: m.url, admin: adminUrl, workers: count }, 'portcullis is listening')
    })
  }
  cluster.on('exit', (worker, code, signal) => {
    if (shuttingDown) {
      if (workers().length === 0) void Promise.all([admin.close(), shared?.close()]).then(() => process.exit(0))
      return
    }
    admin.log.error({ worker: worker.id, code, signal }, 'worker exited; starting another')
    fork()
  })

  await admin.listen({ host: config.admin.host, port: config.admin.port })
  for (let i = 0; i < count; i++) fork()

  const onSignal = (signal: NodeJS.Signals): void => {
    if (shuttingDown) { admin.log.info({ signal }, 'already shutting down'); return }
    shuttingDown = true
    admin.log.info({ signal, workers: workers().length }, 'shutting down: draining every worker')
    for (const w of workers()) w.process.kill('SIGTERM')
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
  // SIGHUP reloads the workers; the primary re-reads its admin token, so that a rotated one takes effect.
  process.on('SIGHUP', () => {
    shared?.rereadToken()
    for (const w of workers()) w.process.kill('SIGHUP')
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
  const revocations = createRevocationList()
  const bans = createBanList()
  const onError = (): void => {} // each failure is logged; the workers count theirs in /metrics
  const shared = createDenyListSync(config, { revocations, bans, log: admin.log, onRevocationError: onError, onBanError: onError })
  if (shared === null) {
    bans.close()
    throw new Error('admin.tokenFile (the admin API) with --workers above 1 needs rateLimit.store.type: redis, through which the workers share revocations and bans; or run one process per replica')
  }
  await shared.ready(5000)
  registerAdminApi(admin, { token: () => token, revocations, writer: shared.revocations, bans, banWriter: shared.bans, maxTtlSeconds: config.revocation.maxTtlSeconds })
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
      bans.close()
      await shared.close()
    }
  }
}
