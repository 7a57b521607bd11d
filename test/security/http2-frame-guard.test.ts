import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { connect as h2connect } from 'node:http2'
import { promisify } from 'node:util'
import { ERROR, FLAG, FRAME, data, errorCode, frame, headerBlock, headers, openH2, ping, requestFields, settings, type RawH2 } from '../helpers/h2-frames.js'
import { statusOf } from '../helpers/h2-exchange.js'
import { startSecurityHarness } from '../helpers/security.js'

// Issue #21: the HTTP/2 frame guard in front of Node's session (src/lifecycle/h2-frame-guard.ts), with
// raw frames over real TLS: a field with CR, LF or NUL is refused (Node alone drops the field and serves
// the request), an unsolicited PING ACK is ignored, and a send window past 2^31-1 is a FLOW_CONTROL_ERROR
// of the stream or connection it belongs to; clients that raise their windows to 2^31-1 are served.

const h = await startSecurityHarness(t)
const token = h.auth.replace(/^Authorization: /, '')
const authed = (path: string, extra: Array<[string, string]> = [], method = 'GET'): Array<[string, string]> =>
  requestFields(method, path, [['authorization', token], ...extra])
const MAX = 2 ** 31 - 1

async function open (t: Test): Promise<RawH2> {
  const conn = await openH2(h.port, h.ca)
  t.teardown(() => conn.close())
  return conn
}

/** The end of `stream`: its RST_STREAM, its last frame, or the connection's GOAWAY. */
async function ended (conn: RawH2, stream: number): Promise<{ reset?: number, goaway?: number, status?: number }> {
  const last = await conn.waitFor(f => (f.stream === stream && (f.type === FRAME.RST_STREAM || (f.type !== FRAME.WINDOW_UPDATE && (f.flags & FLAG.END_STREAM) !== 0))) || f.type === FRAME.GOAWAY, 8000)
  if (last === undefined) return {}
  if (last.type === FRAME.GOAWAY) return { goaway: errorCode(last) }
  if (last.type === FRAME.RST_STREAM) return { reset: errorCode(last) }
  const head = conn.frames.find(f => f.stream === stream && f.type === FRAME.HEADERS)
  return head === undefined ? {} : { status: statusOf(head) }
}

// RFC 7541 Appendix B codes, written out here (not taken from the gateway): enough for "a\nb" and friends.
const CODES: Record<string, [number, number]> = { a: [0x3, 5], b: [0x23, 6], '\n': [0x3ffffffc, 30], '\r': [0x3ffffffd, 30], '\0': [0x1ff8, 13], x: [0x6f, 7], '-': [0x16, 6] }
function huffman (text: string): Buffer {
  let bits = ''
  for (const c of text) bits += CODES[c]![0].toString(2).padStart(CODES[c]![1], '0')
  bits = bits.padEnd(Math.ceil(bits.length / 8) * 8, '1')
  return Buffer.from(bits.match(/.{8}/g)!.map(b => parseInt(b, 2)))
}
/** A literal field (§6.2): `first` 0x00 without indexing, 0x40 with incremental indexing; the value Huffman-coded or not. */
function literal (first: number, name: string, value: string, huffmanValue = false): Buffer {
  const v = huffmanValue ? huffman(value) : Buffer.from(value, 'latin1')
  return Buffer.concat([Buffer.from([first, name.length]), Buffer.from(name, 'latin1'), Buffer.from([(huffmanValue ? 0x80 : 0) | v.length]), v])
}
const request = (path: string, ...extra: Buffer[]): Buffer => Buffer.concat([headerBlock(authed(path)), ...extra])

async function refusedCount (): Promise<number> { return (await h.rejected()).guard_bad_request ?? 0 }

t.test('CR, LF, NUL or another control character in a field, or a name that is not a token: the stream is refused (RST_STREAM PROTOCOL_ERROR), nothing reaches the function', async t => {
  const cases: Array<[string, Buffer]> = [
    ['LF in a value', literal(0x00, 'x-evil', 'a\nx-portcullis-subject: mallory')],
    ['CR LF in a value', literal(0x00, 'x-evil', 'a\r\nTransfer-Encoding: chunked')],
    ['NUL in a value', literal(0x10, 'x-evil', 'a\0mallory')], // never indexed
    ['CR in a name', literal(0x00, 'x-e\rvil', 'mallory')],
    ['NUL in a name', literal(0x00, 'x-evil\0', 'mallory')],
    ['LF in a Huffman-coded value', literal(0x00, 'x-evil', 'a\nb', true)],
    ['NUL in a Huffman-coded value', literal(0x00, 'x-evil', 'b\0a', true)],
    ['CR in a Huffman-coded value', literal(0x00, 'x-evil', 'ab\r', true)],
    // What else HTTP/1.1's parser answers 400 for (Node alone would drop the field and serve the request).
    ['SOH in a value', literal(0x00, 'x-evil', 'a\x01b')],
    ['DEL in a value', literal(0x00, 'x-evil', 'a\x7fb')],
    ['a space in a name', literal(0x00, 'x evil', 'mallory')],
    ['a colon inside a name', literal(0x00, 'x-portcullis-subject:x', 'mallory')]
  ]
  for (const [name, field] of cases) {
    const bytes = h.stub.received.length
    const counted = await refusedCount()
    const conn = await open(t)
    conn.send(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, request(`/public/guard/${name.replace(/\W/g, '-')}`, field)))
    t.strictSame(await ended(conn, 1), { reset: ERROR.PROTOCOL_ERROR }, `${name}: RST_STREAM PROTOCOL_ERROR`)
    t.equal(h.stub.received.length, bytes, `${name}: zero bytes reached the function`)
    t.equal(await refusedCount() - counted, 1, `${name}: counted in portcullis_rejected_total{reason="guard_bad_request"}`)
    // The connection goes on: the next stream is served.
    conn.send(headers(3, authed('/public/guard/after'), { endStream: true }))
    t.strictSame(await ended(conn, 3), { status: 200 }, `${name}: the next stream on the connection is served`)
  }
})

t.test('the same field, split across reads and CONTINUATION frames, padded and with priority', async t => {
  const bytes = h.stub.received.length
  const block = request('/public/guard/split', literal(0x00, 'x-evil', 'aaaa\r\nx-portcullis-subject: mallory'))
  const cut = block.length - 20 // inside the bad value
  const conn = await open(t)
  // The helper acknowledges the server's SETTINGS as they come: not in the middle of the frames below.
  await conn.waitFor(f => f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0)
  // HEADERS: PADDED (pad 7) and PRIORITY, first part of the block; CONTINUATION: the rest. Sent byte by byte.
  const first = Buffer.concat([Buffer.from([7, 0, 0, 0, 0, 15]), block.subarray(0, cut), Buffer.alloc(7)])
  const all = Buffer.concat([frame(FRAME.HEADERS, FLAG.END_STREAM | 0x8 | 0x20, 1, first), frame(FRAME.CONTINUATION, FLAG.END_HEADERS, 1, block.subarray(cut))])
  for (const byte of all) { conn.send(Buffer.from([byte])); await new Promise(resolve => setImmediate(resolve)) }
  t.strictSame(await ended(conn, 1), { reset: ERROR.PROTOCOL_ERROR }, 'RST_STREAM PROTOCOL_ERROR')
  t.equal(h.stub.received.length, bytes, 'zero bytes reached the function')
  // The same framing with a clean block is served.
  const clean = request('/public/guard/split-clean')
  conn.send(frame(FRAME.HEADERS, FLAG.END_STREAM | 0x8 | 0x20, 3, Buffer.concat([Buffer.from([3, 0, 0, 0, 0, 15]), clean.subarray(0, 10), Buffer.alloc(3)])),
    frame(FRAME.CONTINUATION, FLAG.END_HEADERS, 3, clean.subarray(10)))
  t.strictSame(await ended(conn, 3), { status: 200 }, 'a clean padded, prioritised, continued block is served')
})

t.test('a bad field added to the HPACK dynamic table ends the connection (GOAWAY PROTOCOL_ERROR)', async t => {
  const bytes = h.stub.received.length
  const conn = await open(t)
  conn.send(frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, request('/public/guard/indexed', literal(0x40, 'x-evil', 'a\r\nmallory'))))
  t.strictSame(await ended(conn, 1), { goaway: ERROR.PROTOCOL_ERROR }, 'GOAWAY PROTOCOL_ERROR: later blocks could refer to the entry')
  await conn.closed
  t.ok(conn.socket.destroyed, 'the connection is closed')
  t.equal(h.stub.received.length, bytes, 'zero bytes reached the function')
})

t.test('a bad field in trailers resets the stream', async t => {
  const conn = await open(t)
  conn.send(headers(1, authed('/public/guard/trailers', [], 'POST')), data(1, 'hello', false),
    frame(FRAME.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, 1, literal(0x00, 'x-trailer', 'a\nb')))
  const end = await ended(conn, 1)
  t.equal(end.reset, ERROR.PROTOCOL_ERROR, 'RST_STREAM PROTOCOL_ERROR')
  t.notOk(h.stub.requests.some(r => r.includes('/public/guard/trailers')), 'the function never got a complete request')
})

t.test('a PING ACK for no PING of the gateway is ignored (RFC 9113 §6.7)', async t => {
  const conn = await open(t)
  conn.send(ping('unasked!', true))
  conn.send(headers(1, authed('/public/guard/after-ping'), { endStream: true }))
  t.strictSame(await ended(conn, 1), { status: 200 }, 'the connection goes on and serves a request')
  t.notOk(conn.frames.some(f => f.type === FRAME.GOAWAY), 'no GOAWAY')
})

const windowUpdate = (stream: number, increment: number): Buffer => {
  const p = Buffer.alloc(4)
  p.writeUInt32BE(increment)
  return frame(FRAME.WINDOW_UPDATE, 0, stream, p)
}

t.test('WINDOW_UPDATE past 2^31-1: the connection\'s is a GOAWAY FLOW_CONTROL_ERROR, a stream\'s a RST_STREAM of that stream', async t => {
  const conn = await open(t)
  conn.send(windowUpdate(0, MAX - 65_535), windowUpdate(0, 1))
  const goaway = await conn.waitFor(f => f.type === FRAME.GOAWAY)
  t.equal(goaway === undefined ? undefined : errorCode(goaway), ERROR.FLOW_CONTROL_ERROR, 'connection: GOAWAY FLOW_CONTROL_ERROR')
  await conn.closed

  const streams = await open(t)
  // Stream 1 stays open (its request body never ends); its window goes past the limit.
  // The third, after the reset, must not reach nghttp2 either (it would judge it against its own window).
  streams.send(headers(1, authed('/public/guard/window', [], 'POST')), windowUpdate(1, MAX - 65_535), windowUpdate(1, 1), windowUpdate(1, MAX))
  t.strictSame(await ended(streams, 1), { reset: ERROR.FLOW_CONTROL_ERROR }, 'stream 1: RST_STREAM FLOW_CONTROL_ERROR')
  streams.send(headers(3, authed('/public/guard/window-after'), { endStream: true }))
  t.strictSame(await ended(streams, 3), { status: 200 }, 'the connection and its other streams go on')
  t.notOk(streams.frames.some(f => f.type === FRAME.GOAWAY), 'no GOAWAY')
})

t.test('windows raised to exactly 2^31-1, and back after each DATA, are never cut off', async t => {
  const conn = await open(t)
  conn.send(settings([[0x4, MAX]]), windowUpdate(0, MAX - 65_535))
  for (let i = 0; i < 5; i++) {
    const id = 1 + 2 * i
    conn.send(headers(id, authed(`/public/guard/max/${i}`), { endStream: true }))
    t.strictSame(await ended(conn, id), { status: 200 }, `request ${i + 1} served`)
    // Give back what the DATA took: the window is 2^31-1 again, by the client's count and the gateway's.
    const taken = conn.frames.filter(f => f.stream === id && f.type === FRAME.DATA).reduce((n, f) => n + f.payload.length, 0)
    if (taken > 0) conn.send(windowUpdate(0, taken))
  }
  conn.send(headers(11, authed('/public/guard/max/last'), { endStream: true }))
  t.strictSame(await ended(conn, 11), { status: 200 }, 'and the next one')
  t.notOk(conn.frames.some(f => f.type === FRAME.GOAWAY || f.type === FRAME.RST_STREAM), 'no GOAWAY, no reset')

  // Node's own client with the largest windows.
  const session = h2connect(`https://localhost:${h.port}`, { ca: h.ca, host: '127.0.0.1', servername: 'localhost', settings: { initialWindowSize: MAX } })
  t.teardown(() => session.destroy())
  session.on('error', () => {})
  await new Promise<void>(resolve => session.once('connect', () => resolve()))
  session.setLocalWindowSize(MAX)
  const statuses = await Promise.all(Array.from({ length: 20 }, async (_, i) => new Promise<number>(resolve => {
    const req = session.request({ ':path': `/public/guard/node/${i}`, authorization: token })
    req.on('response', hd => { resolve(Number(hd[':status'])) })
    req.on('error', () => resolve(0))
    req.end()
    req.resume()
  })))
  t.strictSame(statuses, Array(20).fill(200), 'node:http2 with 2^31-1 windows: 20 requests served')
})

t.test('h2load with its largest windows (-w 30 -W 30: 2^30-1, it takes no more) is served in full', async t => {
  const run = await promisify(execFile)('h2load', ['-n', '200', '-c', '2', '-m', '10', '-w', '30', '-W', '30', '-H', `authorization: ${token}`,
    `https://127.0.0.1:${h.port}/public/guard/h2load`], { env: { ...process.env, SSL_CERT_FILE: '' } }).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }))
  t.match(run.stdout, /requests: 200 total, 200 started, 200 done, 200 succeeded, 0 failed, 0 errored/, 'all 200 succeeded', { output: run.stdout.slice(-1500) })
})
