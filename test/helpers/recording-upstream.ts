import { readFile } from 'node:fs/promises'
import type { AddressInfo } from 'node:net'
import { createServer, type TLSSocket } from 'node:tls'
import type { Test } from 'tap'
import type { DemoPaths } from '../../src/demo/state.js'
import { loadCa } from '../../src/tls/pki.js'

/*
 * A function stand-in that records every byte the gateway sends it. It is a bare node:tls server, not
 * node:http, so nothing is normalised, merged or dropped before the test looks: `received` is exactly
 * what came off the wire. It parses just enough HTTP/1.1 (head, Content-Length, chunked) to know where
 * a request ends, so `requests` counts the requests the function would have seen.
 */

export interface UpstreamRequest {
  /** The request head up to and including the blank line, as received. */
  head: string
  body: Buffer
}

export type Responder = (socket: TLSSocket, request: UpstreamRequest) => void

export interface RecordingUpstream {
  /** https://127.0.0.1:port, for `raw.upstreams[0].url`. */
  url: string
  /** Takes a server certificate from the demo CA and trusts that CA for client certificates. */
  certify: (paths: DemoPaths) => Promise<void>
  /** Every byte received, on every connection, in arrival order. */
  readonly received: Buffer
  /** Each complete request's head, in order. */
  requests: string[]
  /** Complete requests with their bodies. */
  parsed: UpstreamRequest[]
  /** TLS connections accepted (after the client certificate was verified). */
  connections: number
  /** How each complete request is answered; tests replace it to misbehave. */
  respond: Responder
}

export const OK_RESPONSE = 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok'

/** 200 "ok"; a HEAD response carries no body (RFC 9110 §9.3.2), and says length 0 for raw clients. */
export const answerOk: Responder = (socket, request) => {
  socket.write(request.head.startsWith('HEAD ') ? 'HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n' : OK_RESPONSE)
}

/** Parses one request off the front of `buf`; null while incomplete, 'garbage' when it cannot frame it. */
function takeRequest (buf: Buffer): { request: UpstreamRequest, rest: Buffer } | null | 'garbage' {
  const end = buf.indexOf('\r\n\r\n')
  if (end === -1) return null
  const head = buf.subarray(0, end + 4).toString('latin1')
  const fields = head.split('\r\n').slice(1).map(l => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()])
  const te = fields.filter(([n]) => n === 'transfer-encoding').map(([, v]) => v!.toLowerCase()).join(',')
  let at = end + 4
  if (/chunked\s*$/.test(te)) {
    const parts: Buffer[] = []
    for (;;) {
      const eol = buf.indexOf('\r\n', at)
      if (eol === -1) return null
      const size = parseInt(buf.subarray(at, eol).toString('latin1').split(';')[0]!, 16)
      if (Number.isNaN(size)) return 'garbage'
      if (size === 0) {
        const trailersEnd = buf.indexOf('\r\n\r\n', eol)
        if (buf.subarray(eol, eol + 4).toString() === '\r\n\r\n') at = eol + 4
        else if (trailersEnd === -1) return null
        else at = trailersEnd + 4
        return { request: { head, body: Buffer.concat(parts) }, rest: buf.subarray(at) }
      }
      if (buf.length < eol + 2 + size + 2) return null
      parts.push(buf.subarray(eol + 2, eol + 2 + size))
      at = eol + 2 + size + 2
    }
  }
  const cl = fields.find(([n]) => n === 'content-length')
  const length = cl === undefined ? 0 : Number(cl[1])
  if (!Number.isSafeInteger(length) || length < 0) return 'garbage'
  if (buf.length < at + length) return null
  return { request: { head, body: buf.subarray(at, at + length) }, rest: buf.subarray(at + length) }
}

/**
 * Starts the recording function on loopback. It listens at once (the gateway config needs its URL
 * before the demo CA exists) and can complete a handshake after `certify`: a server certificate from
 * the demo CA, and the gateway's client certificate required and verified against that CA, as the
 * real demo function does. The gateway connects upstream only when it forwards a request.
 */
export async function startRecordingUpstream (t: Test): Promise<RecordingUpstream> {
  const chunks: Buffer[] = []
  const sockets = new Set<TLSSocket>()
  const stub: RecordingUpstream = {
    url: '',
    async certify (paths) {
      const ca = await loadCa({ cert: await readFile(paths.caCert, 'utf8'), key: await readFile(`${paths.dir}/ca.key`, 'utf8') })
      const pair = await ca.issue({ commonName: 'recording-upstream', dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'], usage: 'server' })
      server.setSecureContext({ cert: pair.cert, key: pair.key, ca: await readFile(paths.caCert), minVersion: 'TLSv1.2' })
    },
    get received () { return Buffer.concat(chunks) },
    requests: [],
    parsed: [],
    connections: 0,
    respond: answerOk
  }
  const server = createServer({ requestCert: true, rejectUnauthorized: true }, socket => {
    stub.connections++
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {})
    let pending: Buffer = Buffer.alloc(0)
    let lost = false
    socket.on('data', (data: Buffer) => {
      chunks.push(Buffer.from(data))
      if (lost) return
      pending = Buffer.concat([pending, data])
      for (;;) {
        const next = takeRequest(pending)
        if (next === null) return
        if (next === 'garbage') { lost = true; return }
        pending = next.rest
        stub.requests.push(next.request.head)
        stub.parsed.push(next.request)
        stub.respond(socket, next.request)
      }
    })
  })
  server.on('tlsClientError', () => {})
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve))
  stub.url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`
  t.teardown(() => new Promise<void>(resolve => {
    for (const s of sockets) s.destroy()
    server.close(() => resolve())
  }))
  return stub
}

/** The header fields of a recorded head as [lower-case name, value] pairs, duplicates kept. */
export function headerFields (head: string): Array<[string, string]> {
  return head.split('\r\n').slice(1).filter(l => l !== '').map(l => {
    const i = l.indexOf(':')
    return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()]
  })
}

/** The request line of a recorded head: method, target, version. */
export function requestLine (head: string): { method: string, target: string, version: string } {
  const [method = '', target = '', version = ''] = head.slice(0, head.indexOf('\r\n')).split(' ')
  return { method, target, version }
}
