import type { FastifyBaseLogger } from 'fastify'
import type { RateLimitStoreConfig } from '../../config/schema.js'
import { createRedisConnection, type RedisConnection } from '../../redis/connection.js'

/*
 * A set of records shared by every replica through Redis: a hash (field `kind:value`, value JSON with
 * an `until` in it), every change also published on a channel of the same name. A replica reads the
 * whole hash at start, on every (re)connection of its subscriber and every syncIntervalMs, so one that
 * starts later, reconnects or missed a message still converges; the messages make a change reach
 * running replicas at once. What a record is and what a full read means for the local copy is the
 * adapter's (revocation-sync.ts, ban-sync.ts); this is the same for both.
 */

export type Message = { op: 'put', record: unknown } | { op: 'delete', field: string }

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

export interface SyncOptions {
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

/** What an adapter says about its records. */
export interface Records<T> {
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

/** `kind:value` → [kind, value]; the value may itself hold colons (an IPv6 network, a subject). */
export function splitField (field: string): [string, string] {
  const i = field.indexOf(':')
  return [field.slice(0, i), field.slice(i + 1)]
}

/** An adapter's set: the shared set with its own methods added or put replaced; synced and up stay live. */
export function withMethods<T, X extends object> (shared: SharedRecords<T>, more: X): Omit<SharedRecords<T>, keyof X> & X {
  return Object.defineProperties({ ...shared, ...more }, {
    synced: { get: () => shared.synced, enumerable: true },
    up: { get: () => shared.up, enumerable: true }
  })
}

/** The hash's fields split into live records and expired ones (field, value pairs, for the sweep). */
function partition<T> (all: Record<string, string>, records: Records<T>, now: number): { live: T[], expired: string[] } {
  const live: T[] = []
  const expired: string[] = []
  for (const [f, text] of Object.entries(all)) {
    let parsed: unknown
    try { parsed = JSON.parse(text) } catch {}
    const r = records.parse(parsed)
    if (r !== null && records.until(r) > now) live.push(r)
    else expired.push(f, text)
  }
  return { live, expired }
}

function toMessage<T> (text: string, records: Records<T>): Message | null {
  let raw: unknown
  try { raw = JSON.parse(text) } catch { return null }
  const op = (raw as Message | null)?.op
  const m = op === 'put' || op === 'delete' ? raw as Message : records.legacy?.toMessage(raw) ?? null
  return m !== null && typeof m === 'object' ? m : null
}

// long: one closure over the set's connection and sync state, shared by the full read, the messages, put and delete.
export function createSharedRecords<T> (opts: SyncOptions, records: Records<T>): SharedRecords<T> {
  const { key, log } = opts
  const connection = opts.connection ?? createRedisConnection(opts.store, { log })
  const { client, health } = connection
  const subscriber = connection.subscriber()
  // Every command under the connection's deadline and health: refused at once while Redis is down.
  const run = async <R>(command: () => Promise<R>): Promise<R> => health.run(command, reply => reply as R)
  const state = { synced: false, up: false, closed: false }
  let firstSync: () => void = () => {}
  const firstSynced = new Promise<void>(resolve => { firstSync = resolve })
  const fail = (err: unknown, what: string): void => {
    opts.onError()
    log.warn({ err: (err as Error).message }, `${records.what} store: ${what} failed`)
  }
  const onClose = (): void => { state.up = false }
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
    if (state.closed) return
    const during: Message[] = []
    duringReads.add(during)
    try {
      const all = await run(async () => client.hgetall(key))
      const { live, expired } = partition(all, records, Date.now())
      const restore = records.onRead(live, Object.keys(all).length)
      for (const m of during) apply(m)
      if (restore.length > 0) await run(async () => client.hset(key, Object.fromEntries(restore.map(r => [records.field(r), JSON.stringify(r)]))))
      // Redis 7.0 has no per-field expiry: whoever reads the set sweeps what has run out.
      if (expired.length > 0) await run(async () => client.eval(DELETE_IF_UNCHANGED, 1, key, ...expired))
      state.up = true
      if (!state.synced) { state.synced = true; firstSync() }
    } catch (err) {
      state.up = false
      fail(err, `reading the ${records.what} set`)
    } finally {
      duringReads.delete(during)
    }
  }

  // The subscriber may be shared with the other set: each listens to its own channel only.
  const onMessage = (channel: string, text: string): void => {
    const m = channel === key ? toMessage(text, records) : null
    if (m === null) return
    for (const during of duringReads) during.push(m)
    apply(m)
  }
  subscriber.on('message', onMessage)
  // After the subscriber reconnects (its subscriptions are back), read what may have been missed;
  // after the command connection comes back, the health says so once commands can be sent.
  const onReady = (): void => { if (health.up) void readAll() }
  subscriber.on('ready', onReady)
  connection.subscribe(key).catch((err: unknown) => { fail(err, 'subscribing') })
  const stopOnUp = health.onUp(() => { void readAll() })
  // A connection already up (shared with a store) says so no more: read now.
  if (health.up) void readAll()
  const timer = setInterval(() => { void readAll() }, opts.syncIntervalMs).unref()

  // Stored first, then published: a replica that reads the hash after the message still sees it.
  const announce = async (message: Message, legacy: unknown): Promise<void> => {
    await run(async () => client.publish(key, JSON.stringify(message)))
    if (records.legacy !== undefined) await run(async () => client.publish(key, JSON.stringify(legacy)))
  }
  const failing = async <R>(what: string, work: () => Promise<R>): Promise<R> => {
    try { return await work() } catch (err) { fail(err, what); throw err }
  }

  return {
    get synced () { return state.synced },
    get up () { return state.up },
    async ready (timeoutMs) {
      let timeout: NodeJS.Timeout | undefined
      await Promise.race([firstSynced, new Promise<void>(resolve => { timeout = setTimeout(resolve, timeoutMs) })])
      clearTimeout(timeout)
    },
    put: async (r) => failing(`storing a ${records.what}`, async () => {
      if (records.keepLonger === true) await run(async () => client.eval(PUT_IF_LONGER, 1, key, records.field(r), JSON.stringify(r), String(records.until(r))))
      else await run(async () => client.hset(key, records.field(r), JSON.stringify(r)))
      await announce({ op: 'put', record: r }, records.legacy?.fromPut(r))
    }),
    delete: async (field) => failing(`removing a ${records.what}`, async () => {
      const removed = await run(async () => client.hdel(key, field))
      await announce({ op: 'delete', field }, records.legacy?.fromDelete(field))
      return removed > 0
    }),
    async close () {
      state.closed = true
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
