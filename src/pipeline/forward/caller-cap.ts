import type { Dispatcher } from 'undici'
import { GW_ERR_RATE_CONCURRENCY } from '../../errors.js'
import { fail, PassHandler, refusal, type Controller, type Exchange, type Handler, type Interceptor } from './exchange.js'

/*
 * Per-caller cap on requests in flight to one function, so that one caller cannot use up its
 * concurrency. The outermost interceptor: a caller over its cap is refused before any credential is
 * made or any body buffered for signing. A request counts from then until the function's answer has
 * ended (or the exchange failed).
 */

class Release extends PassHandler {
  #held = true

  constructor (next: Handler, private readonly counts: Map<string, number>, private readonly who: string) {
    super(next)
  }

  #release (): void {
    if (!this.#held) return
    this.#held = false
    const left = (this.counts.get(this.who) ?? 1) - 1
    if (left <= 0) this.counts.delete(this.who)
    else this.counts.set(this.who, left)
  }

  override onResponseEnd (controller: Controller, trailers: Parameters<NonNullable<Handler['onResponseEnd']>>[1]): void {
    this.#release()
    super.onResponseEnd(controller, trailers)
  }

  override onResponseError (controller: Controller, err: Error): void {
    this.#release()
    super.onResponseError(controller, err)
  }
}

/**
 * Who a request counts against, per upstream: issuer and subject, or the client address when
 * anonymous. '' for options that carry no caller (a request not sent through the forward chain).
 */
export function callerOf (opts: Dispatcher.DispatchOptions): string {
  const { principal: p, clientIp } = opts as Partial<Exchange>
  if (p === undefined) return ''
  return p.type === 'anonymous' ? `ip ${clientIp ?? ''}` : `${p.issuer}\n${p.subject}`
}

/** `counts`: requests in flight per caller (the upstream's; entries go when they reach zero). */
export function callerCap (counts: Map<string, number>, max: number): Interceptor {
  return dispatch => (opts, handler) => {
    const who = callerOf(opts)
    const n = counts.get(who) ?? 0
    if (n >= max) {
      fail(handler, refusal(new GW_ERR_RATE_CONCURRENCY()))
      return false
    }
    counts.set(who, n + 1)
    return dispatch(opts, new Release(handler, counts, who))
  }
}
