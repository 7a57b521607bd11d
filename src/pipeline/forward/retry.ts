import type { Dispatcher } from 'undici'
import { PassHandler, type Controller, type Exchange, type Handler, type Interceptor } from './exchange.js'
import { isRetryable } from './outcomes.js'

/*
 * One retry where it cannot repeat an effect: only a request without a body, of an idempotent method
 * (RFC 9110 §9.2.2), whose first attempt never reached the function (no connection), and only while
 * its client is still there. Sent again at once, through the circuit breaker like any attempt.
 *
 * Not undici's interceptors.retry: that one wraps every request (a handler, a controller proxy and two
 * copies of the options each time), makes an Error with a stack for every answer of 300 or more
 * (to ask whether to retry it), backs off on a timer and resumes broken bodies with Range requests;
 * this gateway wants none of that, and only the eligible requests wrapped at all.
 */

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'])

class RetryOnce extends PassHandler {
  #retried = false

  constructor (next: Handler, private readonly dispatch: Dispatcher['dispatch'], private readonly exchange: Exchange,
    private readonly onRetry: (err: Error, exchange: Exchange) => void) {
    super(next)
  }

  override onResponseError (controller: Controller, err: Error): void {
    if (!this.#retried && isRetryable(err) && !this.exchange.client.destroyed) {
      this.#retried = true
      this.onRetry(err, this.exchange)
      this.dispatch(this.exchange, this)
      return
    }
    super.onResponseError(controller, err)
  }
}

/** `onRetry`: told of the failed first attempt before it is sent again (the metrics and the log line). */
export function retryConnectFailures (onRetry: (err: Error, exchange: Exchange) => void): Interceptor {
  return dispatch => (opts, handler) => {
    const exchange = opts as Exchange
    if (exchange.body !== null || !IDEMPOTENT.has(exchange.method)) return dispatch(opts, handler)
    return dispatch(opts, new RetryOnce(handler, dispatch, exchange, onRetry))
  }
}
