import t from 'tap'
import { p99At, p99Span, planFixedRates, rateKey } from '../../bench/lib/fixed-rate.js'
import type { RateResult } from '../../bench/lib/load.js'

const run = (p99_us: number): RateResult => ({ p50_us: 500, p99_us, p999_us: p99_us * 2, success: 1, failures: [] } as unknown as RateResult)

t.test('the added p99 is judged against how far the reference moved between rounds', async t => {
  const runs = new Map([[rateKey('bare', 2000), [run(3_000), run(48_000), run(9_000)]], [rateKey('quiet', 2000), [run(2_100), run(2_300)]]])
  t.equal(p99At(runs, 'bare', 2000), 9_000, 'median of the rounds')
  t.equal(p99Span(runs, 'bare', 2000), 45_000, 'one stall in one round: a 45 ms span, far past a 2 ms budget')
  t.equal(p99Span(runs, 'quiet', 2000), 200)
  t.ok(Number.isNaN(p99Span(runs, 'bare', 4000)), 'not run at that rate')
})

t.test('each gateway at half its own saturation, with the bare proxy beside it; all at the common rate', async t => {
  const plan = planFixedRates([
    { id: 'bare', cpus: 1, bare: 'bare', gateway: false },
    { id: 'gw', cpus: 1, bare: 'bare', gateway: true }
  ], id => id === 'bare' ? 9_000 : 6_130)
  t.same([...plan.own], [['gw', 3050]])
  t.equal(plan.common, 3050)
  t.same(plan.jobs, [{ id: 'gw', rate: 3050 }, { id: 'bare', rate: 3050 }])
})
