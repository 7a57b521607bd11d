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

t.test('each gateway at half its own saturation, with the function called directly and the bare proxy beside it; all at the common rate', async t => {
  const plan = planFixedRates([
    { id: 'direct', cpus: 1, bare: 'bare', gateway: false },
    { id: 'bare', cpus: 1, bare: 'bare', gateway: false },
    { id: 'gw', cpus: 1, bare: 'bare', gateway: true },
    { id: 'slow', cpus: 1, bare: 'bare', gateway: true }
  ], id => ({ direct: 30_000, bare: 9_000, gw: 6_130, slow: 4_020 })[id]!)
  t.same([...plan.own], [['gw', 3050], ['slow', 2000]])
  t.equal(plan.common, 2000, 'half the slowest proxy\'s saturation; the direct calls are no proxy')
  t.same(plan.jobs, [
    { id: 'gw', rate: 3050 }, { id: 'direct', rate: 3050 }, { id: 'bare', rate: 3050 },
    { id: 'slow', rate: 2000 }, { id: 'direct', rate: 2000 }, { id: 'bare', rate: 2000 },
    { id: 'gw', rate: 2000 }
  ], 'each (scenario, rate) once')
})
