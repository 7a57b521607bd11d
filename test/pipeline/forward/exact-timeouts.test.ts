import t from 'tap'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { Readable } from 'node:stream'
import type { Test } from 'tap'
import { errors as undiciErrors, Pool } from 'undici'
import { exactTimeouts } from '../../../src/pipeline/forward/exact-timeouts.js'

// headersTimeout and bodyTimeout on a real undici Pool against a real server on loopback. The bounds
// tell 200 ms from undici's own timers (which fire after 0.5–1 s for such values); they are not a
// measure of speed.

async function setup (t: Test, handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const server = createServer(handler)
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const pool = new Pool(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, { headersTimeout: 0, bodyTimeout: 0 })
  t.teardown(async () => {
    await pool.destroy()
    server.closeAllConnections()
    await new Promise<void>(resolve => server.close(() => resolve()))
  })
  return pool.compose(exactTimeouts({ headersTimeoutMs: 30_000, bodyTimeoutMs: 30_000 }))
}

const sleep = async (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

t.test('a 200 ms headers timeout fires at about 200 ms', async t => {
  const d = await setup(t, req => { req.resume() }) // never answers
  const started = performance.now()
  const err = await d.request({ path: '/', method: 'GET', headersTimeout: 200 }).then(() => null, (e: Error) => e)
  const took = performance.now() - started
  t.type(err, undiciErrors.HeadersTimeoutError)
  t.ok(took >= 190 && took < 700, `after ${Math.round(took)} ms`)
})

t.test('the headers timeout does not run while the request body is still being sent', async t => {
  const d = await setup(t, (req, res) => { req.resume(); req.once('end', () => res.end('ok')) })
  // A body that takes ~500 ms to send, against a 200 ms headers timeout.
  const body = Readable.from((async function * () { for (let i = 0; i < 5; i++) { await sleep(100); yield Buffer.from('x') } })())
  const res = await d.request({ path: '/', method: 'POST', body, headersTimeout: 200 })
  t.equal(res.statusCode, 200)
  t.equal(await res.body.text(), 'ok')
})

t.test('a 200 ms body timeout fires on a stalled body at about 200 ms, and not while chunks keep coming', async t => {
  const d = await setup(t, (req, res) => {
    req.resume()
    res.writeHead(200)
    if (req.url === '/stall') { res.write('a'); return }
    let n = 0
    const tick = setInterval(() => { res.write('b'); if (++n === 5) { clearInterval(tick); res.end() } }, 100)
  })
  const steady = await d.request({ path: '/steady', method: 'GET', bodyTimeout: 200 })
  t.equal(await steady.body.text(), 'bbbbb', 'a chunk every 100 ms keeps a 200 ms body timeout from firing')

  const stalled = await d.request({ path: '/stall', method: 'GET', bodyTimeout: 200 })
  const started = performance.now()
  const err = await stalled.body.text().then(() => null, (e: Error) => e)
  const took = performance.now() - started
  t.type(err, undiciErrors.BodyTimeoutError)
  t.ok(took < 700, `after ${Math.round(took)} ms`)
})

t.test('the body timeout does not fire while the reader has paused the body (a slow client)', async t => {
  const big = Buffer.alloc(8 * 1024 * 1024, 'z')
  const d = await setup(t, (req, res) => { req.resume(); res.end(big) })
  const res = await d.request({ path: '/', method: 'GET', bodyTimeout: 200 })
  await sleep(600) // nothing read: undici pauses once its buffer is full
  let got = 0
  for await (const chunk of res.body) got += (chunk as Buffer).length
  t.equal(got, big.length, 'the whole body arrived')
})
