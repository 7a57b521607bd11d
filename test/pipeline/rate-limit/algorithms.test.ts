import t from 'tap'
import { createMemoryLimiter, type LimitSpec } from '../../../src/pipeline/rate-limit/algorithms.js'

// The in-process limiter on a clock the test moves: what a caller gets, request by request.

function limiter () {
  let now = 1_000_000
  return { l: createMemoryLimiter(() => now), advance: (ms: number) => { now += ms } }
}

const allowedOf = (verdicts: Array<{ allowed: boolean }>): number => verdicts.filter(v => v.allowed).length

t.test('fixed window: max per window, then refused until the window ends', async t => {
  const { l, advance } = limiter()
  const spec: LimitSpec = { algorithm: 'fixed-window', max: 5, windowMs: 10_000, burst: 5 }
  const first = Array.from({ length: 8 }, () => l.consume('a', 1, spec))
  t.equal(allowedOf(first), 5)
  t.strictSame(first.map(v => v.remaining), [4, 3, 2, 1, 0, 0, 0, 0])
  t.equal(first[5]!.retryAfterMs, 10_000)
  advance(9_999)
  t.notOk(l.consume('a', 1, spec).allowed, 'still the same window')
  advance(1)
  t.ok(l.consume('a', 1, spec).allowed, 'a new window')
  t.ok(l.consume('b', 1, spec).allowed, 'another key has its own bucket')
})

t.test('fixed window: a cost that does not fit is refused without using up the rest', async t => {
  const { l } = limiter()
  const spec: LimitSpec = { algorithm: 'fixed-window', max: 10, windowMs: 1000, burst: 10 }
  t.ok(l.consume('a', 7, spec).allowed)
  t.notOk(l.consume('a', 4, spec).allowed, '7 + 4 > 10')
  t.equal(l.consume('a', 3, spec).remaining, 0, 'the 3 left were still there')
})

t.test('gcra: a burst of max, then one request per interval, never two bursts at a window edge', async t => {
  const { l, advance } = limiter()
  const spec: LimitSpec = { algorithm: 'gcra', max: 10, windowMs: 10_000, burst: 10 }
  t.equal(allowedOf(Array.from({ length: 15 }, () => l.consume('a', 1, spec))), 10, 'the burst')
  const refused = l.consume('a', 1, spec)
  t.equal(refused.retryAfterMs, 1000, 'the next cell in one interval (10 s / 10)')
  // Where a fixed window would open a fresh allowance of 10 at the edge, GCRA lets one through a second.
  advance(10_000)
  t.equal(allowedOf(Array.from({ length: 15 }, () => l.consume('a', 1, spec))), 10, 'a full bucket again only after a full window of rest')
  advance(1_000)
  t.equal(allowedOf(Array.from({ length: 5 }, () => l.consume('a', 1, spec))), 1, 'one interval earns one request')
})

t.test('gcra: burst below max makes the rate smooth; cost counts as several cells', async t => {
  const { l, advance } = limiter()
  const smooth: LimitSpec = { algorithm: 'gcra', max: 10, windowMs: 10_000, burst: 1 }
  t.equal(allowedOf(Array.from({ length: 5 }, () => l.consume('s', 1, smooth))), 1)
  advance(1000)
  t.equal(allowedOf(Array.from({ length: 5 }, () => l.consume('s', 1, smooth))), 1)
  const spec: LimitSpec = { algorithm: 'gcra', max: 10, windowMs: 10_000, burst: 10 }
  t.ok(l.consume('c', 6, spec).allowed)
  t.notOk(l.consume('c', 5, spec).allowed, '6 + 5 cells exceed the burst of 10')
  t.equal(l.consume('c', 4, spec).remaining, 0)
})

t.test('a bucket counted under another definition of its limit starts afresh; under its own it carries on', async t => {
  for (const algorithm of ['fixed-window', 'gcra'] as const) {
    const { l } = limiter()
    const spec: LimitSpec = { algorithm, max: 3, windowMs: 60_000, burst: 3 }
    t.equal(allowedOf(Array.from({ length: 5 }, () => l.consume('a', 1, spec, 'v1'))), 3, `${algorithm}: the limit`)
    t.notOk(l.consume('a', 1, spec, 'v1').allowed, `${algorithm}: the same definition (a reload that kept the limit) keeps the count`)
    const raised: LimitSpec = { ...spec, max: 4, burst: 4 }
    t.equal(allowedOf(Array.from({ length: 6 }, () => l.consume('a', 1, raised, 'v2'))), 4, `${algorithm}: a changed limit counts from zero`)
    t.equal(l.size, 1, `${algorithm}: one bucket, not one per definition`)
  }
})
