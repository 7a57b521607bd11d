import { Cluster, type Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { RateLimitStoreConfig } from '../../config/schema.js'
import { createRedisConnection, type RedisConnection } from '../../redis/connection.js'
import { createTurnQueue } from '../../util/turn-queue.js'
import { gcraParams, type LimitSpec, type Verdict } from './algorithms.js'

/*
 * The shared store. Each algorithm is one Lua script on one key, so a decision is atomic in Redis and
 * exact across replicas (and works unchanged on Redis Cluster: one key, one slot).
 *
 * Faults are bounded: every command has a deadline (commandTimeoutMs), nothing is queued while the
 * connection is down (enableOfflineQueue: false), and after failuresBeforeDown failures in a row the
 * store is marked down and skipped outright while one probe at a time (PING) waits for it to answer
 * again (redis/health.ts). So a hanging Redis (SIGSTOP) costs each request at most one deadline, and
 * no queue of waiting commands grows.
 */

// Fixed window: refuse without counting when the cost does not fit, so refusals never eat quota.
// Returns {allowed, remaining, ttl ms}.
const FIXED_WINDOW = `
local max, window, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  if cost > max then return {0, max, window} end
  redis.call('SET', KEYS[1], cost, 'PX', window)
  return {1, max - cost, window}
end
local count = tonumber(redis.call('GET', KEYS[1]))
if count + cost > max then return {0, max - count, ttl} end
count = redis.call('INCRBY', KEYS[1], cost)
return {1, max - count, ttl}
`

// GCRA on Redis's clock, in integer microseconds. Returns {allowed, remaining, reset us, retry us}.
const GCRA = `
local interval, tolerance, cost = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local nxt = tat + cost * interval
local allow_at = nxt - tolerance
if now < allow_at then
  return {0, math.floor((tolerance - (tat - now)) / interval), tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', nxt), 'PX', math.ceil((nxt - now) / 1000) + 1)
return {1, math.floor((tolerance - (nxt - now)) / interval), nxt - now, 0}
`

type Script = 'portcullisFixedWindow' | 'portcullisGcra'
type ScriptArgs = [key: string, ...numbers: number[]]
type Scripts = Record<Script, (...args: ScriptArgs) => unknown>
type ScriptClient = (Redis | Cluster) & Scripts
type Send = (script: Script, args: ScriptArgs) => Promise<unknown>

interface Queued { script: Script, args: ScriptArgs, resolve: (reply: unknown) => void, reject: (err: unknown) => void }

/*
 * The commands of one event-loop turn go to Redis in one write, as one pipeline: under load a turn
 * holds many requests, and one write and one read for all of them cost the gateway and Redis less than
 * one each. Each pipeline is sent at once, whatever is still in flight, so a slow Redis delays a command
 * by its own wait only. (ioredis's enableAutoPipelining holds a pipeline back until the previous one
 * has answered: when Redis paused, commands waited twice and missed their deadline.) Each command keeps
 * its own reply or error, and its own deadline (health.run). Redis Cluster takes a pipeline only within
 * one slot: there each command goes alone.
 */
function createSender (client: ScriptClient): Send {
  const alone: Send = (script, args) => client[script](...args) as Promise<unknown>
  if (client instanceof Cluster) return alone
  const sendAll = async (jobs: Queued[]): Promise<void> => {
    if (jobs.length === 1) {
      const job = jobs[0]!
      job.resolve(await alone(job.script, job.args))
      return
    }
    const pipeline = client.pipeline()
    for (const job of jobs) (pipeline as unknown as Scripts)[job.script](...job.args)
    const results = await pipeline.exec()
    for (let i = 0; i < jobs.length; i++) {
      const [err, reply] = results?.[i] ?? [new Error('no reply for a pipelined command'), null]
      if (err !== null) jobs[i]!.reject(err)
      else jobs[i]!.resolve(reply)
    }
  }
  // Whatever fails, in ioredis or here, fails the requests of the turn (a promise settles only once).
  const queue = createTurnQueue<Queued>(jobs => {
    sendAll(jobs).catch((err: unknown) => { for (const job of jobs) job.reject(err) })
  })
  return (script, args) => new Promise((resolve, reject) => { queue({ script, args, resolve, reject }) })
}

/** A reply that is not the script's array of integers is a store fault, never a verdict. */
export class StoreReplyError extends Error {
  override name = 'StoreReplyError'
  constructor () { super('unexpected reply from the rate-limit store') }
}

export { StoreDownError } from '../../redis/health.js'

const integers = (n: number) => (reply: unknown): number[] => {
  if (!Array.isArray(reply) || reply.length !== n || !reply.every(v => Number.isSafeInteger(v))) throw new StoreReplyError()
  return reply as number[]
}

export interface RedisStoreEvents {
  /** Called on every change of reachability. */
  onState: (up: boolean) => void
  /** The event loop's recent delay in ms, which the command deadline allows for. */
  loopDelayMs?: () => number
}

export function createRedisStore (config: RateLimitStoreConfig, log: FastifyBaseLogger, events: RedisStoreEvents, shared?: RedisConnection) {
  // The process's connection to this Redis when it has one; else one of our own (tests, tools).
  const connection = shared ?? createRedisConnection(config, { log, onState: events.onState, ...(events.loopDelayMs !== undefined ? { loopDelayMs: events.loopDelayMs } : {}) })
  const { health } = connection
  const client = connection.client as ScriptClient
  client.defineCommand('portcullisFixedWindow', { numberOfKeys: 1, lua: FIXED_WINDOW })
  client.defineCommand('portcullisGcra', { numberOfKeys: 1, lua: GCRA })
  const send = createSender(client)

  return {
    get up (): boolean { return health.up },
    get lastError (): string | null { return health.lastError },
    async consume (key: string, cost: number, spec: LimitSpec): Promise<Verdict> {
      if (spec.algorithm === 'gcra') {
        const { intervalUs, toleranceUs } = gcraParams(spec)
        const [allowed, remaining, resetUs, retryUs] = await health.run(() => send('portcullisGcra', [key, intervalUs, toleranceUs, cost]), integers(4)) as [number, number, number, number]
        return { allowed: allowed === 1, remaining: Math.max(0, remaining), resetMs: resetUs / 1000, retryAfterMs: retryUs / 1000 }
      }
      const [allowed, remaining, ttl] = await health.run(() => send('portcullisFixedWindow', [key, spec.max, spec.windowMs, cost]), integers(3)) as [number, number, number]
      return { allowed: allowed === 1, remaining: Math.max(0, remaining), resetMs: ttl, retryAfterMs: allowed === 1 ? 0 : ttl }
    },
    async close (): Promise<void> {
      if (shared === undefined) connection.close()
    }
  }
}

export type RedisStore = ReturnType<typeof createRedisStore>
