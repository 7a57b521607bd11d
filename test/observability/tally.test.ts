import t from 'tap'
import { Counter, Registry } from 'prom-client'
import { createMetrics } from '../../src/observability/metrics.js'
import { createTally } from '../../src/observability/tally.js'

// Request counters are counted as plain numbers and handed to prom-client when read (issue #19): every
// read must see every count once, whoever reads (a scrape, get()), and label sets must not multiply.

t.test('a tallied counter reads what was counted, once, across reads', async t => {
  const registry = new Registry()
  const tally = createTally<'route'>()
  const counter = new Counter({ name: 'x_total', help: 'x', labelNames: ['route'] as const, registers: [registry], collect () { tally.flush(this) } })
  const a = tally.series('a', { route: 'a' })
  t.equal(tally.series('a', { route: 'a' }), a, 'one entry per label set')
  a.pending += 2
  tally.series('b', { route: 'b' }).pending++
  t.match(await registry.metrics(), /x_total\{route="a"\} 2\n[^]*x_total\{route="b"\} 1\n/)
  t.match(await registry.metrics(), /x_total\{route="a"\} 2\n/, 'a second read adds nothing')
  a.pending++
  const values = (await counter.get()).values
  t.strictSame(values.map(v => [v.labels.route, v.value]), [['a', 3], ['b', 1]], 'get() reads through the tally too')
})

t.test('the request metrics: counts and in-flight as a scrape shows them', async t => {
  const metrics = createMetrics(new Registry())
  t.teardown(() => metrics.close())
  metrics.requestTally.series('hello\0GET\0forwarded\x002xx', { route: 'hello', method: 'GET', outcome: 'forwarded', status_class: '2xx' }).pending += 3
  metrics.protocolTally.series('HTTP/1.1', { protocol: 'HTTP/1.1' }).pending++
  metrics.requestsInFlight.count += 2
  const text = await metrics.registry.metrics()
  t.match(text, /^portcullis_requests_total\{route="hello",method="GET",outcome="forwarded",status_class="2xx"\} 3$/m)
  t.match(text, /^portcullis_requests_by_protocol_total\{protocol="HTTP\/1.1"\} 1$/m)
  t.match(text, /^portcullis_requests_in_flight 2$/m)
})
