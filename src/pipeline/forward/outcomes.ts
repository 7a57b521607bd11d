import { pipeline, Transform, type Readable } from 'node:stream'
import { errors as undiciErrors } from 'undici'
import {
  GW_ERR_GUARD_BAD_REQUEST, GW_ERR_GUARD_BODY_TOO_LARGE, GW_ERR_UPSTREAM_BODY_TIMEOUT, GW_ERR_UPSTREAM_CONNECT, GW_ERR_UPSTREAM_CONNECT_TIMEOUT,
  GW_ERR_UPSTREAM_FAILED, GW_ERR_UPSTREAM_RESPONSE_TOO_LARGE, GW_ERR_UPSTREAM_TIMEOUT, GW_ERR_UPSTREAM_TLS,
  GW_ERR_UPSTREAM_TOTAL_TIMEOUT, GW_ERR_UPSTREAM_BUSY, GW_ERR_UPSTREAM_SHUTDOWN
} from '../../errors.js'
import { markUpstreamError } from '../error-reply.js'
import { isRefusal } from './exchange.js'
import { UpstreamQueueFull, UpstreamQueueTimeout, UpstreamShutdown } from './upstream-queue.js'

/*
 * How an exchange with a function can end badly, and the streams that enforce the size caps. Each
 * failure gets its own code (what the client sees) and kind (the metric label and log field).
 */

export interface Outcome {
  error: Error
  /** Label of portcullis_upstream_errors_total; null for a refusal the chain made and counted itself. */
  kind: string | null
  /** Says something about the upstream's health (the circuit breaker counts it). */
  transport: boolean
}

const TLS_CODE = /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO|SELF_SIGNED|HOSTNAME_MISMATCH)/
const CONNECT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN'])
// Failures before any byte of the request left: the function cannot have seen it.
const NEVER_SENT = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT'])

const codeOf = (err: unknown): string => String((err as NodeJS.ErrnoException | null)?.code ?? '')

/** Classifies a failed exchange (an attempt, or the whole of it). */
export function classify (err: unknown): Outcome {
  if (isRefusal(err)) return { error: err, kind: null, transport: false }
  if (err instanceof GW_ERR_GUARD_BODY_TOO_LARGE) return { error: err, kind: 'request_too_large', transport: false }
  if (err instanceof GW_ERR_GUARD_BAD_REQUEST) return { error: err, kind: 'client_aborted', transport: false }
  if (err instanceof GW_ERR_UPSTREAM_RESPONSE_TOO_LARGE) return { error: err, kind: 'response_too_large', transport: false }
  // The deadline (deadline.ts) ended it: the function took too long, which says something of its health.
  if (err instanceof GW_ERR_UPSTREAM_TOTAL_TIMEOUT) return { error: err, kind: 'total_timeout', transport: true }
  // Never sent, or cut off by the gateway itself: nothing said about the function's health.
  if (err instanceof UpstreamQueueFull) return { error: new GW_ERR_UPSTREAM_BUSY(), kind: 'queue_full', transport: false }
  if (err instanceof UpstreamQueueTimeout) return { error: new GW_ERR_UPSTREAM_BUSY(), kind: 'queue_timeout', transport: false }
  if (err instanceof UpstreamShutdown) return { error: new GW_ERR_UPSTREAM_SHUTDOWN(), kind: 'shutdown', transport: false }
  if (err instanceof undiciErrors.RequestAbortedError) return { error: new GW_ERR_UPSTREAM_FAILED(), kind: 'client_aborted', transport: false }
  if (err instanceof undiciErrors.HeadersTimeoutError) return { error: new GW_ERR_UPSTREAM_TIMEOUT(), kind: 'timeout', transport: true }
  if (err instanceof undiciErrors.BodyTimeoutError) return { error: new GW_ERR_UPSTREAM_BODY_TIMEOUT(), kind: 'body_timeout', transport: true }
  if (err instanceof undiciErrors.ConnectTimeoutError) return { error: new GW_ERR_UPSTREAM_CONNECT_TIMEOUT(), kind: 'connect_timeout', transport: true }
  const code = codeOf(err)
  if (TLS_CODE.test(code) || code === 'ECONNRESET_TLS') return { error: new GW_ERR_UPSTREAM_TLS(), kind: 'tls', transport: true }
  if (CONNECT_CODES.has(code)) return { error: new GW_ERR_UPSTREAM_CONNECT(), kind: 'connect', transport: true }
  return { error: new GW_ERR_UPSTREAM_FAILED(), kind: 'failed', transport: true }
}

/** Whether a failure happened before the request could reach the function, so one retry is safe. */
export function isRetryable (err: unknown): boolean {
  return NEVER_SENT.has(codeOf(err))
}

/** Streams a request body through, failing once it passes the limit (for bodies without a length). */
export function limitBody (body: Readable, max: number): Readable {
  let seen = 0
  const out = new Transform({
    transform (chunk: Buffer, _enc, done) {
      seen += chunk.length
      if (seen > max) done(new GW_ERR_GUARD_BODY_TOO_LARGE())
      else done(null, chunk)
    }
  })
  // pipe() passes neither an error nor an early close of the client's body on: without this, whatever
  // reads the limited body (undici, or the buffering for a signature) would wait for ever.
  const brokeOff = (): void => { if (!body.readableEnded) out.destroy(new GW_ERR_GUARD_BAD_REQUEST()) }
  body.once('error', brokeOff).once('close', brokeOff)
  return body.pipe(out)
}

/**
 * Streams a response body through, cutting it off once it passes the limit. The head is already on
 * its way by then, so the client sees a visibly incomplete body, never a complete-looking short one.
 */
export function capBody (body: Readable, max: number, onOver: () => void): Readable {
  let seen = 0
  const out = new Transform({
    transform (chunk: Buffer, _enc, done) {
      seen += chunk.length
      if (seen <= max) { done(null, chunk); return }
      const err = new GW_ERR_UPSTREAM_RESPONSE_TOO_LARGE()
      markUpstreamError(err)
      onOver()
      done(err)
    }
  })
  // pipeline: an error on either side destroys both, so the upstream request is cancelled too.
  return pipeline(body, out, () => {})
}
