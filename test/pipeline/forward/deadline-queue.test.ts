import t from 'tap'
import { DeadlineQueue, type DeadlineEntry } from '../../../src/pipeline/forward/deadline-queue.js'

// The total deadlines of one length under one timer (deadline-queue.ts). What is asserted is order,
// "never before its time" and "never after it was removed", not how soon after its time it fires.

class Entry implements DeadlineEntry<Entry> {
  due = 0
  older: Entry | null = null
  newer: Entry | null = null
  queued = false
  firedAt: number | null = null
  readonly fired: Promise<void>
  #done!: () => void
  constructor (readonly name: string, readonly log: string[], readonly onExpire: () => void = () => {}) {
    this.fired = new Promise(resolve => { this.#done = resolve })
  }

  expire (): void {
    this.firedAt = performance.now()
    this.log.push(this.name)
    this.onExpire()
    this.#done()
  }
}

const sleep = async (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

t.test('deadlines expire in the order they were set, none before its time', async t => {
  const q = new DeadlineQueue<Entry>(40)
  const log: string[] = []
  const a = new Entry('a', log)
  const b = new Entry('b', log)
  const addedA = performance.now()
  q.add(a)
  await sleep(5)
  const addedB = performance.now()
  q.add(b)
  await Promise.all([a.fired, b.fired])
  t.same(log, ['a', 'b'])
  t.ok(a.firedAt! - addedA >= 40, `a fired ${(a.firedAt! - addedA).toFixed(1)} ms after it was set, not before 40`)
  t.ok(b.firedAt! - addedB >= 40, `b fired ${(b.firedAt! - addedB).toFixed(1)} ms after it was set, not before 40`)
  t.equal(q.size, 0)
  t.notOk(q.armed, 'no timer is left once nothing is queued')
})

t.test('a removed deadline never fires, wherever it stood; the rest still do', async t => {
  const q = new DeadlineQueue<Entry>(30)
  const log: string[] = []
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(n => new Entry(n, log)) as [Entry, Entry, Entry, Entry]
  for (const e of [a, b, c, d]) q.add(e)
  q.remove(a) // the head: the timer armed for it fires early and waits again
  q.remove(c) // the middle
  q.remove(c) // twice: nothing happens
  t.equal(q.size, 2)
  await Promise.all([b.fired, d.fired])
  await sleep(60)
  t.same(log, ['b', 'd'])
  t.notOk(q.armed)
})

t.test('removing the last deadline disarms the timer; a new one arms it again', async t => {
  const q = new DeadlineQueue<Entry>(20)
  const log: string[] = []
  const a = new Entry('a', log)
  q.add(a)
  t.ok(q.armed)
  q.remove(a)
  t.notOk(q.armed, 'nothing keeps the process awake for a deadline that cannot fire')
  const b = new Entry('b', log)
  q.add(b)
  t.ok(q.armed)
  await b.fired
  t.same(log, ['b'])
})

t.test('a deadline set while others expire is timed from when it was set', async t => {
  const q = new DeadlineQueue<Entry>(30)
  const log: string[] = []
  let late: Entry | null = null
  let addedLate = 0
  const a = new Entry('a', log, () => {
    late = new Entry('late', log)
    addedLate = performance.now()
    q.add(late)
  })
  q.add(a)
  await a.fired
  const l = late as Entry | null
  t.ok(l !== null)
  await l!.fired
  t.same(log, ['a', 'late'])
  t.ok(l!.firedAt! - addedLate >= 30, 'not before its own time')
  t.notOk(q.armed)
})
