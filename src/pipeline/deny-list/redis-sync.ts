import { Cluster, Redis, type RedisOptions } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { RateLimitStoreConfig } from '../../config/schema.js'
import { isRevocation, type Revocation, type RevocationKind, type RevocationList } from './revocations.js'

/*
 * Revocations shared by every replica through the rate-limit store's Redis: a hash holds them all
 * (field kind:value, value JSON), and every change is also published on a channel of the same name.
 * A replica reads the whole hash at start, on every (re)connection of its subscriber and every
 * syncIntervalMs, so one that starts later, reconnects or missed a message still converges; the
 * messages make a change reach running replicas at once. Redis is the source of truth, except when
 * it comes back empty (see readAll).
 */

type Message = { op: 'add', revocation: Revocation } | { op: 'remove', kind: RevocationKind, value: string }

export interface RevocationSyncOptions {
  store: RateLimitStoreConfig
  key: string
  syncIntervalMs: number
  list: RevocationList
  log: FastifyBaseLogger
  onError: () => void
}

export interface RevocationSync {
  /** True once the shared set has been read at least once: before that, nothing can be checked. */
  readonly synced: boolean
  readonly up: boolean
  /** Resolves after the first full read, or after `timeoutMs` (then `synced` stays false). */
  ready: (timeoutMs: number) => Promise<void>
  add: (r: Revocation) => Promise<void>
  remove: (kind: RevocationKind, value: string) => Promise<boolean>
  close: () => Promise<void>
}

const field = (kind: RevocationKind, value: string): string => `${kind}:${value}`

export function createRevocationSync (opts: RevocationSyncOptions): RevocationSync {
  const { store, key, list, log } = opts
  const options: RedisOptions = {
    commandTimeout: Math.max(1000, store.commandTimeoutMs),
    connectTimeout: Math.max(1000, store.commandTimeoutMs),
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: (times: number) => Math.min(times * 100, 1000)
  }
  const connect = (): Redis | Cluster => store.cluster !== undefined
    ? new Cluster([...store.cluster], { redisOptions: options, enableOfflineQueue: false, clusterRetryStrategy: options.retryStrategy })
    : new Redis(store.url ?? 'redis://127.0.0.1:6379', options)
  const client = connect()
  // The subscriber queues its SUBSCRIBE until connected and repeats it after every reconnect.
  const subscriber = store.cluster !== undefined
    ? new Cluster([...store.cluster], { redisOptions: options, enableOfflineQueue: true, clusterRetryStrategy: options.retryStrategy })
    : new Redis(store.url ?? 'redis://127.0.0.1:6379', { ...options, enableOfflineQueue: true })

  let synced = false
  let up = false
  let closed = false
  let firstSync: () => void = () => {}
  const firstSynced = new Promise<void>(resolve => { firstSync = resolve })

  const fail = (err: unknown, what: string): void => {
    opts.onError()
    log.warn({ err: (err as Error).message }, `revocation store: ${what} failed`)
  }
  client.on('error', () => {}) // reported through failed commands; without a listener ioredis would crash the process
  subscriber.on('error', () => {})
  client.on('close', () => { up = false })

  async function readAll (): Promise<void> {
    if (closed) return
    try {
      const all = await client.hgetall(key)
      const now = Date.now()
      const current: Revocation[] = []
      const expired: string[] = []
      for (const [f, text] of Object.entries(all)) {
        let r: unknown
        try { r = JSON.parse(text) } catch {}
        if (isRevocation(r) && r.until > now) current.push(r)
        else expired.push(f)
      }
      const local = list.list()
      if (Object.keys(all).length === 0 && local.length > 0) {
        // An empty set while this replica holds revocations: Redis lost its data (restarted without
        // persistence). Put this replica's copy back rather than let everyone forget; a removal that
        // this replica missed can come back this way, which errs on the side of refusing.
        log.warn({ revocations: local.length }, 'revocation set is empty in Redis; restoring it from this replica')
        await client.hset(key, Object.fromEntries(local.map(r => [field(r.kind, r.value), JSON.stringify(r)])))
        current.push(...local)
      }
      list.replace(current)
      // Redis 7.0 has no per-field expiry: whoever reads the set sweeps what has run out.
      if (expired.length > 0) await client.hdel(key, ...expired)
      up = true
      if (!synced) { synced = true; firstSync() }
    } catch (err) {
      up = false
      fail(err, 'reading the revocation set')
    }
  }

  subscriber.on('message', (_channel: string, text: string) => {
    let m: Message | undefined
    try { m = JSON.parse(text) as Message } catch {}
    if (m?.op === 'add' && isRevocation(m.revocation)) list.add(m.revocation)
    else if (m?.op === 'remove' && typeof m.value === 'string') list.remove(m.kind, m.value)
  })
  // 'ready' after each (re)connection: the subscription is back; read what may have been missed.
  subscriber.on('ready', () => { void readAll() })
  subscriber.subscribe(key).catch((err: unknown) => { fail(err, 'subscribing') })
  client.on('ready', () => { void readAll() })
  const timer = setInterval(() => { void readAll() }, opts.syncIntervalMs).unref()

  return {
    get synced () { return synced },
    get up () { return up },
    async ready (timeoutMs) {
      let timeout: NodeJS.Timeout | undefined
      await Promise.race([firstSynced, new Promise<void>(resolve => { timeout = setTimeout(resolve, timeoutMs) })])
      clearTimeout(timeout)
    },
    // Stored first, then published: a replica that reads the hash after the message still sees it.
    async add (r) {
      try {
        await client.hset(key, field(r.kind, r.value), JSON.stringify(r))
        await client.publish(key, JSON.stringify({ op: 'add', revocation: r } satisfies Message))
      } catch (err) {
        fail(err, 'storing a revocation')
        throw err
      }
      list.add(r)
    },
    async remove (kind, value) {
      let removed: number
      try {
        removed = await client.hdel(key, field(kind, value))
        await client.publish(key, JSON.stringify({ op: 'remove', kind, value } satisfies Message))
      } catch (err) {
        fail(err, 'removing a revocation')
        throw err
      }
      return list.remove(kind, value) || removed > 0
    },
    async close () {
      closed = true
      clearInterval(timer)
      client.disconnect()
      subscriber.disconnect()
    }
  }
}
