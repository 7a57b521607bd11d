import type { Http2SecureServer, Http2Session, ServerHttp2Stream } from 'node:http2'
import { Duplex } from 'node:stream'
import type { TLSSocket } from 'node:tls'
import { createFrameGuard, type FrameGuard, type GuardReason } from './h2-frame-guard.js'
import { closeStream, SESSION_DESTROYING, takeNodeListener } from './http2.js'

/*
 * Puts the frame guard (h2-frame-guard.ts) between each h2 TLS socket and Node's HTTP/2 session.
 * Node's Http2SecureServer makes its session in its own 'secureConnection' listener; here that
 * listener is given a Duplex instead of the TLS socket for ALPN h2 (HTTP/1.1 sockets go to it as
 * they are). A session on a stream without a native handle runs over Node's JSStreamSocket, which
 * reads and writes the Duplex; the Duplex passes the client's bytes through the guard and the
 * session's bytes to the TLS socket (their frame headers read on the way).
 *
 * Everything the gateway and Fastify read off a request's socket (the peer address and port, the
 * client certificate and TLS state) comes from the session's socket, now that JSStreamSocket: the TLS
 * socket's answers are set on it when the session is made, before anything reads them.
 */

/** Told each time the guard refused a stream or ended a connection. */
export type OnGuarded = (why: GuardReason, remoteAddress: string | undefined) => void

// What a request's socket is asked for, by the gateway (client-cert.ts), Fastify or Node's compat layer.
const TLS_VALUES = ['encrypted', 'alpnProtocol', 'servername', 'authorized', 'authorizationError'] as const
const TLS_METHODS = ['getPeerCertificate', 'getPeerX509Certificate', 'getCertificate', 'getX509Certificate', 'getCipher', 'getProtocol',
  'getSession', 'getTLSTicket', 'isSessionReused', 'getFinished', 'getPeerFinished', 'getEphemeralKeyInfo', 'getSharedSigalgs', 'exportKeyingMaterial'] as const
// Streams refused before Node handed them on, kept until it does; bounded (a stream nghttp2 refuses
// itself never comes: later ones purge it).
const MAX_PENDING = 128

interface Link {
  duplex: Duplex
  attach: (session: Http2Session) => void
}

/** From now on, every h2 session of `server` reads its client through a frame guard. */
export function guardHttp2Sessions (server: Http2SecureServer, onGuarded: OnGuarded): void {
  // Node's own (lib/internal/http2/core.js): the guard must not be skipped by a Node that changed it.
  const nodeListener = takeNodeListener<[unknown]>(server, 'secureConnection', 'connectionListener', 'the frame guard cannot be installed')
  let opening: Link | undefined
  server.prependListener('secureConnection', (socket: TLSSocket) => {
    if (socket.alpnProtocol !== 'h2') { nodeListener(socket); return }
    opening = createLink(socket, onGuarded)
    try { nodeListener(opening.duplex) } finally { opening = undefined }
  })
  // Node makes the session and emits 'session' within the listener above, before anyone reads its socket.
  server.prependListener('session', (session: Http2Session) => {
    if (opening !== undefined) opening.attach(session)
    else session.destroy() // never: every h2 session comes through the listener above
  })
}

// long: one connection's wiring, TLS socket to Duplex and back, and the stream resets the guard asks
// for; they share the session and the streams it handed on.
function createLink (tls: TLSSocket, onGuarded: OnGuarded): Link {
  let session: Http2Session | undefined
  const live = new Map<number, ServerHttp2Stream>()
  const pending = new Map<number, number>()
  const remoteAddress = tls.remoteAddress
  // A session write the TLS socket has taken but not yet drained: released when the session ends
  // the socket (an abuser that reads nothing must not keep it open; the bytes are in the TLS socket).
  let draining: (() => void) | undefined
  const release = (): void => { const done = draining; draining = undefined; done?.() }
  const duplex: Duplex = new Duplex({
    read () { tls.resume() },
    write (chunk: Buffer, _encoding, done) {
      guard.toClient(chunk)
      if (tls.write(chunk)) { done(); return }
      draining = done
      tls.once('drain', release)
    },
    // The session writes its frames in one batch (JSStreamSocket corks this stream around them): one
    // TLS write for the batch, as nghttp2 makes on a native socket, not a record and a send per frame.
    writev (chunks: Array<{ chunk: Buffer }>, done) {
      tls.cork()
      let room = true
      for (const { chunk } of chunks) {
        guard.toClient(chunk)
        room = tls.write(chunk)
      }
      tls.uncork()
      if (room) { done(); return }
      draining = done
      tls.once('drain', release)
    },
    // What the session wrote is in the TLS socket, which sends it before its FIN; Node then destroys
    // the socket on a session error (and with it this stream), or waits for the client's close.
    final (done) { tls.end(); done() },
    destroy (err, done) {
      tls.destroy(err ?? undefined)
      done(err)
    }
  })
  const end = duplex.end.bind(duplex) as (...args: unknown[]) => Duplex
  duplex.end = ((...args: unknown[]) => { release(); return end(...args) }) as typeof duplex.end
  const guard: FrameGuard = createFrameGuard({
    pass (bytes) { if (!duplex.push(bytes)) tls.pause() },
    resetStream (id, code, why) {
      onGuarded(why, remoteAddress)
      const stream = live.get(id)
      if (stream !== undefined) { closeStream(stream, code); return }
      if (pending.size >= MAX_PENDING) pending.delete(pending.keys().next().value!)
      pending.set(id, code)
    },
    endConnection (code, why) {
      onGuarded(why, remoteAddress)
      tls.pause()
      // Written here: Node sends its GOAWAY only if no write of the session is in progress (and
      // JSStreamSocket completes each write a turn of the event loop later). A second one is harmless.
      const goaway = guard.goaway(code)
      if (goaway !== undefined) tls.write(goaway)
      session?.destroy(new Error(`HTTP/2 connection ended by the frame guard: ${why}`), code)
    }
  })
  // Once the session is destroyed, what the client still sends is read by no one.
  let stopped = false
  tls.on('data', (chunk: Buffer) => { if (!stopped) guard.fromClient(chunk) })
  tls.on('end', () => duplex.push(null))
  tls.on('error', err => duplex.destroy(err))
  tls.on('close', () => duplex.destroy())
  // What Node does to the socket it is given, done to the real one.
  tls.setNoDelay(true)
  tls.disableRenegotiation()
  return {
    duplex,
    attach (s) {
      session = s
      // Node waits for the session's last write before it closes the socket: when the session is
      // destroyed (a flood nghttp2 ended, an abuser cut off), that write is not waited for (it is in
      // the TLS socket), or a client that reads nothing would keep the connection and its error unseen;
      // and the error is told now (SESSION_DESTROYING), not once the socket has closed.
      const destroy = s.destroy.bind(s)
      s.destroy = ((...args: Parameters<Http2Session['destroy']>) => {
        stopped = true
        tls.pause()
        if (!s.destroyed) s.emit(SESSION_DESTROYING, args[0] instanceof Error ? args[0] : undefined)
        destroy(...args)
        release()
      }) as Http2Session['destroy']
      mirror(s.socket as unknown as Record<string, unknown>, tls)
      s.on('stream', (stream: ServerHttp2Stream) => {
        const id = stream.id!
        if (pending.size > 0) {
          const code = pending.get(id)
          for (const old of pending.keys()) if (old <= id) pending.delete(old)
          if (code !== undefined) { closeStream(stream, code); return }
        }
        live.set(id, stream)
        stream.once('close', () => live.delete(id))
      })
    }
  }
}

/** Gives the session's socket (a JSStreamSocket, through Node's proxy) the TLS socket's answers. */
function mirror (socket: Record<string, unknown>, tls: TLSSocket): void {
  // net.Socket reads remoteAddress/remotePort/remoteFamily and localAddress/localPort from these when
  // its handle cannot tell (a JSStreamSocket's cannot).
  socket._peername = { address: tls.remoteAddress, port: tls.remotePort, family: tls.remoteFamily }
  socket._sockname = tls.address()
  for (const key of TLS_VALUES) socket[key] = tls[key]
  // Called on the TLS socket each time (not bound once), as if the caller held it.
  for (const key of TLS_METHODS) socket[key] = (...args: unknown[]) => (tls[key] as (...a: unknown[]) => unknown).apply(tls, args)
}
