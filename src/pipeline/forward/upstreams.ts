import type { FastifyBaseLogger } from 'fastify'
import { Pool } from 'undici'
import type { UpstreamConfig } from '../../config/schema.js'
import type { Metrics } from '../../observability/metrics.js'
import { CIRCUIT_STATE_VALUE, createCircuitBreaker, type CircuitBreaker } from './circuit-breaker.js'
import { createClientTls, type ClientTls } from './client-tls.js'

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
    headersTimeout: config.headersTimeoutMs,
    bodyTimeout: config.bodyTimeoutMs,
    allowH2: config.http2,
    connect: tls.connect
  })
  const cb = config.circuitBreaker
  const gauge = { upstream: config.id }
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
  await Promise.all([...upstreams.values()].map(async u => { u.tls.close(); await u.pool.close() }))
}
