import type { Dispatcher } from 'undici'
import { GW_ERR_GUARD_BAD_REQUEST } from '../../errors.js'
import type { Credentials } from './credentials/index.js'
import { fail, refusal, type Exchange, type Handler, type Interceptor } from './exchange.js'

/*
 * The route's credentials for the function (credentials/), attached once the cap and the circuit have
 * let the request through and before its deadline starts. Where a credential signs the body, the body
 * is read whole first and the exchange sends that. A failure here is refused as it is (counted and
 * logged by credentials/), and a client that left meanwhile gets nothing sent on its behalf.
 * Credentials at hand (none, or a key from a file) are attached and the request sent on at once:
 * a promise and a turn of the microtask queue only where something has to be waited for.
 */
export function attachCredentials (credentials: Credentials): Interceptor {
  return dispatch => (opts, handler) => {
    const exchange = opts as Exchange
    let attached: ReturnType<Credentials['attach']>
    try {
      attached = credentials.attach(exchange)
    } catch (err) {
      fail(handler, refusal(err as Error))
      return true
    }
    if (!(attached instanceof Promise)) return send(dispatch, exchange, handler, attached)
    attached.then(body => { send(dispatch, exchange, handler, body) }, (err: Error) => { fail(handler, refusal(err)) })
    return true
  }
}

function send (dispatch: Dispatcher['dispatch'], exchange: Exchange, handler: Handler, body: Exchange['body']): boolean {
  if (exchange.client.destroyed) { fail(handler, refusal(new GW_ERR_GUARD_BAD_REQUEST())); return true }
  exchange.body = body
  return dispatch(exchange, handler)
}
