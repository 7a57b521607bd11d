import { EventEmitter } from 'node:events'
import { connect, type TLSSocket } from 'node:tls'
import type { Test } from 'tap'

/*
 * HTTP/1.1 over a raw TLS socket: the test writes the exact bytes (no client library fixes the framing
 * or the path), and reads back whatever the gateway answers, parsed just enough to count responses.
 */

export interface RawResponse {
  status: number
  /** Lower-case names; repeated fields joined with ", ". */
  headers: Record<string, string>
  body: string
  /** False when the connection closed before the declared body was complete. */
  complete: boolean
}

export interface RawConnection {
  socket: TLSSocket
  /** Everything received so far. */
  readonly data: Buffer
  readonly isClosed: boolean
  write: (bytes: string | Buffer) => void
  /** Resolves when `n` complete responses have arrived, the socket closed, or the time ran out. */
  responses: (n?: number, timeoutMs?: number) => Promise<RawResponse[]>
  /** Resolves true once the server closed the connection, false if it is still open after timeoutMs. */
  closed: (timeoutMs?: number) => Promise<boolean>
}

/** Splits a byte stream into responses; the last one may be incomplete. */
export function parseResponses (buf: Buffer, closed: boolean): RawResponse[] {
  const out: RawResponse[] = []
  let at = 0
  while (at < buf.length) {
    const end = buf.indexOf('\r\n\r\n', at)
    if (end === -1) break
    const lines = buf.subarray(at, end).toString('latin1').split('\r\n')
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? NaN)
    const headers: Record<string, string> = {}
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':')
      const name = line.slice(0, i).toLowerCase()
      const value = line.slice(i + 1).trim()
      headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`
    }
    let bodyStart = end + 4
    let body: Buffer = Buffer.alloc(0)
    let complete = true
    if (/chunked/i.test(headers['transfer-encoding'] ?? '')) {
      const parts: Buffer[] = []
      complete = false
      for (;;) {
        const eol = buf.indexOf('\r\n', bodyStart)
        if (eol === -1) break
        const size = parseInt(buf.subarray(bodyStart, eol).toString('latin1'), 16)
        if (Number.isNaN(size) || buf.length < eol + 2 + size + 2) break
        parts.push(buf.subarray(eol + 2, eol + 2 + size))
        bodyStart = eol + 2 + size + 2
        if (size === 0) { complete = true; break }
      }
      body = Buffer.concat(parts)
    } else if (headers['content-length'] !== undefined) {
      const length = Number(headers['content-length'])
      body = buf.subarray(bodyStart, bodyStart + length)
      complete = body.length === length
      bodyStart += body.length
    } else if (status !== 204 && status !== 304 && !(status >= 100 && status < 200)) {
      body = buf.subarray(bodyStart) // delimited by close
      complete = closed
      bodyStart = buf.length
    }
    out.push({ status, headers, body: body.toString('utf8'), complete })
    if (!complete) break
    at = bodyStart
  }
  return out
}

/** Opens a TLS connection to the gateway that trusts exactly `ca`; destroyed at teardown. */
export async function openRaw (t: Test, port: number, ca: Buffer): Promise<RawConnection> {
  const socket = connect({ host: '127.0.0.1', port, ca, servername: 'localhost' })
  const changed = new EventEmitter()
  let data: Buffer = Buffer.alloc(0)
  let isClosed = false
  socket.on('data', (d: Buffer) => { data = Buffer.concat([data, d]); changed.emit('change') })
  socket.on('close', () => { isClosed = true; changed.emit('change') })
  socket.on('error', () => {}) // a reset is an answer too: the test looks at what arrived and at isClosed
  t.teardown(() => { socket.destroy() })
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve)
    socket.once('close', () => reject(new Error('gateway closed the connection during the TLS handshake')))
  })

  const waitFor = async (done: () => boolean, timeoutMs: number): Promise<boolean> => {
    if (done()) return true
    return new Promise(resolve => {
      const timer = setTimeout(() => { changed.off('change', check); resolve(false) }, timeoutMs)
      function check (): void {
        if (!done()) return
        clearTimeout(timer)
        changed.off('change', check)
        resolve(true)
      }
      changed.on('change', check)
    })
  }

  return {
    socket,
    get data () { return data },
    get isClosed () { return isClosed },
    write: bytes => { socket.write(bytes) },
    async responses (n = 1, timeoutMs = 5000) {
      const complete = (): RawResponse[] => parseResponses(data, isClosed).filter(r => r.complete)
      await waitFor(() => isClosed || complete().length >= n, timeoutMs)
      return parseResponses(data, isClosed)
    },
    async closed (timeoutMs = 5000) { return waitFor(() => isClosed, timeoutMs) }
  }
}

export interface Exchange {
  responses: RawResponse[]
  /** The raw answer, for checks that no text leaked anywhere in it. */
  text: string
  /** Whether the server had closed the connection when the exchange ended. */
  closed: boolean
}

export interface ExchangeOptions {
  /**
   * When to stop reading: after this many complete responses (default 1), or 'close' to wait for the
   * server to close the connection. Either way the wait ends at timeoutMs (default 5000).
   */
  until?: number | 'close'
  timeoutMs?: number
}

/**
 * Writes `bytes` on a fresh connection and reads the answer. The client does not half-close: Node's
 * HTTP server aborts requests still in flight when the client sends FIN.
 */
export async function exchange (t: Test, port: number, ca: Buffer, bytes: string | Buffer, opts: ExchangeOptions = {}): Promise<Exchange> {
  const conn = await openRaw(t, port, ca)
  conn.write(typeof bytes === 'string' ? Buffer.from(bytes, 'latin1') : bytes)
  const until = opts.until ?? 1
  const timeoutMs = opts.timeoutMs ?? 5000
  if (until === 'close') await conn.closed(timeoutMs)
  else await conn.responses(until, timeoutMs)
  const closed = conn.isClosed
  conn.socket.destroy()
  return { responses: parseResponses(conn.data, closed), text: conn.data.toString('latin1'), closed }
}
