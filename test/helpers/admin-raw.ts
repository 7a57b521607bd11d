import { connect as tcpConnect, type Socket } from 'node:net'
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls'
import { parseResponses, type RawResponse } from './raw-http.js'

/*
 * Exact bytes to the admin listener (plain TCP, or TLS with the given options), read until the
 * listener closes the connection or the time runs out: a Host header, a header count or a dribble no
 * client library would send as written.
 */

export interface AdminExchange {
  responses: RawResponse[]
  /** True when the listener closed the connection within the time given. */
  closed: boolean
}

export async function adminExchange (port: number, bytes: string, opts: { timeoutMs?: number, tls?: ConnectionOptions } = {}): Promise<AdminExchange> {
  const socket: Socket = opts.tls !== undefined
    ? tlsConnect({ host: '127.0.0.1', port, ...opts.tls })
    : tcpConnect({ host: '127.0.0.1', port })
  let data: Buffer = Buffer.alloc(0)
  socket.on('data', (d: Buffer) => { data = Buffer.concat([data, d]) })
  socket.on('error', () => {})
  socket.once(opts.tls !== undefined ? 'secureConnect' : 'connect', () => socket.write(bytes, 'latin1'))
  const closed = await new Promise<boolean>(resolve => {
    const timer = setTimeout(() => resolve(false), opts.timeoutMs ?? 10_000)
    socket.once('close', () => { clearTimeout(timer); resolve(true) })
  })
  socket.destroy()
  return { responses: parseResponses(data, closed), closed }
}

/** `GET <path> HTTP/1.1` with the given Host (none when null) and further header lines, closing after. */
export function adminGet (path: string, host: string | null, extra: string[] = []): string {
  return [`GET ${path} HTTP/1.1`, ...(host !== null ? [`Host: ${host}`] : []), ...extra, 'Connection: close', '', ''].join('\r\n')
}
