import t from 'tap'
import { createCircuitBreaker, type CircuitState } from '../../../src/pipeline/forward/circuit-breaker.js'

// The state machine alone, on a clock the test moves: closed → open after N failures in a row →
// one probe after openMs → closed on its success, open again on its failure.

function breaker (failures = 3, openMs = 1000) {
  let now = 0
  const changes: CircuitState[] = []
  const b = createCircuitBreaker({ failures, openMs, onChange: s => changes.push(s), now: () => now })
  return { b, changes, advance: (ms: number) => { now += ms } }
}

t.test('failures must be consecutive to open the circuit', async t => {
  const { b } = breaker(3)
  b.failed(); b.failed(); b.succeeded(); b.failed(); b.failed()
  t.equal(b.state, 'closed', 'a success in between resets the count')
  t.ok(b.admit())
  b.failed()
  t.equal(b.state, 'open')
})

t.test('an open circuit refuses until openMs, then admits exactly one probe', async t => {
  const { b, changes, advance } = breaker(1, 1000)
  b.failed()
  t.notOk(b.admit(), 'open: refused')
  advance(999)
  t.notOk(b.admit(), 'still open just before openMs')
  advance(1)
  t.ok(b.admit(), 'the probe')
  t.equal(b.state, 'half_open')
  t.notOk(b.admit(), 'others are refused while the probe is out')
  b.succeeded()
  t.equal(b.state, 'closed')
  t.ok(b.admit())
  t.strictSame(changes, ['open', 'half_open', 'closed'])
})

t.test('a failed probe opens the circuit again for another openMs', async t => {
  const { b, advance } = breaker(1, 1000)
  b.failed()
  advance(1000)
  t.ok(b.admit())
  b.failed()
  t.equal(b.state, 'open')
  advance(500)
  t.notOk(b.admit())
  advance(500)
  t.ok(b.admit())
})

t.test('a probe abandoned by its client does not leave the circuit half-open', async t => {
  const { b, advance } = breaker(1, 1000)
  b.failed()
  advance(1000)
  t.ok(b.admit())
  b.abandoned()
  t.equal(b.state, 'open')
  t.ok(b.admit(), 'the next request is the probe, without another openMs')
})

t.test('refusing() answers as admit() would, without taking the probe', async t => {
  const { b, advance } = breaker(1, 1000)
  t.notOk(b.refusing(), 'closed')
  b.failed()
  t.ok(b.refusing(), 'open')
  advance(1000)
  t.notOk(b.refusing(), 'due for a probe')
  t.notOk(b.refusing(), 'asking again takes nothing')
  t.equal(b.state, 'open', 'still open: no probe was taken')
  t.ok(b.admit(), 'the probe is still there for whoever is ready to send')
  t.ok(b.refusing(), 'half-open with its probe in flight')
})
