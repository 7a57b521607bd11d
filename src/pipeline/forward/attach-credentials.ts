import { GW_ERR_GUARD_BAD_REQUEST } from '../../errors.js'
import type { Credentials } from './credentials/index.js'
import { fail, refusal, type Exchange, type Interceptor } from './exchange.js'

/*
 * The route's credentials for the function (credentials/), attached once the cap and the circuit have
 * let the request through and before its deadline starts. Where a credential signs the body, the body
 * is read whole first and the exchange sends that. A failure here is refused as it is (counted and
 * logged by credentials/), and a client that left meanwhile gets nothing sent on its behalf.
 */
export function attachCredentials (credentials: Credentials): Interceptor {
  return dispatch => (opts, handler) => {
    const exchange = opts as Exchange
    credentials.attach(exchange).then(body => {
      if (exchange.client.destroyed) { fail(handler, refusal(new GW_ERR_GUARD_BAD_REQUEST())); return }
      exchange.body = body
      dispatch(exchange, handler)
    }, (err: Error) => { fail(handler, refusal(err)) })
    return true
  }
}
