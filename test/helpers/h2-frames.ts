import { connect, type SecureContext, type TLSSocket } from 'node:tls'

/*
 * HTTP/2 written by hand (RFC 9113 frames, RFC 7541 literals without Huffman) over TLS with ALPN h2,
 * for the attack tests: Node's own client refuses to send what they must send (upper-case or
 * connection-specific names, CR/LF in values, floods). Received frames are kept as they are;
 * header blocks from the server are not decoded (tests that need statuses use node:http2).
 */

export const FRAME = { DATA: 0, HEADERS: 1, PRIORITY: 2, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const
export const FLAG = { END_STREAM: 1, ACK: 1, END_HEADERS: 4 } as const
export const ERROR = { NO_ERROR: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2, FLOW_CONTROL_ERROR: 3, REFUSED_STREAM: 7, CANCEL: 8, ENHANCE_YOUR_CALM: 11 } as const
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')

export interface Frame { type: number, flags: number, stream: number, payload: Buffer }

export function frame (type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9)
  head.writeUIntBE(payload.length, 0, 3)
  head[3] = type
  head[4] = flags
  head.writeUInt32BE(stream & 0x7fffffff, 5)
  return Buffer.concat([head, payload])
}

/** An HPACK integer with an n-bit prefix (RFC 7541 §5.1). */
function hpackInt (value: number, prefixBits: number, first = 0): number[] {
  const max = (1 << prefixBits) - 1
  if (value < max) return [first | value]
  const out = [first | max]
  let rest = value - max
  while (rest >= 128) { out.push((rest % 128) + 128); rest = Math.floor(rest / 128) }
  out.push(rest)
  return out
}

/** A header block of literal fields without indexing, no Huffman: exactly the bytes given, whatever they are. */
export function headerBlock (fields: Array<[string, string]>): Buffer {
  const parts: number[] = []
  for (const [name, value] of fields) {
    const n = Buffer.from(name, 'latin1')
    const v = Buffer.from(value, 'latin1')
    parts.push(0x00, ...hpackInt(n.length, 7), ...n, ...hpackInt(v.length, 7), ...v)
  }
  return Buffer.from(parts)
}

export function settings (pairs: Array<[number, number]> = []): Buffer {
  const payload = Buffer.alloc(6 * pairs.length)
  pairs.forEach(([id, value], i) => { payload.writeUInt16BE(id, i * 6); payload.writeUInt32BE(value, i * 6 + 2) })
  return frame(FRAME.SETTINGS, 0, 0, payload)
}

export function headers (stream: number, fields: Array<[string, string]>, opts: { endStream?: boolean, endHeaders?: boolean } = {}): Buffer {
  return frame(FRAME.HEADERS, (opts.endStream === true ? FLAG.END_STREAM : 0) | (opts.endHeaders === false ? 0 : FLAG.END_HEADERS), stream, headerBlock(fields))
}

export function data (stream: number, body: Buffer | string, endStream = true): Buffer {
  return frame(FRAME.DATA, endStream ? FLAG.END_STREAM : 0, stream, Buffer.from(body))
}

export function rstStream (stream: number, code: number = ERROR.CANCEL): Buffer {
  const p = Buffer.alloc(4)
  p.writeUInt32BE(code)
  return frame(FRAME.RST_STREAM, 0, stream, p)
}

export function ping (opaque = 'portculs', ack = false): Buffer {
  return frame(FRAME.PING, ack ? FLAG.ACK : 0, 0, Buffer.from(opaque.padEnd(8).slice(0, 8), 'latin1'))
}

/** A request's pseudo-headers and Host-less fields for `GET path` (or another method) at localhost. */
export function requestFields (method: string, path: string, extra: Array<[string, string]> = []): Array<[string, string]> {
  return [[':method', method], [':scheme', 'https'], [':authority', 'localhost'], [':path', path], ...extra]
}

export interface RawH2 {
  socket: TLSSocket
  frames: Frame[]
  send: (...bufs: Buffer[]) => void
  /** Resolves with the first frame (received so far or later) that matches, or undefined after timeoutMs or on close. */
  waitFor: (match: (f: Frame) => boolean, timeoutMs?: number) => Promise<Frame | undefined>
  closed: Promise<void>
  close: () => void
}

/**
 * Opens TLS with ALPN h2 and sends the client preface and an empty SETTINGS; the server's SETTINGS are
 * acknowledged. `ca`: the CA, or a secure context made of it once (a flooder reconnecting hundreds of
 * times should not spend the test's CPU building one per connection). `localAddress`: another loopback
 * address (127.0.0.2, ...) for a client that must not share 127.0.0.1 with the others (an abuser whose
 * address the gateway refuses for a while).
 */
export async function openH2 (port: number, ca: Buffer | SecureContext, host = '127.0.0.1', localAddress?: string): Promise<RawH2> {
  const trust = Buffer.isBuffer(ca) ? { ca } : { secureContext: ca }
  const socket = connect({ port, host, ...trust, servername: 'localhost', ALPNProtocols: ['h2'], ...(localAddress !== undefined ? { localAddress } : {}) })
  await new Promise<void>((resolve, reject) => { socket.once('secureConnect', resolve); socket.once('error', reject) })
  if (socket.alpnProtocol !== 'h2') throw new Error(`ALPN chose ${String(socket.alpnProtocol)}, not h2`)
  const frames: Frame[] = []
  let waiters: Array<() => void> = []
  let buffered = Buffer.alloc(0)
  let open = true
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk])
    while (buffered.length >= 9) {
      const length = buffered.readUIntBE(0, 3)
      if (buffered.length < 9 + length) break
      const f: Frame = { type: buffered[3]!, flags: buffered[4]!, stream: buffered.readUInt32BE(5) & 0x7fffffff, payload: buffered.subarray(9, 9 + length) }
      buffered = buffered.subarray(9 + length)
      frames.push(f)
      if (f.type === FRAME.SETTINGS && (f.flags & FLAG.ACK) === 0 && socket.writable) socket.write(frame(FRAME.SETTINGS, FLAG.ACK, 0))
    }
    for (const w of waiters) w()
  })
  socket.on('error', () => {})
  const closed = new Promise<void>(resolve => socket.once('close', () => { open = false; for (const w of waiters) w(); resolve() }))
  socket.write(Buffer.concat([PREFACE, settings()]))
  return {
    socket,
    frames,
    closed,
    send: (...bufs) => { if (socket.writable) socket.write(Buffer.concat(bufs)) },
    close: () => socket.destroy(),
    waitFor: async (match, timeoutMs = 5000) => new Promise(resolve => {
      const check = (): boolean => {
        const found = frames.find(match)
        if (found !== undefined || !open) { clearTimeout(timer); waiters = waiters.filter(w => w !== onData); resolve(found); return true }
        return false
      }
      const onData = (): void => { check() }
      const timer = setTimeout(() => { waiters = waiters.filter(w => w !== onData); resolve(frames.find(match)) }, timeoutMs)
      if (!check()) waiters.push(onData)
    })
  }
}

/** The error code of a RST_STREAM or GOAWAY frame. */
export function errorCode (f: Frame): number {
  return f.type === FRAME.GOAWAY ? f.payload.readUInt32BE(4) : f.payload.readUInt32BE(0)
}
