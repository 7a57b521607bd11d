import type { FastifyBaseLogger } from 'fastify'
import type { Config } from '../../config/schema.js'
import { createRedisConnection, type RedisConnection } from '../../redis/connection.js'
import { createBanSync, type BanSync } from './ban-sync.js'
import { createBanList, type BanList, type BanScope } from './bans.js'
import { createRevocationSync, type RevocationSync } from './revocation-sync.js'
import { createRevocationList, type Revocation, type RevocationKind, type RevocationList } from './revocations.js'

/*
 * The deny list of one process: its revocations and bans, their sharing through Redis, and what the
 * admin API writes through. One owner for the gateway (held in process state across reloads,
 * lifecycle/process-state.ts) and for the cluster primary's admin API (lifecycle/cluster.ts).
 */

export interface DenyListSync {
  revocations: RevocationSync
  bans: BanSync
  /** Resolves once both sets have been read, or after `timeoutMs`. */
  ready: (timeoutMs: number) => Promise<void>
  close: () => Promise<void>
}

export interface ShareOptions {
  log: FastifyBaseLogger
  onRevocationError: () => void
  onBanError: () => void
  /** The process's connection to the store's Redis; without it one is opened for both sets. */
  connection?: RedisConnection
}

/** What the admin API changes the lists through: the shared sets when there are, else this process's. */
export interface DenyListWriters {
  writer: { add: (r: Revocation) => Promise<void>, remove: (kind: RevocationKind, value: string) => Promise<boolean> }
  banWriter: { lift: (scope: BanScope, value: string) => Promise<boolean> }
}

export interface DenyList {
  readonly revocations: RevocationList
  readonly bans: BanList
  /** Both sets shared through the rate-limit store's Redis: null unless that store is redis. */
  share: (config: Pick<Config, 'rateLimit' | 'revocation' | 'bans'>, opts: ShareOptions) => DenyListSync | null
  writers: (sync: DenyListSync | null) => DenyListWriters
  close: () => void
}

export function createDenyList (): DenyList {
  const revocations = createRevocationList()
  const bans = createBanList()
  return {
    revocations,
    bans,
    share (config, opts) {
      const store = config.rateLimit.store
      if (store.type !== 'redis') return null
      // Both sets on one connection: the process's, or one opened here for both.
      const connection = opts.connection ?? createRedisConnection(store, { log: opts.log })
      const common = { store, log: opts.log, connection }
      const revocationSync = createRevocationSync({ ...common, key: config.revocation.keyPrefix, syncIntervalMs: config.revocation.syncIntervalMs, list: revocations, onError: opts.onRevocationError })
      const banSync = createBanSync({ ...common, key: config.bans.keyPrefix, syncIntervalMs: config.bans.syncIntervalMs, bans, onError: opts.onBanError })
      return {
        revocations: revocationSync,
        bans: banSync,
        async ready (timeoutMs) { await Promise.all([revocationSync.ready(timeoutMs), banSync.ready(timeoutMs)]) },
        async close () {
          await Promise.all([revocationSync.close(), banSync.close()])
          if (opts.connection === undefined) connection.close()
        }
      }
    },
    writers: sync => ({
      writer: sync?.revocations ?? { add: async r => { revocations.add(r) }, remove: async (kind, value) => revocations.remove(kind, value) },
      banWriter: sync?.bans ?? { lift: async (scope, value) => bans.lift(scope, value) }
    }),
    close () { bans.close() }
  }
}
