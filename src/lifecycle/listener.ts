import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createServer as createHttpsServer, type Server as HttpsServer, type ServerOptions as HttpsOptions } from 'node:https'
import type { FastifyServerOptions } from 'fastify'
import { serveExpectations } from '../pipeline/guard/expect.js'

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
type AnyServer = Server | HttpsServer

/** Socket events the gateway listens to on its server (edge guards); forwarded to the active stub. */
const FORWARDED = ['connection', 'secureConnection', 'clientError', 'connect'] as const

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
}

export function createListener (): Listener {
  let server: AnyServer | undefined
  let current: Generation | undefined
  let pending: Generation | undefined
  let draining = false
  const open = new Set<ServerResponse>()

  const dispatch = (req: IncomingMessage, res: ServerResponse): void => {
    const gen = current!
    // Node then sends `Connection: close` and closes the socket after this response.
    if (draining) res.shouldKeepAlive = false
    gen.inFlight++
    open.add(res)
    res.once('close', () => { open.delete(res); if (--gen.inFlight === 0) gen.wake() })
    gen.handler(req, res)
  }

  const forward = (event: string) => function (this: AnyServer, ...args: unknown[]): void {
    const gen = current!
    const internal = gen.internal.get(event) ?? []
    for (const l of gen.stub.listeners(event)) if (!internal.includes(l)) (l as Function).apply(gen.stub, args)
  }

  const listener: Listener = {
    drain () {
      draining = true
      for (const res of open) if (!res.headersSent) res.shouldKeepAlive = false
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
        server = https !== undefined ? createHttpsServer(https, dispatch) : createHttpServer(http, dispatch)
        for (const e of FORWARDED) server.on(e, forward(e))
        // Requests with an Expect are served like any other, so that the gateway answers them (issue #20).
        serveExpectations(server, dispatch)
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
