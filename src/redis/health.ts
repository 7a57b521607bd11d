import { ReplyError, type Cluster, type Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'

/*
 * Whether a Redis connection is worth asking, decided so that it does not flap.
 *
 * - A closed connection is down at once: there is nothing to ask (so is a command refused because
 *   the connection is not ready).
 * - A command that misses its deadline or gets an error (or odd) reply fails that one request (the
 *   caller decides what that means), and counts one failure. Only `failuresBeforeDown` failures in a row, with no success in
 *   between, mark the connection down. Commands that were already in flight when a failure was
 *   counted do not count again: one stall of Redis that times out fifty concurrent commands is one
 *   failure, not fifty.
 * - The deadline does not blame Redis for the gateway's own stalls. Its timer runs in the timers
 *   phase, before the poll phase reads sockets: after a stall of the event loop, a reply that arrived
 *   in time is still unread when the timer fires. So the verdict waits for setImmediate, after the
 *   poll phase has read it. And while the loop is measurably slow (`loopDelayMs`, the recent p99),
 *   the deadline grows by that delay, at most doubling: a host busy enough to delay our own timers
 *   delays Redis's answer too.
 * - Once down, commands are refused without being sent, and one probe at a time (PING, same
 *   deadline) runs every `probeIntervalMs` until Redis answers; then it is up again.
 *
 * It takes a client and owns none of it but its listeners, so one connection can be shared by
 * everything that talks to the same Redis.
 */

/** The connection is known to be down: not asked, so the request is not held up. */
export class StoreDownError extends Error {
  override name = 'StoreDownError'
  constructor (name = 'store') { super(`${name} is down`) }
}

/** No answer within the deadline. */
export class StoreTimeoutError extends Error {
  override name = 'StoreTimeoutError'
  constructor (ms: number) { super(`no answer within ${Math.round(ms)} ms`) }
}

// A reply that `check` refused: Redis answered, so it counts like an error reply.
class BadReplyError extends Error {
  constructor (override readonly cause: Error) { super(cause.message) }
}

export interface RedisHealthOptions {
  client: Redis | Cluster
  /** What this connection serves, for logs: "rate-limit store". */
  name: string
  commandTimeoutMs: number
  failuresBeforeDown: number
  /** The event loop's recent delay in ms; the deadline grows by it (at most by commandTimeoutMs). */
  loopDelayMs?: () => number
  probeIntervalMs?: number
  log: FastifyBaseLogger
  /** Called on every change of reachability. */
  onState: (up: boolean) => void
}

// long: one closure over the connection's health (failures in a row, deadline, up and down listeners).
export function createRedisHealth (opts: RedisHealthOptions) {
  const { client, log, commandTimeoutMs, failuresBeforeDown } = opts
  const probeIntervalMs = opts.probeIntervalMs ?? 250
  let up = false
  let probing = false
  let closed = false
  let lastError: string | null = null
  let streak = 0
  // Bumped on each counted failure: a command sent before the latest one does not count again.
  let generation = 0

  // Told each time the connection is judged up again (after a probe, or on connecting), when commands
  // can be sent: the shared sets read what they may have missed then, not on the client's 'ready'.
  const upListeners = new Set<() => void>()
  const setUp = (value: boolean): void => {
    if (value) streak = 0
    if (value === up) return
    up = value
    if (value) log.info(`${opts.name} is reachable`)
    else log.warn({ err: lastError }, `${opts.name} is down; routes apply their onStoreError mode`)
    opts.onState(value)
    if (value) for (const fn of upListeners) fn()
  }
  // ioredis reports connection trouble as events; without a listener they would crash the process.
  const onError = (err: Error): void => { lastError = err.message }
  const onReady = (): void => { if (!probing) setUp(true) }
  const onEnd = (): void => setUp(false)
  const onClose = (): void => { if (up) markDown(new Error('connection closed')) }
  client.on('error', onError)
  client.on('ready', onReady)
  client.on('end', onEnd)
  client.on('close', onClose)

  function deadline (): number {
    const delay = opts.loopDelayMs?.() ?? 0
    return commandTimeoutMs + Math.min(commandTimeoutMs, Math.max(0, delay))
  }

  async function withDeadline<T> (command: Promise<T>, ms: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      let settled = false
      const timer = setTimeout(() => {
        // Timers run before the poll phase: let it read a reply that already waits in the socket.
        setImmediate(() => {
          if (settled) return
          settled = true
          reject(new StoreTimeoutError(ms))
        })
      }, ms)
      command.then(value => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        resolve(value)
      }, (err: unknown) => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        reject(err)
      })
    })
  }

  function markDown (err: Error): void {
    lastError = err.message
    setUp(false)
    if (probing || closed) return
    probing = true
    void (async () => {
      while (!closed) {
        await new Promise(resolve => setTimeout(resolve, probeIntervalMs).unref())
        if (closed) break
        try {
          if (await withDeadline(client.ping(), deadline()) === 'PONG') { probing = false; setUp(true); return }
        } catch (e) { lastError = (e as Error).message }
      }
      probing = false
    })()
  }

  function failed (err: Error, sentIn: number): void {
    lastError = err.message
    // Neither late nor answered: the connection failed (not writable, reset, closed), as down as a
    // closed one whatever the count, even before ioredis says 'close'.
    if (!(err instanceof StoreTimeoutError) && !(err instanceof ReplyError) && !(err instanceof BadReplyError)) { markDown(err); return }
    if (sentIn !== generation) return // in flight when an earlier failure was counted: the same incident
    generation++
    if (++streak >= failuresBeforeDown) markDown(err)
  }

  return {
    get up (): boolean { return up },
    get lastError (): string | null { return lastError },
    /** Calls `fn` whenever the connection comes up; returns the way to stop. */
    onUp (fn: () => void): () => void {
      upListeners.add(fn)
      return () => { upListeners.delete(fn) }
    },
    /** Failures counted in a row so far (0 after any success). */
    get failures (): number { return streak },
    /**
     * Runs one command under the deadline; throws StoreDownError without sending it while down.
     * `check` turns the reply into the result, throwing on a reply that is a fault.
     */
    async run<T> (command: () => Promise<unknown>, check: (reply: unknown) => T): Promise<T> {
      if (!up) throw new StoreDownError(opts.name)
      const sentIn = generation
      try {
        const reply = await withDeadline(command(), deadline())
        let result: T
        try { result = check(reply) } catch (err) { throw new BadReplyError(err as Error) }
        streak = 0
        return result
      } catch (err) {
        const e = err instanceof BadReplyError ? err.cause : err as Error
        failed(err as Error, sentIn)
        throw e
      }
    },
    close (): void {
      closed = true
      client.off('error', onError)
      client.off('ready', onReady)
      client.off('end', onEnd)
      client.off('close', onClose)
      // Reported through failed commands from now on; an unhandled 'error' event would crash the process.
      client.on('error', () => {})
    }
  }
}

export type RedisHealth = ReturnType<typeof createRedisHealth>
