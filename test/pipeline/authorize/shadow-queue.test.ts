import t from 'tap'
import { ShadowQueue } from '../../../src/pipeline/authorize/shadow-queue.js'

t.test('first in, first out, up to its capacity, across the ring\'s end', async t => {
  const q = new ShadowQueue<number>(3)
  t.equal(q.shift(), undefined, 'empty')
  for (const n of [1, 2, 3]) t.ok(q.push(n), `${n} in`)
  t.notOk(q.push(4), 'full: refused')
  t.equal(q.length, 3)
  t.equal(q.shift(), 1)
  t.ok(q.push(5), 'room again')
  t.same([q.shift(), q.shift(), q.shift()], [2, 3, 5], 'in order, wrapping around')
  t.equal(q.length, 0)
  t.equal(q.shift(), undefined)
  for (let i = 0; i < 10; i++) {
    q.push(i)
    q.push(i + 100)
    t.same([q.shift(), q.shift()], [i, i + 100])
  }
  t.equal(q.length, 0, 'many laps later, still empty and in order')
})

t.test('clear empties it', async t => {
  const q = new ShadowQueue<string>(2)
  q.push('a')
  q.push('b')
  q.clear()
  t.equal(q.length, 0)
  t.equal(q.shift(), undefined)
  t.ok(q.push('c'))
  t.equal(q.shift(), 'c')
})
