import t, { type Test } from 'tap'
import { connect as h2connect, constants, type ClientHttp2Session } from 'node:http2'
import { ERROR, FRAME, errorCode, headers, openH2, requestFields, rstStream, type RawH2 } from '../helpers/h2-frames.js'
import { startSecurityHarness } from '../helpers/security.js'

// Issue #21, rapid reset (CVE-2023-44487): a connection that cancels more streams than its budget
// (limits.http2.resetBurst, refilled at resetsPerSecond) is cut off with GOAWAY ENHANCE_YOUR_CALM,
// counted and logged, and its address is refused for abusePenaltySeconds; a client that cancels
// streams as browsers do is not. The defaults are tested: they are what a deployment gets.

const h = await startSecurityHarness(t)
const token = h.auth.replace(/^Authorization: /, '')

const counter = async (name: string): Promise<number> =>
  Number(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+)$`, 'm').exec(await h.metrics())?.[1] ?? 0)
const CUT_OFFS = 'portcullis_http2_cutoffs_total'
const REFUSED = 'portcullis_http2_connections_refused_total'
const H2_REQUESTS = 'portcullis_requests_by_protocol_total\\{protocol="HTTP/2"\\}'

/** Streams 1, 3, 5, ... opened and reset at once, `perWrite` pairs per write, from `conn`. */
function rapidReset (conn: RawH2, streams: number, code: number, perWrite = 50): void {
  for (let first = 0; first < streams && conn.socket.writable; first += perWrite) {
    const pairs: Buffer[] = []
    for (let i = first; i < Math.min(streams, first + perWrite); i++) {
      const id = 1 + 2 * i
      pairs.push(headers(id, requestFields('GET', `/public/abuse/${i}`), { endStream: true }), rstStream(id, code))
    }
    conn.send(...pairs)
  }
}

/** A normal client, from 127.0.0.1, on a connection of its own. */
async function served (t: Test): Promise<void> {
  const session = h2connect(`https://localhost:${h.port}`, { ca: h.ca, host: '127.0.0.1', servername: 'localhost' })
  t.teardown(() => session.destroy())
  const status = await new Promise<number>(resolve => {
    session.on('error', () => resolve(0))
    const req = session.request({ ':path': '/public/after', authorization: token })
    req.on('response', hd => { resolve(Number(hd[':status'])) })
    req.on('error', () => resolve(0))
    req.end()
    req.resume()
  })
  t.equal(status, 200, 'a client from another address is served')
}

// Each case from an address of its own: the penalty refuses the abuser's address, not the others'.
const ABUSERS: Array<[string, string, number]> = [
  ['RST_STREAM CANCEL, as the CVE\'s tools send', '127.0.0.2', ERROR.CANCEL],
  // NO_ERROR leaves the stream's read side open in Node; it is a cancel all the same.
  ['RST_STREAM NO_ERROR', '127.0.0.3', ERROR.NO_ERROR]
]

for (const [name, address, code] of ABUSERS) {
  t.test(`a connection cancelling 300 streams at once (${name}) is cut off with GOAWAY ENHANCE_YOUR_CALM`, async t => {
    const cutOffs = await counter(CUT_OFFS)
    const refused = await counter(REFUSED)
    const requests = await counter(H2_REQUESTS)
    const conn = await openH2(h.port, h.ca, '127.0.0.1', address)
    t.teardown(() => conn.close())
    rapidReset(conn, 300, code)
    const goaway = await conn.waitFor(f => f.type === FRAME.GOAWAY, 10_000)
    t.ok(goaway !== undefined, 'GOAWAY received')
    t.equal(goaway === undefined ? undefined : errorCode(goaway), ERROR.ENHANCE_YOUR_CALM, 'with ENHANCE_YOUR_CALM')
    const closed = await Promise.race([conn.closed.then(() => true), new Promise<boolean>(resolve => setTimeout(() => resolve(false), 5000))])
    t.ok(closed, 'and the connection is closed')
    t.equal(await counter(CUT_OFFS) - cutOffs, 1, `counted in ${CUT_OFFS}{reason="client_resets"}`)
    t.match(await h.metrics(), /portcullis_http2_cutoffs_total\{reason="client_resets"\} \d+/, 'by reason')
    // Each stream was reset in the read that brought it: dropped before the request path (listener.ts).
    t.equal(await counter(H2_REQUESTS) - requests, 0, 'no cancelled stream went through the request path')

    // The same address reconnecting at once is refused before TLS (abusePenaltySeconds, 10 by default).
    await t.rejects(openH2(h.port, h.ca, '127.0.0.1', address), 'a new connection from the same address is refused')
    t.equal(await counter(REFUSED) - refused, 1, `counted in ${REFUSED}`)
    await served(t)
  })
}

t.test('a client that cancels streams as a browser does is not cut off', async t => {
  const cutOffs = await counter(CUT_OFFS)
  const session: ClientHttp2Session = h2connect(`https://localhost:${h.port}`, { ca: h.ca, host: '127.0.0.1', servername: 'localhost' })
  t.teardown(() => session.destroy())
  let goaway: number | undefined
  session.on('goaway', code => { goaway = code })
  session.on('error', () => {})
  await new Promise<void>((resolve, reject) => { session.once('connect', () => resolve()); session.once('error', reject) })
  const get = async (path: string): Promise<number> => new Promise(resolve => {
    const req = session.request({ ':path': path, authorization: token })
    req.on('response', hd => { resolve(Number(hd[':status'])) })
    req.on('error', () => resolve(0))
    req.on('close', () => resolve(0))
    req.end()
    req.resume()
  })
  // Navigating away from a page with 60 images loading: every one of them cancelled before its answer.
  const cancelled = Array.from({ length: 60 }, (_, i) => {
    const req = session.request({ ':path': `/public/image/${i}`, authorization: token })
    req.on('error', () => {})
    req.end()
    return req
  })
  await new Promise(resolve => setImmediate(resolve))
  for (const req of cancelled) req.close(constants.NGHTTP2_CANCEL)
  await Promise.all(cancelled.map(async req => new Promise(resolve => req.once('close', resolve))))
  // The next page, on the same connection.
  const statuses = []
  for (let i = 0; i < 20; i++) statuses.push(await get(`/public/next/${i}`))
  t.strictSame(statuses, Array(20).fill(200), 'the next 20 requests on the same connection are served')
  t.equal(goaway, undefined, 'no GOAWAY')
  t.notOk(session.closed || session.destroyed, 'the connection stays open')
  t.equal(await counter(CUT_OFFS), cutOffs, 'no cut-off counted')
})

t.test('an address in bans.trustedNetworks is cut off but never refused (a load balancer many clients share)', async t => {
  const lb = await startSecurityHarness(t, { configure: raw => { raw.bans = { ...raw.bans, trustedNetworks: ['127.0.0.5/32'] } } })
  const conn = await openH2(lb.port, lb.ca, '127.0.0.1', '127.0.0.5')
  t.teardown(() => conn.close())
  rapidReset(conn, 300, ERROR.CANCEL)
  const goaway = await conn.waitFor(f => f.type === FRAME.GOAWAY, 10_000)
  t.equal(goaway === undefined ? undefined : errorCode(goaway), ERROR.ENHANCE_YOUR_CALM, 'the abusing connection is cut off')
  const again = await openH2(lb.port, lb.ca, '127.0.0.1', '127.0.0.5')
  t.teardown(() => again.close())
  t.ok(again.socket.alpnProtocol === 'h2' && !again.socket.destroyed, 'a new connection from the same (trusted) address is accepted')
  t.match(await lb.metrics(), /^portcullis_http2_connections_refused_total 0$/m, 'none refused')
})
