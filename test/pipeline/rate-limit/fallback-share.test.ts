import t from 'tap'
import { fallbackShare } from '../../../src/pipeline/rate-limit/store.js'
import { createMemoryLimiter, type LimitSpec } from '../../../src/pipeline/rate-limit/algorithms.js'

// What one process allows of a shared limit while the shared store fails (onStoreError: local).

const allowed = (spec: LimitSpec, n: number): number => {
  const memory = createMemoryLimiter(() => 0) // a stopped clock: no refill, no window edge
  return Array.from({ length: n }, () => memory.consume('k', 1, spec)).filter(v => v.allowed).length
}

t.test('each process in fallback allows its share of max and burst, rounded down, never below 1', async t => {
  const fixed: LimitSpec = { algorithm: 'fixed-window', max: 10, windowMs: 60_000, burst: 10 }
  t.equal(allowed(fallbackShare(fixed, 0.5), 50), 5, 'half of 10')
  t.equal(allowed(fallbackShare(fixed, 1 / 3), 50), 3, 'a third of 10, rounded down')
  t.equal(allowed(fallbackShare({ ...fixed, max: 1, burst: 1 }, 0.5), 50), 1, 'a limit of 1 keeps 1: local still serves')
  t.equal(allowed(fallbackShare(fixed, 1), 50), 10, 'share 1: the whole limit')
  const gcra: LimitSpec = { algorithm: 'gcra', max: 100, windowMs: 60_000, burst: 20 }
  const half = fallbackShare(gcra, 0.5)
  t.equal(allowed(half, 200), 10, 'gcra: half the burst at once')
  t.equal(half.max, 50, 'and half the rate')
  t.equal(half.windowMs, gcra.windowMs, 'over the same window')
})
