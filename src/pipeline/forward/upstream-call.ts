import { EventEmitter } from 'node:events'
import type { IncomingHttpHeaders, ServerResponse } from 'node:http'
import { Readable } from 'node:stream'
import { errors as undiciErrors } from 'undici'
import type { Controller, Handler } from './exchange.js'

/*
 * The end of the forward chain: what undici's request() did for the forwarder, without what it costs
 * per request here. request() ends in a handler of undici's old interface, so compose() wrapped it
 * and every answer's headers went from the object the chain had parsed back into Buffers and were
 * parsed again; it also made an AsyncResource, a promise callback and an abort listener per request.
 * This handler takes the parsed head as the chain hands it over, and is itself the exchange's abort
 * signal (an EventEmitter, as upstream-queue.ts listens to it while a request waits for a connection).
 *
 * Kept as request() had it: the body is a Readable that resumes the connection when read (64 KiB
 * high-water mark, as undici's) and aborts the request when destroyed before its end (undici's
 * RequestAbortedError, which the forwarder counts as a client abort); a client that goes away
 * aborts the request wherever it is; a failure destroys the client's body stream.
 *
 * A body whose length the head declares, at most the Readable's own high-water mark, is instead taken
 * whole before the answer is handed on, and handed on as a Buffer (issue #19): no stream, pipe and
 * end-of-stream listeners per request, and Fastify writes the client's head and body together. It
 * holds no more than the Readable would have before pausing the connection. A failure before its end
 * (a broken connection, the body timeout) is then a failure of the exchange, answered as one (502, 504),
 * where a streamed body could only cut the client's connection.
 */

/** The largest declared body taken whole (the streamed body's high-water mark). */
export const WHOLE_BODY_MAX = 64 * 1024

export interface UpstreamResponse {
  statusCode: number
  headers: IncomingHttpHeaders
  /** Streamed, or whole when its declared length is at most WHOLE_BODY_MAX. */
  body: Readable | Buffer
  /** performance.now() when the head arrived. */
  headersAt: number
}

type Headers = Parameters<NonNullable<Handler['onResponseStart']>>[2]

function noop (): void {}

// One options object for every body (Readable only reads it).
const BODY_OPTIONS = { highWaterMark: WHOLE_BODY_MAX }

/**
 * The declared length when the body is to be taken whole, else -1: none declared, empty, too long, an
 * answer with no body (HEAD, 204, 304), or no content-type (Fastify would give a Buffer its own,
 * application/octet-stream, where a streamed body goes out without one, as the function sent it).
 */
function wholeLength (statusCode: number, headers: Headers, bodiless: boolean): number {
  if (bodiless || statusCode === 204 || statusCode === 304) return -1
  const h = headers as IncomingHttpHeaders
  if (h['content-type'] === undefined) return -1
  const declared = h['content-length']
  if (typeof declared !== 'string') return -1
  const n = Number(declared)
  return Number.isInteger(n) && n > 0 && n <= WHOLE_BODY_MAX ? n : -1
}

class ResponseBody extends Readable {
  constructor (private readonly controller: Controller) {
    super(BODY_OPTIONS)
  }

  override _read (): void {
    this.controller.resume()
  }

  override _destroy (err: Error | null, callback: (err?: Error | null) => void): void {
    if (err === null && !this.readableEnded) err = new undiciErrors.RequestAbortedError()
    if (err !== null) this.controller.abort(err)
    callback(err)
  }
}

export class UpstreamCall extends EventEmitter implements Handler {
  #controller: Controller | null = null
  #body: ResponseBody | null = null
  /** The head and the chunks so far of a body taken whole, else null. */
  #whole: { statusCode: number, headers: IncomingHttpHeaders, headersAt: number, chunks: Buffer[] } | null = null
  /** A HEAD request's answer has no body, whatever its head declares. */
  readonly #bodiless: boolean
  #aborted: Error | null = null
  #resolve: ((response: UpstreamResponse) => void) | null = null
  #reject: ((err: Error) => void) | null = null
  /** The client's body stream as sent (destroyed when the exchange fails), or null. */
  readonly #requestBody: Readable | null

  /** The answer's head, or the exchange's failure before it. */
  readonly response: Promise<UpstreamResponse>

  /**
   * For the client's response 'close' and request 'error': a client that is gone (its response not
   * finished) cancels the exchange. One function per request serves both.
   */
  readonly clientGone: () => void

  constructor (client: ServerResponse, requestBody: unknown, method: string) {
    super()
    this.#bodiless = method === 'HEAD'
    this.#requestBody = requestBody instanceof Readable ? requestBody : null
    this.response = new Promise((resolve, reject) => { this.#resolve = resolve; this.#reject = reject })
    this.clientGone = () => { if (!client.writableFinished) this.#abort() }
  }

  #abort (): void {
    this.emit('abort') // a request waiting for a connection leaves the queue
    const err = new undiciErrors.RequestAbortedError()
    if (this.#body !== null) this.#body.on('error', noop).destroy(err)
    else if (this.#controller !== null) this.#controller.abort(err)
    else this.#aborted = err
  }

  onRequestStart (controller: Controller): void {
    if (this.#aborted !== null) { controller.abort(this.#aborted); return }
    this.#controller = controller
  }

  onResponseStart (controller: Controller, statusCode: number, headers: Headers): void {
    if (statusCode < 200) return // informational: the answer is still to come
    this.#controller = controller
    const headersAt = performance.now()
    if (wholeLength(statusCode, headers, this.#bodiless) > 0) {
      this.#whole = { statusCode, headers: headers as IncomingHttpHeaders, headersAt, chunks: [] }
      return
    }
    const body = new ResponseBody(controller)
    this.#body = body
    const resolve = this.#resolve
    this.#resolve = this.#reject = null
    resolve?.({ statusCode, headers: headers as IncomingHttpHeaders, body, headersAt })
  }

  onResponseData (controller: Controller, chunk: Buffer): void {
    if (this.#whole !== null) this.#whole.chunks.push(chunk)
    else if (this.#body?.push(chunk) === false) controller.pause()
  }

  onResponseEnd (): void {
    const whole = this.#whole
    if (whole === null) {
      this.#body?.push(null)
      return
    }
    this.#whole = null
    const resolve = this.#resolve
    this.#resolve = this.#reject = null
    const { chunks } = whole
    resolve?.({ statusCode: whole.statusCode, headers: whole.headers, body: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), headersAt: whole.headersAt })
  }

  onResponseError (_controller: Controller, err: Error): void {
    this.#whole = null
    const reject = this.#reject
    this.#resolve = this.#reject = null
    reject?.(err)
    const body = this.#body
    // As undici does: what was pushed before the failure is delivered first.
    if (body !== null) queueMicrotask(() => { body.on('error', noop).destroy(err) })
    if (this.#requestBody !== null) this.#requestBody.on('error', noop).destroy(err)
  }
}
