import { Cluster, Redis, type RedisOptions } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import type { RateLimitStoreConfig } from '../config/schema.js'
import { createRedisHealth, type RedisHealth } from './health.js'

/*
 * One Redis, one connection: the rate-limit store and both shared deny-list sets (revocations, bans)
 * of a process send their commands over one client, judged by one health (health.ts), and the sets
 * listen on one subscriber. The process holds it (lifecycle/process-state.ts) for as long as any
 * generation uses that Redis, so a reload neither reconnects nor forgets that Redis is down.
 */

export interface RedisConnection {
  /** Commands: never queued while disconnected (enableOfflineQueue: false), deadlines by `health`. */
  readonly client: Redis | Cluster
  /** For listening ('message', 'ready'), made on first use; subscribe through `subscribe`. */
  subscriber: () => Redis | Cluster
  /**
   * Subscribes to a channel, counted: Redis subscriptions are per connection, so the channel is
   * unsubscribed only when its last user leaves (a reload's old and new sets can share a channel).
   */
  subscribe: (channel: string) => Promise<void>
  unsubscribe: (channel: string) => void
  readonly health: RedisHealth
  close: () => void
}

export interface RedisConnectionOptions {
  log: FastifyBaseLogger
  /** Called on every change of reachability. */
  onState?: (up: boolean) => void
  /** The event loop's recent delay in ms (the command deadline allows for it). */
  loopDelayMs?: () => number
}

export function createRedisConnection (store: RateLimitStoreConfig, opts: RedisConnectionOptions): RedisConnection {
  const options: RedisOptions = {
    // No commandTimeout: health.ts sets each command's deadline, one that does not blame Redis for a
    // reply the gateway's busy event loop has not read yet.
    connectTimeout: Math.max(1000, store.commandTimeoutMs),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    // Reconnect for ever, at most once a second: recovery needs no restart.
    retryStrategy: (times: number) => Math.min(times * 100, 1000)
  }
  const make = (offlineQueue: boolean): Redis | Cluster => store.cluster !== undefined
    ? new Cluster([...store.cluster], { redisOptions: options, enableOfflineQueue: offlineQueue, clusterRetryStrategy: options.retryStrategy })
    : new Redis(store.url ?? 'redis://127.0.0.1:6379', { ...options, enableOfflineQueue: offlineQueue })
  const client = make(false)
  let subscriber: Redis | Cluster | null = null
  const channels = new Map<string, number>()
  const health = createRedisHealth({
    client,
    name: 'Redis',
    commandTimeoutMs: store.commandTimeoutMs,
    failuresBeforeDown: store.failuresBeforeDown,
    ...(opts.loopDelayMs !== undefined ? { loopDelayMs: opts.loopDelayMs } : {}),
    log: opts.log,
    onState: up => opts.onState?.(up)
  })
  return {
    client,
    subscriber () {
      if (subscriber === null) {
        subscriber = make(true)
        // Failures show in the subscriber's reconnects and the sets' reads; without a listener
        // ioredis would crash the process on an 'error' event.
        subscriber.on('error', () => {})
      }
      return subscriber
    },
    async subscribe (channel) {
      const n = channels.get(channel) ?? 0
      channels.set(channel, n + 1)
      if (n === 0) await this.subscriber().subscribe(channel)
    },
    unsubscribe (channel) {
      const n = channels.get(channel) ?? 0
      if (n > 1) { channels.set(channel, n - 1); return }
      channels.delete(channel)
      // Not awaited: during an outage the command may never settle, and nothing waits on it.
      subscriber?.unsubscribe(channel).catch(() => {})
    },
    health,
    close () {
      health.close()
      client.disconnect()
      subscriber?.disconnect()
    }
  }
}
