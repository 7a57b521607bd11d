import type { FastifyBaseLogger } from 'fastify'
import type { Config, RateLimitStoreConfig } from '../../config/schema.js'
import { createRedisConnection, type RedisConnection } from '../../redis/connection.js'
import type { Ban, BanList, BanScope } from './bans.js'
import { isRevocation, type Revocation, type RevocationKind, type RevocationList } from './revocations.js'

/*
 * Deny-list records shared by every replica through the rate-limit store's Redis: revocations and
 * bans, each in a hash of its own (field `kind:value`, value JSON, an `until` in it), every change also
 * published on a channel of the same name. A replica reads the whole hash at start, on every
 * (re)connection of its subscriber and every syncIntervalMs, so one that starts later, reconnects or
 * missed a message still converges; the messages make a change reach running replicas at once.
 *
 * Revocations: Redis is the source of truth (a full read replaces the local list), except when it
 * comes back empty (see revocationSync). Bans: each replica detects its own and shares them; a full
 * read adds what others imposed and never removes a ban of this replica's.
 */

type Message = { op: 'put', record: unknown } | { op: 'delete', field: string }
// What replicas of the release before this one publish and understand on the revocation channel:
// accepted, and published beside the current form, so that a rolling upgrade loses no revocation.
type LegacyRevocationMessage = { op: 'add', revocation: unknown } | { op: 'remove', kind: string, value: string }

// Deletes fields whose values are still the ones read (ARGV: field, value, field, value ...), so that
// a sweep never removes a record written again since the read.
const DELETE_IF_UNCHANGED = `
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then n = n + redis.call('HDEL', KEYS[1], ARGV[i]) end
end
return n
`
// Stores a record unless the one there lasts longer (ARGV: field, value, until).
const PUT_IF_LONGER = `
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local ok, decoded = pcall(cjson.decode, old)
  if ok and type(decoded) == 'table' and tonumber(decoded['until']) and tonumber(decoded['until']) >= tonumber(ARGV[3]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
`

interface SyncOptions {
  store: RateLimitStoreConfig
  key: string
  syncIntervalMs: number
  log: FastifyBaseLogger
  onError: () => void
  /** The process's connection to this Redis; without it the set opens one of its own. */
  connection?: RedisConnection
}

export interface SharedRecords<T> {
  /** True once the shared set has been read at least once. */
  readonly synced: boolean
  readonly up: boolean
  /** Resolves after the first full read, or after `timeoutMs` (then `synced` stays false). */
  ready: (timeoutMs: number) => Promise<void>
  /** Stores and announces a record; throws when Redis does not take it. */
  put: (record: T) => Promise<void>
  /** Deletes and announces; resolves whether Redis held it. */
  delete: (field: string) => Promise<boolean>
  close: () => Promise<void>
}

interface Records<T> {
  /** Human name for logs: 'revocation' or 'ban'. */
  what: string
  field: (r: T) => string
  parse: (v: unknown) => T | null
  until: (r: T) => number
  /** A full read: the live records and how many fields the hash held. Returns records to store back. */
  onRead: (live: T[], stored: number) => T[]
  onPut: (r: T) => void
  onDelete: (field: string) => void
  /** Keep the record that lasts longer when two are put under one field (bans). */
  keepLonger?: boolean
  /** Also speak the previous release's message format (revocations). */
  legacy?: { toMessage: (m: unknown) => Message | null, fromPut: (r: T) => unknown, fromDelete: (field: string) => unknown }
}

function createSharedRecords<T> (opts: SyncOptions, records: Records<T>): SharedRecords<T> {
  const { store, key, log } = opts
  const connection = opts.connection ?? createRedisConnection(store, { log })
  const { client, health } = connection
  const subscriber = connection.subscriber()
  // Every command under the connection's deadline and health: refused at once while Redis is down.
  const run = async <R>(command: () => Promise<R>): Promise<R> => health.run(command, reply => reply as R)

  let synced = false
  let up = false
  let closed = false
  let firstSync: () => void = () => {}
  const firstSynced = new Promise<void>(resolve => { firstSync = resolve })

  const fail = (err: unknown, what: string): void => {
    opts.onError()
    log.warn({ err: (err as Error).message }, `${records.what} store: ${what} failed`)
  }
  const onClose = (): void => { up = false }
  client.on('close', onClose)

  const apply = (m: Message): void => {
    if (m.op === 'put') {
      const r = records.parse(m.record)
      if (r !== null) records.onPut(r)
    } else if (typeof m.field === 'string') records.onDelete(m.field)
  }
  // Messages that arrive while a full read is on its way: applied again after it, so that a read
  // answered before a change but handled after its message cannot undo the change.
  const duringReads = new Set<Message[]>()

  async function readAll (): Promise<void> {
    if (closed) return
    const during: Message[] = []
    duringReads.add(during)
    try {
      const all = await run(async () => client.hgetall(key))
      const now = Date.now()
      const live: T[] = []
      const expired: string[] = []
      for (const [f, text] of Object.entries(all)) {
        let parsed: unknown
        try { parsed = JSON.parse(text) } catch {}
        const r = records.parse(parsed)
        if (r !== null && records.until(r) > now) live.push(r)
        else expired.push(f, text)
      }
      const restore = records.onRead(live, Object.keys(all).length)
      for (const m of during) apply(m)
      if (restore.length > 0) await run(async () => client.hset(key, Object.fromEntries(restore.map(r => [records.field(r), JSON.stringify(r)]))))
      // Redis 7.0 has no per-field expiry: whoever reads the set sweeps what has run out.
      if (expired.length > 0) await run(async () => client.eval(DELETE_IF_UNCHANGED, 1, key, ...expired))
      up = true
      if (!synced) { synced = true; firstSync() }
    } catch (err) {
      up = false
      fail(err, `reading the ${records.what} set`)
    } finally {
      duringReads.delete(during)
    }
  }

  // The subscriber may be shared with the other set: each listens to its own channel only.
  const onMessage = (channel: string, text: string): void => {
    if (channel !== key) return
    let raw: unknown
    try { raw = JSON.parse(text) } catch { return }
    const m = (raw as Message | null)?.op === 'put' || (raw as Message | null)?.op === 'delete' ? raw as Message : records.legacy?.toMessage(raw) ?? null
    if (m === null || typeof m !== 'object') return
    for (const during of duringReads) during.push(m)
    apply(m)
  }
  subscriber.on('message', onMessage)
  // 'ready' after each (re)connection: the subscription is back; read what may have been missed.
  // After the subscriber reconnects (its subscriptions are back), read what may have been missed;
  // after the command connection comes back, the health says so once commands can be sent.
  const onReady = (): void => { if (health.up) void readAll() }
  subscriber.on('ready', onReady)
  connection.subscribe(key).catch((err: unknown) => { fail(err, 'subscribing') })
  const stopOnUp = health.onUp(() => { void readAll() })
  // A connection already up (shared with a store) says so no more: read now.
  if (health.up) void readAll()
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
    async put (r) {
      try {
        if (records.keepLonger === true) await run(async () => client.eval(PUT_IF_LONGER, 1, key, records.field(r), JSON.stringify(r), String(records.until(r))))
        else await run(async () => client.hset(key, records.field(r), JSON.stringify(r)))
        await run(async () => client.publish(key, JSON.stringify({ op: 'put', record: r } satisfies Message)))
        if (records.legacy !== undefined) await run(async () => client.publish(key, JSON.stringify(records.legacy!.fromPut(r))))
      } catch (err) {
        fail(err, `storing a ${records.what}`)
        throw err
      }
    },
    async delete (field) {
      try {
        const removed = await run(async () => client.hdel(key, field))
        await run(async () => client.publish(key, JSON.stringify({ op: 'delete', field } satisfies Message)))
        if (records.legacy !== undefined) await run(async () => client.publish(key, JSON.stringify(records.legacy!.fromDelete(field))))
        return removed > 0
      } catch (err) {
        fail(err, `removing a ${records.what}`)
        throw err
      }
    },
    async close () {
      closed = true
      clearInterval(timer)
      client.off('close', onClose)
      stopOnUp()
      subscriber.off('ready', onReady)
      subscriber.off('message', onMessage)
      if (opts.connection === undefined) connection.close()
      else connection.unsubscribe(key)
    }
  }
}

/** `kind:value` → [kind, value]; the value may itself hold colons (an IPv6 network, a subject). */
function splitField (field: string): [string, string] {
  const i = field.indexOf(':')
  return [field.slice(0, i), field.slice(i + 1)]
}

export const revocationField = (kind: RevocationKind, value: string): string => `${kind}:${value}`

export interface RevocationSync extends SharedRecords<Revocation> {
  add: (r: Revocation) => Promise<void>
  remove: (kind: RevocationKind, value: string) => Promise<boolean>
}

export function createRevocationSync (opts: SyncOptions & { list: RevocationList }): RevocationSync {
  const { list, log } = opts
  const shared = createSharedRecords<Revocation>(opts, {
    what: 'revocation',
    field: r => revocationField(r.kind, r.value),
    parse: v => isRevocation(v) ? v : null,
    until: r => r.until,
    onRead (live, stored) {
      const local = list.list()
      if (stored === 0 && local.length > 0) {
        // An empty set while this replica holds revocations: Redis lost its data (restarted without
        // persistence). Put this replica's copy back rather than let everyone forget; a removal that
        // this replica missed can come back this way, which errs on the side of refusing.
        log.warn({ revocations: local.length }, 'revocation set is empty in Redis; restoring it from this replica')
        return local
      }
      list.replace(live)
      return []
    },
    onPut: r => { list.add(r) },
    onDelete (field) {
      const [kind, value] = splitField(field)
      list.remove(kind as RevocationKind, value)
    },
    legacy: {
      toMessage (m) {
        const legacy = m as LegacyRevocationMessage | null
        if (legacy?.op === 'add') return { op: 'put', record: legacy.revocation }
        if (legacy?.op === 'remove' && typeof legacy.kind === 'string' && typeof legacy.value === 'string') return { op: 'delete', field: `${legacy.kind}:${legacy.value}` }
        return null
      },
      fromPut: r => ({ op: 'add', revocation: r } satisfies LegacyRevocationMessage),
      fromDelete (field) {
        const [kind, value] = splitField(field)
        return { op: 'remove', kind, value } satisfies LegacyRevocationMessage
      }
    }
  })
  return {
    ...shared,
    get synced () { return shared.synced },
    get up () { return shared.up },
    async add (r) {
      await shared.put(r)
      list.add(r)
    },
    async remove (kind, value) {
      const removed = await shared.delete(revocationField(kind, value))
      return list.remove(kind, value) || removed
    }
  }
}

export const banField = (scope: BanScope, value: string): string => `${scope}:${value}`

function isBan (v: unknown): v is Ban {
  if (v === null || typeof v !== 'object') return false
  const b = v as Record<string, unknown>
  return (b.scope === 'ip' || b.scope === 'sub') && typeof b.value === 'string' && b.value !== '' &&
    Number.isFinite(b.until) && Number.isInteger(b.strikes) && (b.strikes as number) >= 1
}

export interface BanSync extends SharedRecords<Ban> {
  /** Lifts a ban here and on every replica; resolves whether any held it. */
  lift: (scope: BanScope, value: string) => Promise<boolean>
}

export function createBanSync (opts: SyncOptions & { bans: BanList }): BanSync {
  const { bans } = opts
  const shared = createSharedRecords<Ban>(opts, {
    what: 'ban',
    field: b => banField(b.scope, b.value),
    parse: v => isBan(v) ? v : null,
    until: b => b.until,
    onRead (live) {
      for (const b of live) bans.impose(b)
      // A ban that came through Redis and is no longer there was lifted (a message this replica missed).
      const inStore = new Set(live.map(b => banField(b.scope, b.value)))
      bans.keepShared(b => inStore.has(banField(b.scope, b.value)))
      return []
    },
    onPut: b => { bans.impose(b) },
    keepLonger: true,
    onDelete (field) {
      const [scope, value] = splitField(field)
      bans.lift(scope as BanScope, value)
    }
  })
  return {
    ...shared,
    get synced () { return shared.synced },
    get up () { return shared.up },
    // Marked as shared once Redis holds it (its own message does the same, when the subscriber is up).
    async put (ban) {
      await shared.put(ban)
      bans.impose(ban)
    },
    async lift (scope, value) {
      const here = bans.lift(scope, value)
      return await shared.delete(banField(scope, value)) || here
    }
  }
}

export interface DenyListSync {
  revocations: RevocationSync
  bans: BanSync
  /** Resolves once both sets have been read, or after `timeoutMs`. */
  ready: (timeoutMs: number) => Promise<void>
  close: () => Promise<void>
}

/**
 * Both shared sets of one process (a gateway, or the cluster primary's admin API), from the config:
 * null unless the rate-limit store is Redis, through which they are shared.
 */
export function createDenyListSync (
  config: Pick<Config, 'rateLimit' | 'revocation' | 'bans'>,
  deps: { revocations: RevocationList, bans: BanList, log: FastifyBaseLogger, onRevocationError: () => void, onBanError: () => void, connection?: RedisConnection }
): DenyListSync | null {
  const store = config.rateLimit.store
  if (store.type !== 'redis') return null
  // Both sets on one connection: the process's, or one opened here for both.
  const connection = deps.connection ?? createRedisConnection(store, { log: deps.log })
  const revocations = createRevocationSync({
    store, key: config.revocation.keyPrefix, syncIntervalMs: config.revocation.syncIntervalMs, list: deps.revocations, log: deps.log, onError: deps.onRevocationError, connection
  })
  const bans = createBanSync({
    store, key: config.bans.keyPrefix, syncIntervalMs: config.bans.syncIntervalMs, bans: deps.bans, log: deps.log, onError: deps.onBanError, connection
  })
  return {
    revocations,
    bans,
    async ready (timeoutMs) { await Promise.all([revocations.ready(timeoutMs), bans.ready(timeoutMs)]) },
    async close () {
      await Promise.all([revocations.close(), bans.close()])
      if (deps.connection === undefined) connection.close()
    }
  }
}
