import { connect as h2connect, constants, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2'
import type { Exchange, RawResponse } from './raw-http.js'
import { FLAG, FRAME, errorCode, frame, headerBlock, openH2, type Frame } from './h2-frames.js'

/*
 * The security suites over HTTP/2 (issue #21): each HTTP/1.1 request they write byte for byte is
 * sent as the HTTP/2 request a client would make of it (h1 → h2 is what a front proxy or a client
 * library does): method and target become :method and :path, Host becomes :authority, names are
 * lower-cased (RFC 9113 §8.2), every value and the body are kept byte for byte (an obs-fold becomes
 * a CR LF inside the value: the h2 → h1 desync attempt). Sent with node:http2; what Node's client
 * refuses to send (connection-specific headers, a repeated single-value field) is written as raw
 * frames instead.
 */

const TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/

export interface H1Request { method: string, target: string, fields: Array<[string, string]>, body: Buffer }

/** Reads an HTTP/1.1 request written by a test (leniently: it is the attack, not a parser under test). */
export function parseH1Request (bytes: string | Buffer): H1Request {
  const text = typeof bytes === 'string' ? bytes : bytes.toString('latin1')
  let end = text.indexOf('\r\n\r\n')
  let sep = 4
  if (end === -1) { end = text.indexOf('\n\n'); sep = 2 }
  if (end === -1) { end = text.length; sep = 0 }
  const lines = text.slice(0, end).split('\r\n')
  // method SP target SP version: the target is everything between the first and the last space.
  const line = lines.shift() ?? ''
  const first = line.indexOf(' ')
  const last = line.lastIndexOf(' ')
  const method = first === -1 ? line : line.slice(0, first)
  const target = first === -1 ? '/' : last > first ? line.slice(first + 1, last) : line.slice(first + 1)
  const fields: Array<[string, string]> = []
  for (const line of lines) {
    if ((line.startsWith(' ') || line.startsWith('\t')) && fields.length > 0) {
      fields[fields.length - 1]![1] += `\r\n${line}`
      continue
    }
    const colon = line.indexOf(':')
    if (colon <= 0) continue
    fields.push([line.slice(0, colon).toLowerCase(), line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '')])
  }
  return { method, target, fields, body: Buffer.from(text.slice(end + sep), 'latin1') }
}

/** Answers read from raw frames: only :status and the body are known. */
export const HEADERS_UNKNOWN = new WeakSet<RawResponse>()

/**
 * The HTTP/2 exchange of `bytes`: its one response, or none when the stream or connection was reset
 * (`reset` has the code). `forbidden`: a field has CR, LF or NUL, which the gateway's frame guard refuses
 * (RST_STREAM PROTOCOL_ERROR). `dropped`: other fields nghttp2 finds invalid (a name that is not a
 * token), which Node removes from the request rather than refusing it (node_http2.cc,
 * OnInvalidHeader); the rest of the request goes on without them.
 */
export type H2Exchange = Exchange & { reset?: number, dropped: Array<[string, string]>, forbidden: boolean }

const FORBIDDEN = /[\r\n\0]/

export async function exchangeH2 (port: number, ca: Buffer, bytes: string | Buffer, timeoutMs = 5000): Promise<H2Exchange> {
  const req = parseH1Request(bytes)
  const forbidden = req.fields.some(([n, v]) => FORBIDDEN.test(n) || FORBIDDEN.test(v))
  const dropped = req.fields.filter(([n, v]) => !FORBIDDEN.test(n) && !FORBIDDEN.test(v) && !TOKEN.test(n))
  return { ...await send(port, ca, req, timeoutMs), dropped, forbidden }
}

async function send (port: number, ca: Buffer, req: H1Request, timeoutMs: number): Promise<Omit<H2Exchange, 'dropped' | 'forbidden'>> {
  // One Host becomes :authority; none or several stay as they are (raw frames: Node would add one).
  const hosts = req.fields.filter(([n]) => n === 'host')
  const hostField = hosts.length === 1 ? hosts[0] : undefined
  const fields = req.fields.filter(f => f !== hostField)
  if (hostField === undefined) return rawExchange(port, ca, req, undefined, timeoutMs)
  const headers: OutgoingHttpHeaders = { ':method': req.method, ...(req.method === 'CONNECT' ? {} : { ':path': req.target }), ':authority': hostField[1] }
  for (const [n, v] of fields) {
    const had = headers[n]
    headers[n] = had === undefined ? v : [...(Array.isArray(had) ? had : [String(had)]), v]
  }
  const session = h2connect(`https://localhost:${port}`, { ca, host: '127.0.0.1', servername: 'localhost' })
  session.on('error', () => {})
  try {
    await new Promise<void>((resolve, reject) => { session.once('connect', () => resolve()); session.once('error', reject) })
    let stream
    try {
      // Node's client checks names only once the session writes them (a session error, no stream event),
      // and will not send CR, LF or NUL in a value (a stream error of its own, nothing sent).
      if (!fields.every(([n, v]) => TOKEN.test(n) && !FORBIDDEN.test(v))) throw new Error('not sendable by node:http2')
      stream = session.request(headers, { endStream: req.body.length === 0 })
    } catch {
      return await rawExchange(port, ca, req, hostField[1], timeoutMs)
    }
    stream.on('error', () => {})
    if (req.body.length > 0) stream.end(req.body)
    return await new Promise<Omit<H2Exchange, 'dropped' | 'forbidden'>>(resolve => {
      let head: IncomingHttpHeaders | undefined
      const chunks: Buffer[] = []
      const timer = setTimeout(() => stream.close(constants.NGHTTP2_CANCEL), timeoutMs)
      stream.on('response', h => { head = h })
      session.once('close', () => { clearTimeout(timer); if (head === undefined) resolve({ responses: [], text: '', closed: true, reset: -1 }) })
      stream.on('data', (c: Buffer) => chunks.push(c))
      stream.on('close', () => {
        clearTimeout(timer)
        const body = Buffer.concat(chunks).toString('latin1')
        if (head === undefined) { resolve({ responses: [], text: '', closed: true, reset: stream.rstCode ?? constants.NGHTTP2_INTERNAL_ERROR }); return }
        const out: Record<string, string> = {}
        for (const [k, v] of Object.entries(head)) if (!k.startsWith(':') && v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : String(v)
        const response: RawResponse = { status: Number(head[':status']), headers: out, body, complete: stream.rstCode === constants.NGHTTP2_NO_ERROR }
        resolve({ responses: [response], text: `${JSON.stringify(out)}\n${body}`, closed: true })
      })
    })
  } finally {
    session.destroy()
  }
}

/**
 * Raw frames for what node:http2 will not send. The answer's header block is not decoded beyond
 * :status (so its other headers are unknown: `headers` stays empty); its body is read as is.
 */
async function rawExchange (port: number, ca: Buffer, req: H1Request, authority: string | undefined, timeoutMs: number): Promise<Omit<H2Exchange, 'dropped' | 'forbidden'>> {
  const conn = await openH2(port, ca)
  try {
    const fields: Array<[string, string]> = [[':method', req.method], [':scheme', 'https'], ...(authority !== undefined ? [[':authority', authority] as [string, string]] : []), [':path', req.target],
      ...req.fields.filter(([n, v]) => n !== 'host' || v !== authority)]
    const end = req.body.length === 0
    conn.send(frame(FRAME.HEADERS, FLAG.END_HEADERS | (end ? FLAG.END_STREAM : 0), 1, headerBlock(fields)), ...(end ? [] : [frame(FRAME.DATA, FLAG.END_STREAM, 1, req.body)]))
    const last = await conn.waitFor(f => (f.stream === 1 && (f.type === FRAME.RST_STREAM || (f.type === FRAME.DATA && (f.flags & FLAG.END_STREAM) !== 0) || (f.type === FRAME.HEADERS && (f.flags & FLAG.END_STREAM) !== 0))) || f.type === FRAME.GOAWAY, timeoutMs)
    const mine = conn.frames.filter(f => f.stream === 1)
    const head = mine.find(f => f.type === FRAME.HEADERS)
    if (head === undefined || last === undefined || last.type === FRAME.RST_STREAM || last.type === FRAME.GOAWAY) {
      return { responses: [], text: '', closed: true, reset: last === undefined ? -1 : errorCode(last) }
    }
    const body = Buffer.concat(mine.filter(f => f.type === FRAME.DATA).map(f => f.payload)).toString('latin1')
    const response: RawResponse = { status: statusOf(head), headers: {}, body, complete: true }
    HEADERS_UNKNOWN.add(response)
    return { responses: [response], text: body, closed: true }
  } finally {
    conn.close()
  }
}

// RFC 7541 Appendix A: the static table's :status entries.
const STATIC_STATUS: Record<number, number> = { 8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500 }
// RFC 7541 Appendix B, the digits only: '0'-'2' are 5 bits (00000-00010), '3'-'9' 6 bits (011001-011111).
function huffmanDigits (bytes: Buffer): string {
  const bits = [...bytes].map(b => b.toString(2).padStart(8, '0')).join('')
  let out = ''
  let i = 0
  while (i + 5 <= bits.length) {
    const five = parseInt(bits.slice(i, i + 5), 2)
    if (five <= 2) { out += String(five); i += 5; continue }
    if (i + 6 > bits.length) break
    const six = parseInt(bits.slice(i, i + 6), 2)
    if (six < 0x19 || six > 0x1f) break // padding (all ones) or not a digit
    out += String(six - 0x19 + 3)
    i += 6
  }
  return out
}

/** :status of a response header block (the first field nghttp2 writes): indexed, or a literal with the indexed name. */
export function statusOf (f: Frame): number {
  const p = f.payload
  const first = p[0]!
  if ((first & 0x80) !== 0) return STATIC_STATUS[first & 0x7f] ?? -1
  // A literal with indexed name 8 (:status): with (0x48), without (0x08) or never (0x18) indexing.
  if ((first & 0x3f) !== 8 && (first & 0x0f) !== 8) return -1
  const huffman = (p[1]! & 0x80) !== 0
  const raw = p.subarray(2, 2 + (p[1]! & 0x7f))
  return Number(huffman ? huffmanDigits(raw) : raw.toString('latin1'))
}
