import { fail, PassHandler, refusal, type Controller, type Handler, type Interceptor } from './exchange.js'
import { classify } from './outcomes.js'

/*
 * A circuit breaker per upstream. After `failures` consecutive transport failures (no connection,
 * TLS, timeouts, resets: never the function's own answers, whatever their status) the circuit opens
 * and requests fail fast for `openMs`; then exactly one request is let through as a probe. Its success
 * closes the circuit, its failure opens it again. Hand-written: the usual library (opossum) trips on
 * an error percentage over a rolling window and wraps each call in its own promise and timer, while a
 * gateway in front of one function wants this three-state machine and nothing on the hot path.
 */

export type CircuitState = 'closed' | 'open' | 'half_open'

export const CIRCUIT_STATE_VALUE: Record<CircuitState, number> = { closed: 0, open: 1, half_open: 2 }

export interface CircuitBreaker {
  /** Whether a request may go upstream now; a true answer in half-open makes it the probe. */
  admit: () => boolean
  /** Whether admit() would refuse now, without taking the probe: for refusing before any work. */
  refusing: () => boolean
  succeeded: () => void
  failed: () => void
  /** The request ended for a reason that says nothing about the upstream (the client left). */
  abandoned: () => void
  readonly state: CircuitState
}

export interface CircuitBreakerOptions {
  failures: number
  openMs: number
  onChange: (state: CircuitState) => void
  now?: () => number
}

export function createCircuitBreaker ({ failures, openMs, onChange, now = Date.now }: CircuitBreakerOptions): CircuitBreaker {
  let state: CircuitState = 'closed'
  let consecutive = 0
  let openedAt = 0
  const set = (next: CircuitState): void => {
    if (next !== state) { state = next; onChange(next) }
  }
  const open = (): void => { openedAt = now(); set('open') }
  return {
    get state () { return state },
    admit () {
      if (state === 'closed') return true
      if (state === 'open' && now() - openedAt >= openMs) { set('half_open'); return true }
      return false // open, or half-open with its probe still in flight
    },
    refusing: () => state === 'half_open' || (state === 'open' && now() - openedAt < openMs),
    succeeded () {
      consecutive = 0
      set('closed')
    },
    failed () {
      consecutive++
      if (state === 'half_open' || (state === 'closed' && consecutive >= failures)) open()
    },
    abandoned () {
      // A probe that never finished must not leave the circuit half-open for good: the next request probes.
      if (state === 'half_open') { openedAt = now() - openMs; set('open') }
    }
  }
}

/*
 * The breaker in the forward chain, twice. The gate, outermost but for the per-caller cap, refuses
 * while the circuit is open before any credential is made or any body buffered for signing; it does
 * not take the probe slot (a client that dawdles over its body must not hold the circuit half-open).
 * The attempt interceptor, innermost but for the wait for a connection, admits each attempt (the
 * probe is taken here, once the request is ready to go) and reports how it went: transport failures
 * count, the function's own answers (whatever their status) are successes.
 */

class Attempt extends PassHandler {
  #answered = false

  constructor (next: Handler, private readonly breaker: CircuitBreaker, private readonly probe: boolean) {
    super(next)
  }

  override onResponseStart (controller: Controller, statusCode: number, headers: Parameters<NonNullable<Handler['onResponseStart']>>[2], statusMessage?: string): void {
    this.#answered = true
    this.breaker.succeeded()
    super.onResponseStart(controller, statusCode, headers, statusMessage)
  }

  override onResponseError (controller: Controller, err: Error): void {
    // After the head, a failure is the body's (counted by the forwarder), as it always was.
    if (!this.#answered) {
      if (classify(err).transport) this.breaker.failed()
      else if (this.probe) this.breaker.abandoned() // only the probe's own slot is freed, never a second probe let in
    }
    super.onResponseError(controller, err)
  }
}

/** `onRefused`: counts a request the open circuit refused and makes its error. */
export function circuitGate (breaker: CircuitBreaker, onRefused: () => Error): Interceptor {
  return dispatch => (opts, handler) => {
    if (!breaker.refusing()) return dispatch(opts, handler)
    fail(handler, refusal(onRefused()))
    return false
  }
}

export function circuitAttempts (breaker: CircuitBreaker, onRefused: () => Error): Interceptor {
  return dispatch => (opts, handler) => {
    // Admitted while the circuit is not closed: this attempt is its probe.
    const probe = breaker.state !== 'closed'
    if (!breaker.admit()) {
      fail(handler, refusal(onRefused()))
      return false
    }
    return dispatch(opts, new Attempt(handler, breaker, probe))
  }
}
