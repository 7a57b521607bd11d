import type { FastifyBaseLogger } from 'fastify'
import { Pool, type Dispatcher } from 'undici'
import type { UpstreamConfig } from '../../config/schema.js'
import type { Metrics } from '../../observability/metrics.js'
import { CIRCUIT_STATE_VALUE, createCircuitBreaker, type CircuitBreaker } from './circuit-breaker.js'
import { createClientTls, type ClientTls } from './client-tls.js'
import { exactTimeouts } from './exact-timeouts.js'
import { createUpstreamQueue, UpstreamShutdown, type UpstreamQueue } from './upstream-queue.js'

/*
 * One connection pool per upstream, built at start and closed with the gateway: keep-alive HTTP/1.1,
 * TLS verification always on (never relaxed here), TLS 1.2+, SNI from config and never from the
 * client, and the gateway's client certificate for mutual TLS, reloaded when it changes on disk
 * (client-tls.ts). undici's request API does not follow redirects: a 3xx goes back to the client.
 */

export interface Upstream {
  id: string
  /** Path of the upstream URL without a trailing slash ('' for the root). */
  basePath: string
  host: string
  pool: Pool
  /** The pool behind its interceptors: what requests are sent through. */
  dispatcher: Dispatcher
  queue: UpstreamQueue
  /** Retry-After of a 503 GW_ERR_UPSTREAM_BUSY, in seconds. */
  busyRetryAfter: string
  tls: ClientTls
  breaker: CircuitBreaker | null
  headersTimeoutMs: number
  bodyTimeoutMs: number
  totalTimeoutMs: number
  retryConnectFailures: boolean
  /** Requests in flight per caller, when the upstream caps them; entries go when they reach zero. */
  inFlight: Map<string, number> | null
  maxConcurrentPerIdentity: number
}

export interface UpstreamsOptions {
  log: FastifyBaseLogger
  metrics: Metrics
}

export async function createUpstream (config: UpstreamConfig, { log, metrics }: UpstreamsOptions): Promise<Upstream> {
  const url = new URL(config.url)
  const tls = await createClientTls(config, { log, metrics })
  const pool = new Pool(url.origin, {
    connections: config.connections,
    // Without a Keep-Alive hint from the function, and as the upper bound of one (schema.ts says why).
    keepAliveTimeout: config.keepAliveTimeoutMs,
    keepAliveMaxTimeout: config.keepAliveTimeoutMs,
    // Enforced by exactTimeouts instead (undici's own fire up to a second late).
    headersTimeout: 0,
    bodyTimeout: 0,
    allowH2: config.http2,
    connect: tls.connect
  })
  const gauge = { upstream: config.id }
  const queue = createUpstreamQueue(pool, {
    maxQueue: config.maxQueue,
    queueTimeoutMs: config.queueTimeoutMs,
    fair: config.queueFairness === 'per-identity',
    onWaiting: delta => metrics.upstreamQueued.inc(gauge, delta)
  })
  // compose: the last interceptor is the outermost, so a request waits for a connection first.
  const dispatcher = pool.compose(exactTimeouts({ headersTimeoutMs: config.headersTimeoutMs, bodyTimeoutMs: config.bodyTimeoutMs }), queue.interceptor)
  const cb = config.circuitBreaker
  const breaker = cb.enabled
    ? createCircuitBreaker({
      failures: cb.failures,
      openMs: cb.openMs,
      onChange: state => {
        metrics.upstreamCircuitState.set(gauge, CIRCUIT_STATE_VALUE[state])
        log.warn({ upstream: config.id, state }, 'upstream circuit changed state')
      }
    })
    : null
  if (breaker !== null) metrics.upstreamCircuitState.set(gauge, CIRCUIT_STATE_VALUE.closed)
  return {
    id: config.id,
    basePath: url.pathname.replace(/\/$/, ''),
    host: url.host,
    pool,
    dispatcher,
    queue,
    busyRetryAfter: String(Math.max(1, Math.ceil(config.queueTimeoutMs / 1000))),
    tls,
    breaker,
    headersTimeoutMs: config.headersTimeoutMs,
    bodyTimeoutMs: config.bodyTimeoutMs,
    totalTimeoutMs: config.totalTimeoutMs,
    retryConnectFailures: config.retryConnectFailures,
    inFlight: config.maxConcurrentPerIdentity !== undefined ? new Map() : null,
    maxConcurrentPerIdentity: config.maxConcurrentPerIdentity ?? Infinity
  }
}

export async function createUpstreams (configs: readonly UpstreamConfig[], opts: UpstreamsOptions): Promise<Map<string, Upstream>> {
  const upstreams = new Map<string, Upstream>()
  try {
    for (const c of configs) upstreams.set(c.id, await createUpstream(c, opts))
  } catch (err) {
    await closeUpstreams(upstreams)
    throw err
  }
  return upstreams
}

export async function closeUpstreams (upstreams: Map<string, Upstream>): Promise<void> {
  await Promise.all([...upstreams.values()].map(async u => {
    u.tls.close()
    u.queue.close(new UpstreamShutdown())
    // A pool cut off at the drain timeout (cutOffUpstreams) is already destroyed; close() would throw.
    if (!u.pool.destroyed) await u.pool.close()
  }))
}

/**
 * The drain timeout passed: every exchange still waiting on a function ends now with UpstreamShutdown
 * (503 GW_ERR_UPSTREAM_SHUTDOWN when nothing of its answer was sent yet), through undici's own
 * destroy, which fails each queued and running request of the pool with that error.
 */
export async function cutOffUpstreams (upstreams: Map<string, Upstream>): Promise<void> {
  await Promise.all([...upstreams.values()].map(async u => {
    const err = new UpstreamShutdown()
    u.queue.close(err)
    if (!u.pool.destroyed) await u.pool.destroy(err)
  }))
}
