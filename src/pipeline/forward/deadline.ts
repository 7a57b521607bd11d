import { GW_ERR_UPSTREAM_TOTAL_TIMEOUT } from '../../errors.js'
import { markUpstreamError } from '../error-reply.js'
import { deadlineQueues, type DeadlineQueue } from './deadline-queue.js'
import { PassHandler, type Controller, type Exchange, type Handler, type Interceptor } from './exchange.js'

/*
 * The total deadline of an exchange (the route's timeouts.totalMs, else the upstream's), from the
 * moment its credentials are attached to the function's last byte, across a retry and a wait for a
 * connection. Before the answer's head the request ends with 504 GW_ERR_UPSTREAM_TOTAL_TIMEOUT; after
 * it, the body is cut off, which the client sees as an incomplete body.
 */

class Deadline extends PassHandler {
  #controller: Controller | null = null
  #expired: Error | null = null
  #head = false
  // Its place in its DeadlineQueue (deadline-queue.ts): the handler is the list node, nothing more per request.
  due = 0
  older: Deadline | null = null
  newer: Deadline | null = null
  queued = false

  constructor (next: Handler, private readonly exchange: Exchange, private readonly queue: DeadlineQueue<Deadline>,
    private readonly onCutOff: () => void) {
    super(next)
  }

  start (): void {
    this.queue.add(this)
  }

  expire (): void {
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
    this.queue.remove(this)
    super.onResponseEnd(controller, trailers)
  }

  override onResponseError (controller: Controller, err: Error): void {
    this.queue.remove(this)
    // Whatever the abort turned into further in (undici's RequestAbortedError), it was the deadline.
    super.onResponseError(controller, this.#expired ?? err)
  }
}

/**
 * `onCutOff`: a response cut off mid-body by the deadline (counted there; the forwarder counts the rest).
 * One queue per length of deadline (a route's totalMs, else the upstream's), made when first needed.
 */
export function deadline (onCutOff: () => void): Interceptor {
  const queueFor = deadlineQueues<Deadline>()
  return dispatch => (opts, handler) => {
    const exchange = opts as Exchange
    exchange.startedAt = performance.now()
    const d = new Deadline(handler, exchange, queueFor(exchange.totalTimeoutMs), onCutOff)
    d.start()
    return dispatch(opts, d)
  }
}
