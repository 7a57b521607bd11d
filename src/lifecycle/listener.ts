import { createServer as createHttpServer, METHODS, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer, type Server as HttpsServer, type ServerOptions as HttpsOptions } from 'node:https'
import { constants as h2, createSecureServer, type Http2SecureServer, type Http2Session, type SecureServerOptions } from 'node:http2'
import type { Socket } from 'node:net'
import type { FastifyServerOptions } from 'fastify'
import { closeStream, isHttp2Request, limitClientResets, resetBudgetOf, takeNodeListener, watchFloods } from './http2.js'
import { createPenaltyBox, HTTP2_CONNECTION_REFUSED, HTTP2_CUT_OFF, HTTP2_GUARDED, type Http2CutOff, type Http2Guarded, type PenaltyBox } from './http2-abuse.js'
import { guardHttp2Sessions } from './h2-guarded-socket.js'
import type { GuardReason } from './h2-frame-guard.js'
import { normalizeAddress } from '../pipeline/guard/client-address.js'
import { serveExpectations } from '../pipeline/guard/expect.js'
import { OpenResponses } from './open-responses.js'

/*
 * A listening socket that outlives the gateway built on it. Each config generation is a Fastify
 * instance created with `serverFactory`: it gets a stub server that never listens, and this listener
 * hands it requests and socket events. Swapping generations is one assignment, so a request goes
 * wholly to the old state or wholly to the new one, and the port is never closed in between.
 *
 * Written by hand: Fastify routes cannot change after start, and no library swaps whole Fastify
 * instances behind one socket.
 */

type Handler = (req: IncomingMessage, res: ServerResponse) => void
type AnyServer = Server | HttpsServer | Http2SecureServer

/** Socket events the gateway listens to on its server (edge guards); forwarded to the active stub. */
const FORWARDED = ['connection', 'secureConnection', 'clientError', 'connect'] as const

/**
 * Emitted on a generation's server, with (request, response), for an HTTP/2 request whose method no
 * router knows: HTTP/2 carries any token as a method (`get`, `FOO`; Node's HTTP/1.1 parser refuses
 * them first), and Fastify would end it in its last-resort 404, which logs itself as a Fastify bug with
 * the whole route tree, on every such request. The generation answers it as it answers CONNECT.
 */
export const UNROUTABLE_METHOD = 'portcullis:unroutable-method'
// The methods Node knows, which Fastify's router registers; the guard refuses all but the gateway's.
const ROUTABLE = new Set(METHODS)

/** Server settings a generation may change; copied from its stub when it becomes active. */
const SETTINGS = ['headersTimeout', 'requestTimeout', 'keepAliveTimeout', 'maxHeadersCount', 'maxConnections', 'maxRequestsPerSocket', 'timeout'] as const

export interface Generation {
  handler: Handler
  stub: AnyServer
  /** Listeners Node itself put on the stub (its HTTP parser): never called for a forwarded event. */
  internal: Map<string, Function[]>
  /** What the stub was built from; the first generation's build the real server. */
  serverOptions: { https?: HttpsOptions, http: object }
  inFlight: number
  /** Resolves once no request of this generation is in flight. */
  idle: () => Promise<void>
  wake: () => void
}

export interface Listener {
  /** A Fastify serverFactory: each call prepares one generation. */
  factory: NonNullable<FastifyServerOptions['serverFactory']>
  /** The generation the last factory call prepared (the one being built). */
  readonly pending: Generation | undefined
  readonly server: AnyServer | undefined
  /** Makes a prepared generation the one that serves; the first activation creates the server. */
  activate: (gen: Generation) => Generation | undefined
  /** From now on, every response not yet started asks the client to close its connection. */
  drain: () => void
  /** Closes idle HTTP/1.1 connections, and sends GOAWAY on every HTTP/2 one (its open streams finish). */
  closeIdle: () => void
  /** Closes every connection now. */
  closeAll: () => void
}

// long: the server, the generations and the open responses are one state that dispatch, the factory and
// activation (HTTP/1.1 and HTTP/2 alike) share.
export function createListener (): Listener {
  let server: AnyServer | undefined
  let current: Generation | undefined
  let pending: Generation | undefined
  let draining = false
  const open = new OpenResponses()
  // HTTP/2 sessions and the sockets under them: Node's HTTP/1.1 connection tracking knows neither.
  const sessions = new Set<Http2Session>()
  const sockets = new Set<Socket>()
  // HTTP/2 connections cut off for abuse (http2-abuse.ts): the generation serving counts, logs and decides
  // whether the address is refused for a while; the refusals outlive reloads, like the socket.
  const penalty = createPenaltyBox()
  const abuse: Abuse = {
    penalty,
    cutOff: (reason, remoteAddress, resets) => {
      const cut: Http2CutOff = { reason, address: normalizeAddress(remoteAddress ?? ''), resets, refuseAddress: ms => { penalty.refuse(remoteAddress, ms) } }
      current?.stub.emit(HTTP2_CUT_OFF, cut)
    },
    refused: () => { current?.stub.emit(HTTP2_CONNECTION_REFUSED) },
    guarded: (reason, remoteAddress) => {
      if (reason === 'flood') { abuse.cutOff('flood', remoteAddress, 0); return }
      const guarded: Http2Guarded = { reason, address: normalizeAddress(remoteAddress ?? '') }
      current?.stub.emit(HTTP2_GUARDED, guarded)
    }
  }

  const serve = (req: IncomingMessage, res: ServerResponse): void => {
    const gen = current!
    // Node then sends `Connection: close` and closes the socket after this response.
    if (draining) res.shouldKeepAlive = false
    gen.inFlight++
    open.add(res, () => { if (--gen.inFlight === 0) gen.wake() })
    if (isHttp2Request(req)) limitStream(req, (gen.stub as Server).requestTimeout)
    gen.handler(req, res)
  }

  const dispatch = (req: IncomingMessage, res: ServerResponse): void => {
    if (!isHttp2Request(req)) { serve(req, res); return }
    // Rapid reset (issue #21): Node hands each HTTP/2 request on while nghttp2 is still reading the
    // frames that came with it, and the request path ran as far as it could (token, policy, credentials,
    // the function's queue) before the client's RST_STREAM in the same read was even seen. Started
    // after the read instead, a stream the client already reset is dropped: nothing can be answered on
    // it. The reset still counts against the connection (limitClientResets). Closed, not only destroyed:
    // a reset with NO_ERROR leaves the stream's read side open, not destroyed until read to its end.
    setImmediate(() => {
      if (req.stream.destroyed || req.stream.closed) return
      if (!ROUTABLE.has(req.method) && current!.stub.emit(UNROUTABLE_METHOD, req, res)) return
      serve(req, res)
    })
  }

  const forward = (event: string) => function (this: AnyServer, ...args: unknown[]): void {
    const gen = current!
    const internal = gen.internal.get(event) ?? []
    for (const l of gen.stub.listeners(event)) if (!internal.includes(l)) (l as Function).apply(gen.stub, args)
  }

  const listener: Listener = {
    drain () {
      draining = true
      open.forEach(res => { if (!res.headersSent) res.shouldKeepAlive = false })
      // HTTP/2: GOAWAY now; streams already open finish, new ones go to another connection.
      for (const s of sessions) s.close()
    },
    closeIdle () {
      (server as Server | undefined)?.closeIdleConnections()
      for (const s of sessions) s.close()
    },
    closeAll () {
      (server as Server | undefined)?.closeAllConnections?.()
      for (const s of sessions) s.destroy()
      for (const socket of sockets) socket.destroy()
    },
    get pending () { return pending },
    get server () { return server },
    factory: (handler, options) => {
      const https = (options as { https?: HttpsOptions }).https
      const http = (options as { http?: object }).http ?? {}
      const stub: AnyServer = https !== undefined ? createHttpsServer(https) : createHttpServer(http)
      const timeouts = options as { keepAliveTimeout?: number, requestTimeout?: number }
      stub.keepAliveTimeout = timeouts.keepAliveTimeout ?? 5000
      stub.requestTimeout = timeouts.requestTimeout ?? 0
      const internal = new Map(FORWARDED.map(e => [e, stub.listeners(e) as Function[]]))
      let waiters: Array<() => void> = []
      const gen: Generation = {
        handler: handler as Handler,
        stub,
        internal,
        serverOptions: { ...(https !== undefined ? { https } : {}), http },
        inFlight: 0,
        wake: () => { for (const w of waiters) w(); waiters = [] },
        idle: async () => gen.inFlight === 0 ? undefined : new Promise<void>(resolve => { waiters.push(resolve) })
      }
      pending = gen
      return stub as Server
    },
    activate (gen) {
      const previous = current
      if (server === undefined) {
        const { https, http } = gen.serverOptions
        // HTTP/2 options (lifecycle/http2.ts) come with the TLS ones; an https stub ignores them.
        server = https !== undefined && (https as SecureServerOptions).allowHTTP1 === true
          ? createHttp2Server(https as SecureServerOptions, http, dispatch, { sessions, sockets, draining: () => draining, abuse })
          : https !== undefined ? createHttpsServer(https, dispatch) : createHttpServer(http, dispatch)
        for (const e of FORWARDED) server.on(e, forward(e))
        // Requests with an Expect are served like any other, so that the gateway answers them (issue #20).
        serveExpectations(server as Server, dispatch)
      } else if (gen.serverOptions.https !== undefined) {
        // New certificate and key for new handshakes; established connections keep theirs.
        (server as HttpsServer).setSecureContext(gen.serverOptions.https)
      }
      for (const key of SETTINGS) (server as unknown as Record<string, unknown>)[key] = (gen.stub as unknown as Record<string, unknown>)[key]
      current = gen
      return previous
    }
  }
  return listener
}

interface Abuse {
  penalty: PenaltyBox
  /** A connection from `remoteAddress` was cut off (after `resets` cancelled streams). */
  cutOff: (reason: Http2CutOff['reason'], remoteAddress: string | undefined, resets: number) => void
  refused: () => void
  /** The frame guard refused a stream or ended a connection from `remoteAddress` (h2-frame-guard.ts). */
  guarded: (reason: GuardReason, remoteAddress: string | undefined) => void
}

interface Tracked {
  sessions: Set<Http2Session>
  sockets: Set<Socket>
  draining: () => boolean
  abuse: Abuse
}

/**
 * The TLS listener with HTTP/2: HTTP/1.1 connections (ALPN http/1.1, or none) go through Node's HTTP/1.1
 * server code with the same settings as an https server; h2 sessions are tracked for drain and close.
 */
function createHttp2Server (options: SecureServerOptions, http: object, dispatch: Handler, { sessions, sockets, draining, abuse }: Tracked): Http2SecureServer {
  const server = createSecureServer(options, dispatch as never)
  guardHttp2Sessions(server, abuse.guarded)
  const budget = resetBudgetOf(options)
  // An address just cut off for abuse: closed before Node's TLS code sees the connection (it would make
  // a TLS socket and its OpenSSL state first: a flooder retrying at once costs that per attempt).
  const tlsListener = takeNodeListener<[Socket]>(server, 'connection', 'tlsConnectionListener', 'refused addresses cannot be closed before it')
  server.prependListener('connection', (socket: Socket) => {
    if (!abuse.penalty.refuses(socket.remoteAddress)) { tlsListener(socket); return }
    socket.destroy()
    abuse.refused()
  })
  // Node's HTTP/1.1 code reads these from the server (head size, Host rule, how often the head and
  // request timers are checked); an Http2SecureServer does not take them as options.
  const { maxHeaderSize, requireHostHeader, connectionsCheckingInterval } = options as Record<string, unknown>
  Object.assign(server, http, { maxHeaderSize, requireHostHeader, connectionsCheckingInterval })
  server.on('secureConnection', (socket: Socket) => { sockets.add(socket); socket.once('close', () => sockets.delete(socket)) })
  server.on('session', (session: Http2Session) => {
    sessions.add(session)
    session.once('close', () => sessions.delete(session))
    if (draining()) session.close()
    // Idle like an HTTP/1.1 keep-alive connection: GOAWAY (streams still open finish first).
    session.setTimeout((server as unknown as Server).keepAliveTimeout, () => session.close())
    const remoteAddress = session.socket?.remoteAddress
    limitClientResets(session, budget, resets => { abuse.cutOff('client_resets', remoteAddress, resets) })
    watchFloods(session, () => { abuse.cutOff('flood', remoteAddress, 0) })
  })
  return server
}

/**
 * requestTimeout for an HTTP/2 stream (Node applies it to HTTP/1.1 only): a request still arriving
 * after it is reset, so a slow body cannot hold a stream (and the function's connection) forever.
 */
function limitStream (req: import('node:http2').Http2ServerRequest, timeoutMs: number): void {
  if (timeoutMs <= 0 || req.stream.endAfterHeaders) return
  const timer = setTimeout(() => { if (!req.complete) closeStream(req.stream, h2.NGHTTP2_CANCEL) }, timeoutMs)
  timer.unref()
  req.stream.once('close', () => clearTimeout(timer))
}
