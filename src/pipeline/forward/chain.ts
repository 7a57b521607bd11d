import type { Dispatcher } from 'undici'
import { GW_ERR_UPSTREAM_UNAVAILABLE } from '../../errors.js'
import type { Metrics } from '../../observability/metrics.js'
import { attachCredentials } from './attach-credentials.js'
import { callerCap } from './caller-cap.js'
import { circuitAttempts, circuitGate } from './circuit-breaker.js'
import type { Credentials } from './credentials/index.js'
import { deadline } from './deadline.js'
import type { Interceptor } from './exchange.js'
import { classify } from './outcomes.js'
import { retryConnectFailures } from './retry.js'
import type { Upstream } from './upstreams.js'

/*
 * What happens between the decision and the function, as undici interceptors around the upstream's
 * pool, in the order a request meets them:
 *
 *   per-caller cap → circuit gate → queue shedding → credentials → deadline → retry → circuit (each attempt)
 *     → wait for a connection → exact timeouts → pool
 *
 * Everything that refuses cheaply comes before the credentials (which may buffer and hash the body),
 * the deadline spans a retry, and each attempt passes the breaker. Built once per upstream when the
 * forwarder is (once per config generation); a request allocates one small handler per layer that
 * acts on it and nothing else. Interceptors that do not apply (no cap, breaker off, no retry) are left out.
 */

export interface ChainOptions {
  metrics: Metrics
  credentials?: Credentials | undefined
}

export function createChain (upstream: Upstream, { metrics, credentials }: ChainOptions): Dispatcher {
  const id = upstream.id
  const circuitOpen = (): Error => {
    metrics.upstreamErrors.inc({ upstream: id, kind: 'circuit_open' })
    return new GW_ERR_UPSTREAM_UNAVAILABLE()
  }
  const breaker = upstream.breaker
  // compose() takes the innermost first: this list reads from the pool outwards.
  const layers: Array<Interceptor | null> = [
    breaker === null ? null : circuitAttempts(breaker, circuitOpen),
    upstream.retryConnectFailures
      ? retryConnectFailures((err, exchange) => {
        const kind = classify(err).kind ?? 'failed'
        metrics.upstreamErrors.inc({ upstream: id, kind })
        metrics.upstreamRetries.inc({ upstream: id })
        exchange.log.info({ upstream: id, kind }, 'upstream connection failed; retrying once')
      })
      : null,
    deadline(() => { metrics.upstreamErrors.inc({ upstream: id, kind: 'total_timeout' }) }),
    credentials === undefined ? null : attachCredentials(credentials),
    upstream.queue.shed,
    breaker === null ? null : circuitGate(breaker, circuitOpen),
    upstream.inFlight === null ? null : callerCap(upstream.inFlight, upstream.maxConcurrentPerIdentity)
  ]
  return upstream.dispatcher.compose(layers.filter(l => l !== null))
}
