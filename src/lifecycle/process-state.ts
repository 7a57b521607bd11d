import type { FastifyBaseLogger } from 'fastify'
import { Registry } from 'prom-client'
import type { Config, IssuerConfig, RateLimitStoreConfig } from '../config/schema.js'
import { createMetrics, type Metrics } from '../observability/metrics.js'
import { createKeySource, keySourceFingerprint, type KeySnapshot, type KeySource } from '../pipeline/authenticate/key-source.js'
import { createDenyList, type DenyList, type DenyListSync } from '../pipeline/deny-list/deny-list.js'
import { createMemoryLimiter, type MemoryLimiter } from '../pipeline/rate-limit/algorithms.js'
import { createRateLimitStore, type RateLimitStore } from '../pipeline/rate-limit/store.js'
import { createRedisConnection, type RedisConnection } from '../redis/connection.js'

/*
 * Two lifetimes. A generation (routes, policy, upstream pools, settings) is built from one config and
 * replaced whole by a reload. Process state outlives generations: the metrics registry, revocations
 * and bans, the in-memory rate-limit counters, and whatever is expensive or stateful to rebuild — an
 * issuer's fetched key set, a Redis store and the deny-list sync with their connections and synced
 * state. A generation acquires each piece under a key made of the config it depends on: the same key
 * gets the same object, so a reload that does not change an issuer, the store or the sync keeps them
 * (an IdP or Redis outage during a reload costs nothing), and a changed one gets a new object. A piece
 * is closed when the last generation holding it is closed.
 */

export interface Held<T> {
  value: T
  /** Gives the piece back; the last holder's release closes it. Safe to call twice. */
  release: () => Promise<void>
}

export interface ProcessState {
  readonly metrics: Metrics
  /** Revocations and bans of this process, with what the admin API writes through. */
  readonly denyList: DenyList
  /** Rate-limit counters of this process (the memory store, and Redis's local fallback). */
  readonly memoryLimiter: MemoryLimiter
  /** The issuer's key source: the process's one when the issuer's key settings did not change. */
  keySource: (issuer: IssuerConfig, log: FastifyBaseLogger) => Promise<Held<KeySource>>
  rateLimitStore: (config: Config['rateLimit'], log: FastifyBaseLogger) => Promise<Held<RateLimitStore>>
  /** The shared deny-list sets through Redis; null without a Redis store. */
  denyListSync: (config: Pick<Config, 'rateLimit' | 'revocation' | 'bans'>, log: FastifyBaseLogger) => Promise<Held<DenyListSync | null>>
  /** The remote key sets held now, by their source's fingerprint: what a new cluster worker is seeded with. */
  keySnapshots: () => KeySnapshots
  /** What is held now, by kind (for /status and tests). */
  held: () => Record<string, number>
  close: () => Promise<void>
}

interface Entry { value: Promise<unknown>, refs: number, close: (v: never) => unknown }

/** Remote key sets by key-source fingerprint (key-source.ts keySourceFingerprint). */
export type KeySnapshots = Record<string, KeySnapshot>

export interface ProcessStateOptions {
  /** Key sets another process of this gateway holds: each remote key source starts from its own. */
  keySeeds?: KeySnapshots
}

// long: one object of closures over the shared entry table; each method is a few lines.
export function createProcessState (metrics: Metrics = createMetrics(new Registry()), opts: ProcessStateOptions = {}): ProcessState {
  const denyList = createDenyList()
  // The remote key sources, resolved, by fingerprint: their sets are what keySnapshots tells.
  const remoteKeys = new Map<string, KeySource>()
  const memoryLimiter = createMemoryLimiter()
  const entries = new Map<string, Entry>()

  // One connection per Redis (URL or cluster and its settings), shared by the store and the sync.
  const redis = async (store: RateLimitStoreConfig, log: FastifyBaseLogger): Promise<Held<RedisConnection>> =>
    acquire(`redis:${JSON.stringify(store)}`, async () => createRedisConnection(store, {
      log,
      onState: up => metrics.rateLimitStoreUp.set(up ? 1 : 0),
      loopDelayMs: () => metrics.eventLoopDelay.recentSeconds() * 1000
    }), c => c.close())

  async function acquire<T> (key: string, create: () => Promise<T>, close: (v: T) => unknown): Promise<Held<T>> {
    let entry = entries.get(key)
    if (entry === undefined) {
      entry = { value: create(), refs: 0, close: close as (v: never) => unknown }
      entries.set(key, entry)
      // A piece that failed to build is not kept: the next generation tries again.
      entry.value.catch(() => { if (entries.get(key) === entry) entries.delete(key) })
    }
    entry.refs++
    const mine = entry
    const value = await mine.value.catch((err: unknown) => { mine.refs--; throw err }) as T
    let released = false
    return {
      value,
      async release () {
        if (released) return
        released = true
        if (--mine.refs > 0) return
        if (entries.get(key) === mine) entries.delete(key)
        await mine.close(value as never)
      }
    }
  }

  return {
    metrics,
    denyList,
    memoryLimiter,
    async keySource (issuer, log) {
      const fingerprint = await keySourceFingerprint(issuer)
      const seed = fingerprint === null ? undefined : opts.keySeeds?.[fingerprint]
      const create = async (): Promise<KeySource> => createKeySource(issuer, {
        ...(seed !== undefined ? { seed } : {}),
        onFetch: result => metrics.jwksFetches.inc({ issuer: issuer.id, result }),
        onState: (state, detail) => {
          if (state === 'fresh') log.info({ issuer: issuer.id }, 'issuer keys loaded')
          else log.warn({ issuer: issuer.id, state, err: detail }, state === 'stale' ? 'issuer keys are stale: the IdP cannot be reached; the last good keys keep verifying' : 'issuer keys are unavailable')
        }
      })
      // Keys from a file or a secret are read again by every generation: a reload picks up a new file.
      if (fingerprint === null) {
        const keys = await create()
        return { value: keys, release: async () => keys.close() }
      }
      return acquire(`keys:${fingerprint}`, async () => {
        const keys = await create()
        remoteKeys.set(fingerprint, keys)
        return keys
      }, async k => {
        if (remoteKeys.get(fingerprint) === k) remoteKeys.delete(fingerprint)
        await k.close()
      })
    },
    async rateLimitStore (config, log) {
      return acquire(`rate-limit-store:${JSON.stringify(config.store)}`, async () => {
        const connection = config.store.type === 'redis' ? await redis(config.store, log) : null
        try {
          return { store: createRateLimitStore(config, metrics, log, memoryLimiter, connection?.value), connection }
        } catch (err) {
          await connection?.release()
          throw err
        }
      }, async ({ store, connection }) => { await store.close(); await connection?.release() }).then(h => ({ value: h.value.store, release: h.release }))
    },
    async denyListSync (config, log) {
      const key = JSON.stringify([config.rateLimit.store, config.revocation, config.bans])
      return acquire(`deny-list:${key}`, async () => {
        const store = config.rateLimit.store
        const connection = store.type === 'redis' ? await redis(store, log) : null
        try {
          const sync = denyList.share(config, {
            log,
            onRevocationError: () => metrics.revocationStoreErrors.inc(),
            onBanError: () => metrics.banStoreErrors.inc(),
            ...(connection !== null ? { connection: connection.value } : {})
          })
          return { sync, connection }
        } catch (err) {
          await connection?.release()
          throw err
        }
      }, async ({ sync, connection }) => { await sync?.close(); await connection?.release() }).then(h => ({ value: h.value.sync, release: h.release }))
    },
    keySnapshots () {
      const out: KeySnapshots = {}
      for (const [fingerprint, keys] of remoteKeys) {
        const snapshot = keys.snapshot()
        if (snapshot !== null) out[fingerprint] = snapshot
      }
      return out
    },
    held () {
      const counts: Record<string, number> = {}
      for (const key of entries.keys()) {
        const kind = key.slice(0, key.indexOf(':'))
        counts[kind] = (counts[kind] ?? 0) + 1
      }
      return counts
    },
    async close () {
      const all = [...entries.values()]
      entries.clear()
      remoteKeys.clear()
      await Promise.allSettled(all.map(async e => e.close(await e.value as never)))
      denyList.close()
      metrics.close()
    }
  }
}
