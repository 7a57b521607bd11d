import { GW_ERR_UPSTREAM_TOTAL_TIMEOUT } from '../../errors.js'
import { markUpstreamError } from '../error-reply.js'
import { PassHandler, type Controller, type Exchange, type Handler, type Interceptor } from './exchange.js'

/*
 * The total deadline of an exchange (the route's timeouts.totalMs, else the upstream's), from the
 * moment its credentials are attached to the function's last byte, across a retry and a wait for a
 * connection. Before the answer's head the request ends with 504 GW_ERR_UPSTREAM_TOTAL_TIMEOUT; after
 * it, the body is cut off, which the client sees as an incomplete body.
 */

class Deadline extends PassHandler {
  #controller: Controller | null = null
  #timer: NodeJS.Timeout | null = null
  #expired: Error | null = null
  #head = false

  constructor (next: Handler, private readonly exchange: Exchange, private readonly onCutOff: () => void) {
    super(next)
  }

  start (ms: number): void {
    this.#timer = setTimeout(expire, ms, this)
  }

  expire (): void {
    this.#timer = null
    const err = new GW_ERR_UPSTREAM_TOTAL_TIMEOUT()
    this.#expired = err
    if (this.#head) {
      markUpstreamError(err) // the head is out: the error is the function's, cut off mid-body
      this.onCutOff()
    }
    // On a connection the request ends with the deadline's own error. Before the head it may also be
    // waiting for a connection (upstream-queue.ts), reached only through its signal, and the controller
    // may be a failed first attempt's while its retry waits: then the signal reaches it.
    this.#controller?.abort(err)
    if (!this.#head) this.exchange.signal.emit('abort', err)
  }

  #clear (): void {
    if (this.#timer !== null) { clearTimeout(this.#timer); this.#timer = null }
  }

  override onRequestStart (controller: Controller, context: unknown): void {
    // Expired while this attempt waited for its connection: it never starts.
    if (this.#expired !== null) { controller.abort(this.#expired); return }
    this.#controller = controller
    super.onRequestStart(controller, context)
  }

  override onResponseStart (controller: Controller, statusCode: number, headers: Parameters<NonNullable<Handler['onResponseStart']>>[2], statusMessage?: string): void {
    this.#head = true
    super.onResponseStart(controller, statusCode, headers, statusMessage)
  }

  override onResponseEnd (controller: Controller, trailers: Parameters<NonNullable<Handler['onResponseEnd']>>[1]): void {
    this.#clear()
    super.onResponseEnd(controller, trailers)
  }

  override onResponseError (controller: Controller, err: Error): void {
    this.#clear()
    // Whatever the abort turned into further in (undici's RequestAbortedError), it was the deadline.
    super.onResponseError(controller, this.#expired ?? err)
  }
}

// A named function and the handler as its argument: no closure per request for the timer.
function expire (deadline: Deadline): void { deadline.expire() }

/** `onCutOff`: a response cut off mid-body by the deadline (counted there; the forwarder counts the rest). */
export function deadline (onCutOff: () => void): Interceptor {
  return dispatch => (opts, handler) => {
    const exchange = opts as Exchange
    exchange.startedAt = performance.now()
    const d = new Deadline(handler, exchange, onCutOff)
    d.start(exchange.totalTimeoutMs)
    return dispatch(opts, d)
  }
}
