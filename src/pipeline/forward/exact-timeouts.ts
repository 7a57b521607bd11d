import type { Readable } from 'node:stream'
import { errors as undiciErrors, type Dispatcher } from 'undici'
import { deadlineQueues, type DeadlineQueue } from './deadline-queue.js'

/*
 * headersTimeout and bodyTimeout on native timers, so that a configured 200 ms is 200 ms. undici runs
 * both on its "fast timers" (lib/util/timers.js): one shared 499 ms tick, and a timer becomes active
 * on the first tick after it is set and fires on a later one, so any value below a second fires after
 * 0.5–1 s, and every value up to ~1 s late. undici has no option for native timers on these two (only
 * its keep-alive timer is native), so this interceptor arms them itself and the pool's own are off
 * (the per-request values are taken out of the options before undici sees them). Bounds of one length
 * share one native timer (deadline-queue.ts): a request waits in a queue, not on a timer of its own.
 *
 * What is timed is what undici times: headers from when the request is on a connection (a queued
 * request is not waiting on the function; the queue has its own bound) and, like undici, not while the
 * request body is still being sent; the body from each chunk to the next, and not while the reader has
 * paused it (backpressure from a slow client is not a stalled function).
 */

type Handler = Dispatcher.DispatchHandler
type Controller = Dispatcher.DispatchController

class TimedHandler implements Handler {
  readonly #handler: Handler
  /** The queues of this request's two bounds (deadline-queue.ts), null for a bound that is off (0). */
  readonly #headers: DeadlineQueue<TimedHandler> | null
  readonly #bodyTimer: DeadlineQueue<TimedHandler> | null
  readonly #body: Readable | null
  #controller: Controller | null = null
  /** The queue it waits in now, if any. */
  #timing: DeadlineQueue<TimedHandler> | null = null
  #waitingForHeaders = true
  // Its place in that queue: the handler is the entry, no timer object per request.
  due = 0
  older: TimedHandler | null = null
  newer: TimedHandler | null = null
  queued = false

  constructor (handler: Handler, headers: DeadlineQueue<TimedHandler> | null, bodyTimer: DeadlineQueue<TimedHandler> | null, body: unknown) {
    this.#handler = handler
    this.#headers = headers
    this.#bodyTimer = bodyTimer
    this.#body = isStream(body) ? body : null
  }

  /** Its bound passed (the queue took it out). */
  expire (): void {
    const controller = this.#controller
    if (controller === null) return
    if (this.#waitingForHeaders) {
      // Still sending the request body: the function cannot answer before it has it.
      if (this.#body !== null && !this.#body.readableEnded && !this.#body.destroyed) { this.#time(this.#timing); return }
      this.#time(null)
      controller.abort(new undiciErrors.HeadersTimeoutError())
      return
    }
    if (controller.paused) { this.#time(this.#timing); return }
    this.#time(null)
    controller.abort(new undiciErrors.BodyTimeoutError())
  }

  /** Starts timing in `queue` from now (null: stops). */
  #time (queue: DeadlineQueue<TimedHandler> | null): void {
    this.#timing?.remove(this)
    this.#timing = queue
    queue?.add(this)
  }

  onRequestStart (controller: Controller, context: unknown): void {
    this.#controller = controller
    // Called again when undici retries the request on a new connection: timed again from now.
    this.#time(this.#headers)
    this.#handler.onRequestStart?.(controller, context)
  }

  onRequestUpgrade (controller: Controller, statusCode: number, headers: Parameters<NonNullable<Handler['onRequestUpgrade']>>[2], socket: Parameters<NonNullable<Handler['onRequestUpgrade']>>[3]): void {
    this.#time(null)
    this.#handler.onRequestUpgrade?.(controller, statusCode, headers, socket)
  }

  onResponseStart (controller: Controller, statusCode: number, headers: Parameters<NonNullable<Handler['onResponseStart']>>[2], statusMessage?: string): void {
    this.#waitingForHeaders = false
    this.#time(this.#bodyTimer)
    this.#handler.onResponseStart?.(controller, statusCode, headers, statusMessage)
  }

  onResponseData (controller: Controller, chunk: Buffer): void {
    if (this.#timing !== null) this.#time(this.#timing)
    this.#handler.onResponseData?.(controller, chunk)
  }

  onResponseEnd (controller: Controller, trailers: Parameters<NonNullable<Handler['onResponseEnd']>>[1]): void {
    this.#time(null)
    this.#handler.onResponseEnd?.(controller, trailers)
  }

  onResponseError (controller: Controller, err: Error): void {
    this.#time(null)
    this.#handler.onResponseError?.(controller, err)
  }
}

function isStream (body: unknown): body is Readable {
  return body !== null && typeof body === 'object' && typeof (body as Readable).pipe === 'function'
}

/**
 * The interceptor; each request's own headersTimeout and bodyTimeout (0: none) are what it enforces,
 * else the defaults (the upstream's). A request that sets neither is passed on as it is: undici then
 * applies the pool's own values, which are off. One that sets either is copied with both at 0.
 * Bounds of one length share a queue and its one timer (deadline-queue.ts).
 */
export function exactTimeouts (defaults: { headersTimeoutMs: number, bodyTimeoutMs: number }): Dispatcher.DispatcherComposeInterceptor {
  const queueFor = deadlineQueues<TimedHandler>()
  return dispatch => (opts, handler) => {
    const headersMs = opts.headersTimeout ?? defaults.headersTimeoutMs
    const bodyMs = opts.bodyTimeout ?? defaults.bodyTimeoutMs
    const timed = new TimedHandler(handler, headersMs > 0 ? queueFor(headersMs) : null, bodyMs > 0 ? queueFor(bodyMs) : null, opts.body)
    if (opts.headersTimeout == null && opts.bodyTimeout == null) return dispatch(opts, timed)
    return dispatch({ ...opts, headersTimeout: 0, bodyTimeout: 0 }, timed)
  }
}
