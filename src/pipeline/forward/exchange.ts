import type { EventEmitter } from 'node:events'
import type { ServerResponse } from 'node:http'
import type { Readable } from 'node:stream'
import type { FastifyBaseLogger } from 'fastify'
import type { Dispatcher } from 'undici'
import type { Principal } from '../types.js'

/*
 * One exchange with a function, as the interceptors of the forward chain see it (forwarder.ts builds
 * the chain once per upstream). The forwarder makes one options object per request and every
 * interceptor reads what it needs from it: undici passes dispatch options down the chain as they are,
 * so the caller, the deadline and the logger travel without a closure or a context object per layer.
 */

export interface Exchange extends Dispatcher.DispatchOptions {
  path: string
  method: Dispatcher.HttpMethod
  headers: Record<string, string | string[]>
  /** The client's body (size-limited), what the credentials made of it, or null. */
  body: Readable | Buffer | null
  /** Aborted when the client goes; the deadline also aborts a request still waiting through it. */
  signal: EventEmitter
  /** The route's own bounds; undefined: the upstream's (exact-timeouts.ts then copies nothing). */
  headersTimeout: number | undefined
  bodyTimeout: number | undefined
  routeId: string
  /** The upstream's Host value (what a signature covers). */
  host: string
  principal: Principal
  requestId: string
  clientIp: string
  /** The client's Authorization header (already taken out of `headers`). */
  clientAuthorization: string | undefined
  /** The client's response: a client that is gone gets no retry and no request made on its behalf. */
  client: ServerResponse
  log: FastifyBaseLogger
  /** The whole exchange, from credentials attached to the function's last byte. */
  totalTimeoutMs: number
  /** performance.now() when the exchange started (set by the deadline, which starts it). */
  startedAt: number
}

export type Handler = Dispatcher.DispatchHandler
export type Controller = Dispatcher.DispatchController
export type Interceptor = Dispatcher.DispatcherComposeInterceptor

// A request failed before undici ever saw it has no controller; the handlers along the chain
// (undici's own request handler at the end) only read the error.
const DETACHED: Controller = { abort () {}, pause () {}, resume () {}, aborted: true, paused: false, reason: null }

/** Ends a request that is refused before it reached a connection. */
export function fail (handler: Handler, err: Error): void {
  handler.onResponseError?.(DETACHED, err)
}

const REFUSED = Symbol('portcullis.refused')

/** Marks a refusal the chain made and already counted: the forwarder passes it on as it is. */
export function refusal<E extends Error> (err: E): E {
  (err as E & { [REFUSED]?: true })[REFUSED] = true
  return err
}

export function isRefusal (err: unknown): err is Error {
  return (err as { [REFUSED]?: true } | null)?.[REFUSED] === true
}

/**
 * A handler that passes everything on to the next one: the interceptors' handlers override only the
 * events they act on (one object per request and layer, in place of the closures the inline
 * forwarder kept for the same work).
 */
export class PassHandler implements Handler {
  constructor (protected readonly next: Handler) {}

  onRequestStart (controller: Controller, context: unknown): void {
    this.next.onRequestStart?.(controller, context)
  }

  onRequestUpgrade (controller: Controller, statusCode: number, headers: Parameters<NonNullable<Handler['onRequestUpgrade']>>[2], socket: Parameters<NonNullable<Handler['onRequestUpgrade']>>[3]): void {
    this.next.onRequestUpgrade?.(controller, statusCode, headers, socket)
  }

  onResponseStart (controller: Controller, statusCode: number, headers: Parameters<NonNullable<Handler['onResponseStart']>>[2], statusMessage?: string): void {
    this.next.onResponseStart?.(controller, statusCode, headers, statusMessage)
  }

  onResponseData (controller: Controller, chunk: Buffer): void {
    this.next.onResponseData?.(controller, chunk)
  }

  onResponseEnd (controller: Controller, trailers: Parameters<NonNullable<Handler['onResponseEnd']>>[1]): void {
    this.next.onResponseEnd?.(controller, trailers)
  }

  onResponseError (controller: Controller, err: Error): void {
    this.next.onResponseError?.(controller, err)
  }
}
