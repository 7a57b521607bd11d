import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net'
import { createServer as createTlsServer } from 'node:tls'
import type { Test } from 'tap'
import type { PemPair } from '../../src/tls/pki.js'

/*
 * Misbehaving upstreams on loopback for the transport tests: a TLS server whose certificate is set
 * later (so it can come from the demo CA), a plain TCP server on what the gateway thinks is a TLS
 * port, and a TCP proxy in front of a real upstream that can hold, reset or pass connections.
 */

async function listen (t: Test, server: { listen: (port: number, host: string, cb: () => void) => unknown, address: () => unknown, close: () => unknown }, sockets: Set<Socket>): Promise<number> {
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { for (const s of sockets) s.destroy(); server.close() })
  return (server.address() as AddressInfo).port
}

function track (sockets: Set<Socket>, socket: Socket): void {
  sockets.add(socket)
  socket.on('close', () => sockets.delete(socket))
  socket.on('error', () => {})
}

export interface TlsUpstream {
  url: string
  /** Handshakes that completed, and application bytes received over them. */
  secured: number
  bytes: number
  setCertificate: (pair: PemPair) => void
}

/** A TLS server that answers 200 to whatever arrives once a handshake succeeds (it should not). */
export async function startTlsUpstream (t: Test): Promise<TlsUpstream> {
  const sockets = new Set<Socket>()
  const state: TlsUpstream = { url: '', secured: 0, bytes: 0, setCertificate: pair => server.setSecureContext({ ...pair }) }
  const server = createTlsServer({}, socket => {
    state.secured++
    track(sockets, socket)
    socket.on('data', d => {
      state.bytes += d.length
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\nleaked!')
    })
  })
  server.on('tlsClientError', () => {})
  server.on('connection', (s: Socket) => track(sockets, s))
  state.url = `https://127.0.0.1:${await listen(t, server, sockets)}`
  return state
}

export interface PlainUpstream {
  url: string
  /** The first bytes of each connection, as received. */
  openings: Buffer[]
  received: () => Buffer
}

/** A plain HTTP server where the gateway expects TLS: it answers anything with a plaintext 200. */
export async function startPlainUpstream (t: Test): Promise<PlainUpstream> {
  const sockets = new Set<Socket>()
  const chunks: Buffer[] = []
  const state: PlainUpstream = { url: '', openings: [], received: () => Buffer.concat(chunks) }
  const server = createNetServer(socket => {
    track(sockets, socket)
    let first = true
    socket.on('data', d => {
      chunks.push(d)
      if (first) state.openings.push(Buffer.from(d))
      first = false
      socket.write('HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nplaintext')
    })
  })
  state.url = `https://127.0.0.1:${await listen(t, server, sockets)}`
  return state
}

export type ProxyMode = 'pass' | 'hold' | 'reset' | 'hold-first'

export interface TcpProxy {
  url: string
  /** Where `pass` forwards to; may be set after start (the stub's address is known later). */
  target: URL | null
  mode: ProxyMode
  connections: number
}

/**
 * A TCP proxy to `target`. `hold` accepts and never forwards (the TLS handshake never
 * completes), `reset` closes at once, `hold-first` holds only the first connection, `pass` forwards.
 */
export async function startTcpProxy (t: Test): Promise<TcpProxy> {
  const sockets = new Set<Socket>()
  const state: TcpProxy = { url: '', target: null, mode: 'pass', connections: 0 }
  const server = createNetServer(socket => {
    track(sockets, socket)
    state.connections++
    const mode = state.mode === 'hold-first' ? (state.connections === 1 ? 'hold' : 'pass') : state.mode
    if (mode === 'hold') return
    if (mode === 'reset' || state.target === null) { socket.resetAndDestroy(); return }
    const upstream = netConnect(Number(state.target.port), state.target.hostname)
    track(sockets, upstream)
    socket.pipe(upstream).pipe(socket)
    upstream.on('close', () => socket.destroy())
    socket.on('close', () => upstream.destroy())
  })
  state.url = `https://127.0.0.1:${await listen(t, server, sockets)}`
  return state
}
