import type { EventEmitter } from 'node:events'
import { errors as undiciErrors, type Dispatcher, type Pool } from 'undici'
import { callerOf } from './caller-cap.js'
import { fail } from './exchange.js'
import { createWaitingLine } from './waiting-line.js'

/*
 * A bounded wait for a connection, per upstream (Envoy's max_pending_requests, plus a time bound).
 * When every connection of the pool is busy, at most `maxQueue` requests wait, each at most
 * `queueTimeoutMs`; the others fail at once with UpstreamQueueFull, the late ones with
 * UpstreamQueueTimeout, and the forwarder answers both 503 GW_ERR_UPSTREAM_BUSY with Retry-After.
 *
 * What undici gives is used: dispatch() returning false and the pool's 'drain' event say when the pool
 * is saturated and when it takes requests again. The waiting itself is held here, not in the pool's
 * own queue, because undici has no way to take a request out of that queue: a request aborted there
 * stays queued until a connection frees up (its promise does not even settle before then), and is then
 * aborted on that connection, which destroys it. Holding the waiters here makes their count exact and
 * lets a timed-out or abandoned one leave without costing a connection. (undici hands a connection
 * back one event-loop turn after its response ended; until then it counts as busy, so with maxQueue 0
 * a request arriving in that very turn is refused.)
 *
 * Per-identity fairness (`fair`, issue #21): one caller (issuer and subject; client address when
 * anonymous) must not keep the others out. An HTTP/2 client with a valid token can open and reset
 * streams faster than they are served, and would fill a first-come-first-served queue with them. So
 * waiters leave in turn by caller (waiting-line.ts), and a caller that finds the queue full takes the
 * place of the newest waiter of the caller holding the most, as long as that one still holds at least
 * as many afterwards; the displaced request gets UpstreamQueueFull (503) as if it had come last.
 * A caller alone may still use the whole queue: its share only shrinks when others wait.
 */

export class UpstreamQueueFull extends Error { override name = 'UpstreamQueueFull' }
export class UpstreamQueueTimeout extends Error { override name = 'UpstreamQueueTimeout' }
/** The gateway stopped waiting for its upstreams (drain timeout): see UpstreamQueue.close. */
export class UpstreamShutdown extends Error { override name = 'UpstreamShutdown' }

type Handler = Dispatcher.DispatchHandler
type Signal = EventEmitter | AbortSignal

interface Waiter {
  who: string
  opts: Dispatcher.DispatchOptions
  handler: Handler
  timer: NodeJS.Timeout
  signal: Signal | null
  onAbort: (reason?: unknown) => void
}

export interface UpstreamQueue {
  interceptor: Dispatcher.DispatcherComposeInterceptor
  /**
   * Refuses at once (UpstreamQueueFull) a request that would be refused anyway, before any credential
   * is made for it: for the front of the forward chain.
   */
  shed: Dispatcher.DispatcherComposeInterceptor
  /** Requests waiting now. */
  readonly waiting: number
  /** Whether the queue holds maxQueue requests (a caller with fewer than another may still get in). */
  readonly full: boolean
  /** Fails every waiting request with `err` (the pool is being destroyed; nothing would wake them). */
  close: (err: Error) => void
}

function listen (signal: Signal, fn: (reason?: unknown) => void): void {
  if ('addEventListener' in signal) signal.addEventListener('abort', fn, { once: true })
  else signal.once('abort', fn)
}

function unlisten (signal: Signal, fn: (reason?: unknown) => void): void {
  if ('removeEventListener' in signal) signal.removeEventListener('abort', fn)
  else signal.off('abort', fn)
}

export interface UpstreamQueueOptions {
  maxQueue: number
  queueTimeoutMs: number
  /** Waiters leave in turn by caller, and a full queue makes room for a caller holding fewer. */
  fair?: boolean
  /** Told each time a request starts (+1) or stops (-1) waiting: the queue gauge. */
  onWaiting?: (delta: 1 | -1) => void
}

// long: the waiting line, the saturation flag and the pool's dispatch are one state shared by both interceptors and the drain listener; split, they would pass it around.
export function createUpstreamQueue (pool: Pool, { maxQueue, queueTimeoutMs, fair = false, onWaiting }: UpstreamQueueOptions): UpstreamQueue {
  const waiters = createWaitingLine<Waiter>()
  let saturated = false
  let closed: Error | null = null
  let dispatch: Dispatcher['dispatch'] | null = null

  const leave = (w: Waiter): boolean => {
    if (!waiters.remove(w.who, w)) return false
    left(w)
    return true
  }
  const left = (w: Waiter): void => {
    onWaiting?.(-1)
    clearTimeout(w.timer)
    if (w.signal !== null) unlisten(w.signal, w.onAbort)
  }

  const send = (opts: Dispatcher.DispatchOptions, handler: Handler): boolean => {
    saturated = !dispatch!(opts, handler)
    return !saturated
  }

  pool.on('drain', () => {
    saturated = false
    while (!saturated && waiters.size > 0) {
      const w = waiters.next()!
      left(w)
      send(w.opts, w.handler)
    }
  })

  const full = (): boolean => closed === null && (saturated || waiters.size > 0) && waiters.size >= maxQueue
  /** With the queue full: the caller whose newest waiter `who` may displace, or undefined. */
  const displaceable = (who: string): string | undefined => {
    if (!fair) return undefined
    const most = waiters.longest()
    return most !== undefined && most.who !== who && waiters.count(who) + 1 < most.count ? most.who : undefined
  }

  const interceptor: Dispatcher.DispatcherComposeInterceptor = next => {
    dispatch = next
    return (opts, handler) => {
      if (closed !== null) { fail(handler, closed); return false }
      if (!saturated && waiters.size === 0) return send(opts, handler)
      const who = fair ? callerOf(opts) : ''
      if (waiters.size >= maxQueue) {
        const from = displaceable(who)
        const out = from === undefined ? undefined : waiters.newest(from)
        if (out === undefined) { fail(handler, new UpstreamQueueFull()); return false }
        left(out)
        fail(out.handler, new UpstreamQueueFull())
      }
      // pool.request() passes its options, signal included, down the chain.
      const signal = (opts as { signal?: Signal }).signal ?? null
      const w: Waiter = {
        who,
        opts,
        handler,
        signal,
        timer: setTimeout(() => { if (leave(w)) fail(handler, new UpstreamQueueTimeout()) }, queueTimeoutMs),
        // The client left, or the request's total deadline passed (deadline.ts emits its error), while
        // it waited: undici would only notice once the request reached a connection.
        onAbort: reason => { if (leave(w)) fail(handler, reason instanceof Error ? reason : new undiciErrors.RequestAbortedError()) }
      }
      if (signal !== null) listen(signal, w.onAbort)
      waiters.add(who, w)
      onWaiting?.(1)
      return false
    }
  }

  const shed: Dispatcher.DispatcherComposeInterceptor = next => (opts, handler) => {
    if (!full() || displaceable(fair ? callerOf(opts) : '') !== undefined) return next(opts, handler)
    fail(handler, new UpstreamQueueFull())
    return false
  }

  return {
    interceptor,
    shed,
    get waiting () { return waiters.size },
    get full () { return full() },
    close (err) {
      closed = err
      for (const w of waiters.all()) if (leave(w)) fail(w.handler, err)
    }
  }
}
