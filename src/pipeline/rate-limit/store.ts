import type { FastifyBaseLogger } from 'fastify'
import type { FastifyRateLimitStore } from '@fastify/rate-limit'
import type { Config } from '../../config/schema.js'
import { GW_ERR_RATE_LIMIT_STORE } from '../../errors.js'
import type { Metrics } from '../../observability/metrics.js'
import { createMemoryLimiter, type LimitSpec, type MemoryLimiter, type Verdict } from './algorithms.js'
import { createRedisStore } from './redis-store.js'
import type { RedisConnection } from '../../redis/connection.js'

/** One configured limit, as the store sees it. */
export interface Bucket {
  /** Metric label: the route id, or pre_auth. */
  label: string
  spec: LimitSpec
  onStoreError: 'fail-closed' | 'local'
  /** What this process alone allows while the shared store fails (onStoreError: local). */
  fallback: LimitSpec
}

/**
 * In-process counters outlive reloads (lifecycle/process-state.ts); a limit whose definition changed
 * must not inherit the old one's counts, so each in-process bucket is counted under its definition.
 */
function definitionOf (spec: LimitSpec): string {
  return `\0${spec.algorithm}:${spec.max}:${spec.windowMs}:${spec.burst}`
}

/*
 * @fastify/rate-limit's store contract has a key, a window and a max, but no cost. The key handed to
 * the store is built by this stage (a hash, then NUL, then the cost), so the cost travels after the
 * last NUL, where no hash can put one. A cost of 1, nearly every request's, travels as the hash alone:
 * no string is made or cut apart for it per request.
 */
export function storeKey (hash: string, cost: number): string {
  return cost === 1 ? hash : `${hash}\0${cost}`
}

/**
 * What one process may allow of a shared limit while the shared store fails (onStoreError: local):
 * its share of max and burst, rounded down but at least 1, over the same window. Every replica in
 * fallback counts alone, so with the whole limit each, N replicas would allow N times it.
 */
export function fallbackShare (spec: LimitSpec, share: number): LimitSpec {
  if (share >= 1) return spec
  const part = (n: number): number => Math.max(1, Math.floor(n * share))
  return { ...spec, max: part(spec.max), burst: part(spec.burst) }
}

/** What @fastify/rate-limit reads from a store: current above max refuses, ttl is the Retry-After (or reset). */
function incrResult (v: Verdict, max: number): { current: number, ttl: number } {
  return v.allowed ? { current: max - v.remaining, ttl: v.resetMs } : { current: max + 1, ttl: v.retryAfterMs }
}

/**
 * The store behind every limit: memory alone, or Redis with the in-process limiter as the fallback of
 * limits that choose `onStoreError: local`. Built once at start; `Store` is the class handed to
 * @fastify/rate-limit, one child per configured limit.
 */
export function createRateLimitStore (config: Config['rateLimit'], metrics: Metrics, log: FastifyBaseLogger, memory: MemoryLimiter = createMemoryLimiter(), connection?: RedisConnection) {
  const redis = config.store.type === 'redis'
    ? createRedisStore(config.store, log, {
      onState: up => metrics.rateLimitStoreUp.set(up ? 1 : 0),
      loopDelayMs: () => metrics.eventLoopDelay.recentSeconds() * 1000
    }, connection)
    : null
  metrics.rateLimitStoreUp.set(redis === null || redis.up ? 1 : 0) // Redis is up once it has said so (a shared connection may have)
  const prefix = config.store.keyPrefix

  // The memory store answers at once: no promise is made for it (issue #19: this runs per request).
  function consume (key: string, cost: number, bucket: Bucket, definition: string): Verdict | Promise<Verdict> {
    if (redis === null) return memory.consume(key, cost, bucket.spec, definition)
    return redis.consume(prefix + key, cost, bucket.spec).catch(() => {
      const action = bucket.onStoreError === 'local' ? 'local' : 'fail_closed'
      metrics.rateLimitStoreErrors.inc({ route: bucket.label, action })
      if (action === 'local') return memory.consume(key, cost, bucket.fallback, definition)
      throw new GW_ERR_RATE_LIMIT_STORE()
    })
  }

  class GatewayStore implements FastifyRateLimitStore {
    private readonly bucket: Bucket | null
    private readonly definition: string
    // The plugin builds one store from its own options, then a child per createRateLimit() call,
    // from that call's options: ours carry the gateway's bucket.
    constructor (options?: object) {
      this.bucket = (options as { gateway?: Bucket } | undefined)?.gateway ?? null
      this.definition = this.bucket === null ? '' : definitionOf(this.bucket.spec) + definitionOf(this.bucket.fallback)
    }

    child (params: object): FastifyRateLimitStore {
      return new GatewayStore(params)
    }

    incr (key: string, callback: (error: Error | null, result?: { current: number, ttl: number }) => void, _timeWindow: number, max: number): void {
      const bucket = this.bucket
      if (bucket === null) return callback(new Error('rate limit created without a gateway bucket'))
      const sep = key.lastIndexOf('\0')
      const verdict = sep === -1
        ? consume(key, 1, bucket, this.definition)
        : consume(key.slice(0, sep), Number(key.slice(sep + 1)), bucket, this.definition)
      if (verdict instanceof Promise) verdict.then(v => callback(null, incrResult(v, max)), (err: Error) => callback(err))
      else callback(null, incrResult(verdict, max))
    }
  }

  return {
    Store: GatewayStore,
    /** For /readyz: what the store is and whether it answers (memory always does). */
    detail (): { type: 'memory' | 'redis', up: boolean, last_error?: string } {
      if (redis === null) return { type: 'memory', up: true }
      return { type: 'redis', up: redis.up, ...(redis.up || redis.lastError === null ? {} : { last_error: redis.lastError }) }
    },
    /** Buckets held in this process (the memory store, or the fallback): for leak checks. */
    get localBuckets (): number { return memory.size },
    async close (): Promise<void> { await redis?.close() }
  }
}

export type RateLimitStore = ReturnType<typeof createRateLimitStore>
