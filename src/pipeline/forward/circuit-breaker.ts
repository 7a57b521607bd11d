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
