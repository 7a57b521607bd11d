import t from 'tap'
import { AggregatorRegistry, Histogram, Registry } from 'prom-client'
import { BoundHistogram, createStatusSeries, type BoundHistogramConfig } from '../../src/observability/histogram.js'
import { createMetrics } from '../../src/observability/metrics.js'
import { promtoolCheck } from '../helpers/prometheus.js'

// Issue #19: the request histograms are observed through bound series, not prom-client's Histogram.
// prom-client's Histogram is the oracle: the same observations must read the same, byte for byte in
// the text exposition and value for value in get() (the JSON the cluster's aggregation sums).

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

/** The same histogram twice, each in a registry of its own: prom-client's (the oracle) and ours. */
function pair<L extends string> (config: Omit<BoundHistogramConfig<L>, 'registers'>) {
  const oracle = new Registry()
  const ours = new Registry()
  const reference = new Histogram({ ...config, labelNames: [...config.labelNames ?? []], buckets: [...config.buckets], registers: [oracle] })
  const histogram = new BoundHistogram({ ...config, registers: [ours] })
  return {
    oracle,
    ours,
    reference,
    histogram,
    observe (labels: Record<L, string>, value: number): void {
      reference.observe(labels, value)
      histogram.series(labels).observe(value)
    }
  }
}

// Deterministic values: every bound, each side of it, zero, negatives, beyond the last bound.
function values (): number[] {
  const out = [0, -1, 31, 1e6, Number.MIN_VALUE]
  for (const b of BUCKETS) out.push(b, b * (1 - 1e-12), b * (1 + 1e-12), b / 3)
  let x = 12345
  for (let i = 0; i < 500; i++) {
    x = (x * 1103515245 + 12345) % 2147483648
    out.push((x / 2147483648) ** 4 * 40)
  }
  return out
}

t.test('the same observations read as prom-client reads them: text, get() and promtool', async t => {
  const p = pair({ name: 'x_duration_seconds', help: 'Time, "quoted" \\ and\nnew line', labelNames: ['route', 'outcome'] as const, buckets: BUCKETS })
  const routes = ['hello', 'a"b', 'back\\slash', 'new\nline']
  values().forEach((v, i) => p.observe({ route: routes[i % routes.length]!, outcome: i % 3 === 0 ? 'denied' : 'forwarded' }, v))
  const text = await p.ours.metrics()
  t.equal(text, await p.oracle.metrics(), 'the text exposition')
  t.strictSame(await p.histogram.get(), await p.reference.get(), 'get()')
  t.strictSame(await p.ours.getMetricsAsJSON(), await p.oracle.getMetricsAsJSON(), 'getMetricsAsJSON()')
  t.match(text, /^x_duration_seconds_bucket\{le="0\.0005",route="hello",outcome="denied"\} \d+$/m, 'le first, then the series labels')
  const check = await promtoolCheck(text)
  t.equal(check.code, 0, check.output)
})

t.test('a value on a bound is counted in that bound\'s bucket', async t => {
  const p = pair({ name: 'y_seconds', help: 'y', buckets: [0.1, 1] })
  p.observe({}, 0.1)
  p.observe({}, 1)
  p.observe({}, 2)
  const text = await p.ours.metrics()
  t.equal(text, await p.oracle.metrics())
  t.match(text, /^y_seconds_bucket\{le="0\.1"\} 1\ny_seconds_bucket\{le="1"\} 2\ny_seconds_bucket\{le="\+Inf"\} 3$/m)
})

t.test('without labels: exported at zero from the start, dropped by resetMetrics until observed again', async t => {
  const p = pair({ name: 'z_seconds', help: 'z', buckets: BUCKETS })
  const series = p.histogram.series({})
  const same = async (what: string): Promise<void> => { t.equal(await p.ours.metrics(), await p.oracle.metrics(), what) }
  t.match(await p.ours.metrics(), /^z_seconds_count 0$/m)
  await same('fresh')
  p.reference.observe(0.003)
  series.observe(0.003)
  await same('observed')
  p.oracle.resetMetrics()
  p.ours.resetMetrics()
  t.notMatch(await p.ours.metrics(), /z_seconds_count/)
  await same('after resetMetrics')
  p.reference.observe(0.2)
  series.observe(0.2)
  t.match(await p.ours.metrics(), /^z_seconds_count 1$/m, 'the series kept before the reset counts again')
  await same('observed after the reset')
})

t.test('after resetMetrics, series come back in the order they are observed again', async t => {
  const p = pair({ name: 'r_seconds', help: 'r', labelNames: ['route'] as const, buckets: [1] })
  const children = { a: p.reference.labels({ route: 'a' }), b: p.reference.labels({ route: 'b' }) }
  const series = { a: p.histogram.series({ route: 'a' }), b: p.histogram.series({ route: 'b' }) }
  for (const k of ['a', 'b'] as const) { children[k].observe(0.5); series[k].observe(0.5) }
  p.oracle.resetMetrics()
  p.ours.resetMetrics()
  t.equal(await p.ours.metrics(), await p.oracle.metrics(), 'nothing after the reset')
  for (const k of ['b', 'a'] as const) { children[k].observe(2); series[k].observe(2) }
  const text = await p.ours.metrics()
  t.equal(text, await p.oracle.metrics())
  t.match(text, /route="b"[^]*route="a"/)
})

t.test('the cluster\'s aggregation sums our JSON as it sums prom-client\'s', async t => {
  // Two workers; the primary receives each one's getMetricsAsJSON() over IPC (JSON).
  const workers = [0, 1].map(w => {
    const p = pair({ name: 'c_seconds', help: 'c', labelNames: ['upstream', 'status_class'] as const, buckets: BUCKETS })
    values().forEach((v, i) => p.observe({ upstream: `u${(i + w) % 3}`, status_class: i % 5 === 0 ? '5xx' : '2xx' }, v))
    return p
  })
  const aggregate = async (which: 'oracle' | 'ours'): Promise<string> => {
    const each = await Promise.all(workers.map(async w => JSON.parse(JSON.stringify(await w[which].getMetricsAsJSON())) as object))
    return AggregatorRegistry.aggregate(each).metrics()
  }
  const text = await aggregate('ours')
  t.equal(text, await aggregate('oracle'))
  t.match(text, /^c_seconds_count\{upstream="u0",status_class="2xx"\} \d+$/m)
})

t.test('one series per label set, kept', async t => {
  const h = new BoundHistogram({ name: 's_seconds', help: 's', labelNames: ['route', 'method'] as const, buckets: [1], registers: [] })
  const a = h.series({ route: 'a', method: 'GET' })
  t.equal(h.series({ route: 'a', method: 'GET' }), a)
  t.not(h.series({ route: 'a', method: 'POST' }), a)
  t.not(h.series({ route: 'aG', method: 'ET' }), a, 'values do not run into each other')
})

t.test('a value that is not a finite number is not counted (prom-client would throw)', async t => {
  const registry = new Registry()
  const h = new BoundHistogram({ name: 'n_seconds', help: 'n', buckets: [1], registers: [registry] })
  const before = await registry.metrics()
  for (const v of [NaN, Infinity, -Infinity]) h.series({}).observe(v)
  t.equal(await registry.metrics(), before)
})

t.test('a config prom-client refuses is refused; buckets must ascend', async t => {
  const registers: Registry[] = []
  t.throws(() => new BoundHistogram({ name: 'bad-name', help: 'x', buckets: [1], registers }), /Invalid metric name/)
  t.throws(() => new BoundHistogram({ name: 'x', help: '', buckets: [1], registers }), /help/)
  t.throws(() => new BoundHistogram({ name: 'x', help: 'x', labelNames: ['le'], buckets: [1], registers }), /le is a reserved/)
  t.throws(() => new BoundHistogram({ name: 'x', help: 'x', labelNames: ['a-b'], buckets: [1], registers }), /Invalid label name/)
  t.throws(() => new BoundHistogram({ name: 'x', help: 'x', buckets: [1, 0.5], registers }), /ascending/)
  t.throws(() => new BoundHistogram({ name: 'x', help: 'x', buckets: [1, 1], registers }), /ascending/)
  t.throws(() => new BoundHistogram({ name: 'x', help: 'x', buckets: [1, Infinity], registers }), /finite/)
  const registry = new Registry()
  new BoundHistogram({ name: 'twice', help: 'x', buckets: [1], registers: [registry] })
  t.throws(() => new BoundHistogram({ name: 'twice', help: 'x', buckets: [1], registers: [registry] }), /already been registered/)
})

t.test('the gateway\'s three request histograms read as prom-client\'s would', async t => {
  const metrics = createMetrics(new Registry())
  t.teardown(() => metrics.close())
  const oracle = new Registry()
  const reference = Object.fromEntries([metrics.requestDuration, metrics.policyDuration, metrics.upstreamDuration].map(h =>
    [h.name, new Histogram({ name: h.name, help: h.help, labelNames: [...h.labelNames], buckets: [...h.buckets], registers: [oracle] })]))
  const read = async (name: string): Promise<void> => {
    t.equal(await metrics.registry.getSingleMetricAsString(name), await oracle.getSingleMetricAsString(name), name)
  }
  await read('portcullis_policy_evaluation_seconds') // at zero before any request
  const upstreamOf = () => createStatusSeries(metrics.upstreamDuration, (upstream, status) => ({ upstream, status_class: `${Math.floor(status / 100)}xx` }))
  const upstream = upstreamOf()
  t.equal(upstream('fn', 200), upstream('fn', 204), 'one series per upstream and status class')
  t.not(upstream('fn', 200), upstream('fn', 502))
  t.equal(upstreamOf()('fn', 200), upstream('fn', 200), 'the next generation (a reload) observes into the same series')
  for (const [i, v] of values().entries()) {
    const labels = { route: i % 2 === 0 ? 'hello' : 'other', method: 'GET', outcome: 'forwarded' }
    metrics.requestDuration.series(labels).observe(v)
    reference.portcullis_request_duration_seconds!.observe(labels, v)
    metrics.policyDuration.series({}).observe(v / 1000)
    reference.portcullis_policy_evaluation_seconds!.observe(v / 1000)
    const status = i % 4 === 0 ? 502 : 200
    upstream(i % 3 === 0 ? 'fn' : 'other-fn', status).observe(v)
    reference.portcullis_upstream_duration_seconds!.observe({ upstream: i % 3 === 0 ? 'fn' : 'other-fn', status_class: status === 502 ? '5xx' : '2xx' }, v)
  }
  for (const name of Object.keys(reference)) await read(name)
  metrics.registry.resetMetrics()
  oracle.resetMetrics()
  for (const name of Object.keys(reference)) await read(name)
})
