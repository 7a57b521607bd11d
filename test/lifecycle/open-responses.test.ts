import t from 'tap'
import { IncomingMessage, ServerResponse } from 'node:http'
import { Socket } from 'node:net'
import { OpenResponses } from '../../src/lifecycle/open-responses.js'

const response = (): ServerResponse => new ServerResponse(new IncomingMessage(new Socket()))
const openOnes = (open: OpenResponses): ServerResponse[] => {
  const out: ServerResponse[] = []
  open.forEach(res => out.push(res))
  return out
}

t.test('a response is open from add until it closes, whatever the order they close in', async t => {
  const open = new OpenResponses()
  const [a, b, c, d] = [response(), response(), response(), response()]
  const closed: string[] = []
  open.add(a, () => closed.push('a'))
  open.add(b, () => closed.push('b'))
  open.add(c, () => closed.push('c'))
  t.same(openOnes(open), [c, b, a], 'newest first')
  b.emit('close') // from the middle
  t.same(openOnes(open), [c, a])
  c.emit('close') // the newest
  open.add(d, () => closed.push('d'))
  t.same(openOnes(open), [d, a])
  a.emit('close') // the oldest
  d.emit('close')
  t.same(openOnes(open), [], 'none left')
  t.same(closed, ['b', 'c', 'a', 'd'], 'each one told once, when it closed')
  a.emit('close')
  t.same(closed, ['b', 'c', 'a', 'd'], 'a second close changes nothing')
})
