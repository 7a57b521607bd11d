import { STATUS_CODES } from 'node:http'
import type { Http2ServerResponse } from 'node:http2'
import type { Socket } from 'node:net'
import type { FastifyBaseLogger, FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { GW_ERR_GUARD_BAD_REQUEST, GW_ERR_GUARD_HEADERS_TOO_LARGE, GW_ERR_GUARD_METHOD, GW_ERR_GUARD_TIMEOUT } from '../errors.js'
import { meaningOf } from '../error-codes.js'
import type { Metrics } from '../observability/metrics.js'
import { normalizeAddress } from './guard/client-address.js'
import { isHttp2Request } from '../lifecycle/http2.js'
import { ALLOW_HEADER } from './guard/plugin.js'

const UPSTREAM = Symbol('portcullis.upstream-error')
// Set on a connection whose refusal was answered with `connection: close`: the parser error that
// often follows (the unread, badly framed body) is the same refusal and must not be answered twice.
const CLOSING = Symbol('portcullis.closing')

/** On every refusal the gateway writes itself (issue #20 item 6). */
const REFUSAL_HEADERS = { 'x-content-type-options': 'nosniff', 'cache-control': 'no-store' } as const
const REFUSAL_HEAD_LINES = Object.entries(REFUSAL_HEADERS).map(([n, v]) => `${n}: ${v}\r\n`).join('')

/** Marks an error that came from reading the function's answer, whatever its class or code. */
export function markUpstreamError (err: Error): void {
  (err as Error & { [UPSTREAM]?: true })[UPSTREAM] = true
}

/** The metric label of a refusal: its code without the prefix (GW_ERR_GUARD_BAD_PATH → guard_bad_path). */
export function rejectionReason (code: string): string {
  return code.slice('GW_ERR_'.length).toLowerCase()
}

/**
 * The only shape a refused request gets: `{error, code, request_id}`. Gateway errors carry their own
 * safe message; anything else (a bug, a library error) becomes a generic message so that no stack,
 * file path, upstream body or policy text reaches a client. The full error stays in the server log.
 */
export function createErrorReplier (metrics: Metrics) {
  return (error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply => {
    // A request whose bytes broke the parser was already answered and counted as a client error.
    const answered = (request.raw.socket as Socket & { [CLOSING]?: true } | null)?.[CLOSING] === true
    const sent = replyWithError(error, request, reply)
    if (request.errorCode !== null && !answered && request.raw.errored === null) metrics.rejected.inc({ reason: rejectionReason(request.errorCode) })
    return sent
  }
}

function replyWithError (error: FastifyError, request: FastifyRequest, reply: FastifyReply): FastifyReply {
  // A method Fastify's router does not know (only HTTP/2 brings one: Node's HTTP/1.1 parser refuses
  // them first) ends in Fastify's last-resort 404, before any hook: the guard's answer instead.
  if (error.code === 'FST_ERR_NOT_FOUND') {
    reply.header('allow', ALLOW_HEADER)
    error = new GW_ERR_GUARD_METHOD(request.method.slice(0, 32))
  }
  // Ours: a code in the table (errors.ts); anything else is never trusted to carry a safe message.
  const ours = typeof error.code === 'string' && meaningOf(error.code) !== undefined
  let status = typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 600 ? error.statusCode : 500
  // undici's errors while reading the function's answer (bad framing, reset mid-body) are the
  // function's fault, not ours: 502 like any other upstream failure.
  const upstream = !ours && ((error as FastifyError & { [UPSTREAM]?: true })[UPSTREAM] === true ||
    (typeof error.code === 'string' && (error.code.startsWith('UND_ERR_') || error.code.startsWith('HPE_'))))
  if (upstream) status = 502
  let code = ours ? error.code : upstream ? 'GW_ERR_UPSTREAM_FAILED' : 'GW_ERR_INTERNAL'
  let message = ours ? error.message : upstream ? 'upstream request failed' : 'internal error'
  if (!ours && status < 500) {
    // Fastify's own client errors (oversized body, bad framing, ...): keep the status, not the text.
    request.log.info({ err: error }, 'client error')
    code = status === 413 ? 'GW_ERR_GUARD_BODY_TOO_LARGE' : 'GW_ERR_GUARD_BAD_REQUEST'
    message = status === 413 ? 'request body exceeds the limit' : 'bad request'
  }
  if (status >= 500 && !ours && !upstream) {
    request.log.error({ err: error }, 'unexpected error')
    status = 500
  }
  if (upstream) request.log.warn({ err: error.message }, 'upstream answer broke off')
  // A refused request whose body was not read: close rather than read and discard it (RFC 9110 §15.5.14).
  // (HTTP/1.1 only: an HTTP/2 stream ends on its own, and the header is not allowed there.)
  if (!request.raw.complete && request.raw.httpVersionMajor !== 2) reply.header('connection', 'close')
  if (reply.getHeader('connection') === 'close') (request.raw.socket as Socket & { [CLOSING]?: true })[CLOSING] = true
  request.errorCode = code
  if (reply.sent || reply.raw.headersSent) {
    // The response is already streaming; all that is left is to cut it short.
    reply.raw.destroy()
    return reply
  }
  // The body may echo what the client sent (the 404 names the path): never sniffed as HTML, never cached.
  return reply.code(status).type('application/json; charset=utf-8').headers(REFUSAL_HEADERS)
    .send({ error: message, code, request_id: request.id })
}

/**
 * Requests that Node's HTTP parser cannot read never reach Fastify's error handler; they get the same
 * JSON body here, on a connection that is then closed (a malformed request leaves the stream unusable).
 */
/** `metrics` null: the admin listener's, whose refusals are not the request path's. */
export function createClientErrorReplier (metrics: Metrics | null, log: FastifyBaseLogger) {
  return (err: NodeJS.ErrnoException, socket: Socket): void => replyToClientError(err, socket, metrics, log)
}

function replyToClientError (err: NodeJS.ErrnoException, socket: Socket, metrics: Metrics | null, log: FastifyBaseLogger): void {
  if (!socket.writable) {
    socket.destroy()
    return
  }
  // Bytes that cannot be parsed after a complete request (pipelined garbage) must not overwrite that
  // request's answer: it was already dispatched, and the client must learn what happened to it. Let
  // its response finish, then close; the garbage itself is never answered or forwarded. (Node's own
  // default handler looks at the same in-progress response.)
  const inFlight = (socket as Socket & { _httpMessage?: { writableEnded: boolean, shouldKeepAlive: boolean, req?: { complete: boolean } } })._httpMessage
  // The request was already answered (a refusal, counted then): just end the connection.
  if ((socket as Socket & { [CLOSING]?: true })[CLOSING] === true || (inFlight !== undefined && inFlight !== null && inFlight.writableEnded)) {
    socket.end()
    return
  }
  // Only a request that arrived whole gets its answer; if the broken bytes are its own body, it is
  // answered 400 below (the forwarder sees the request destroyed and sends nothing on).
  if (inFlight !== undefined && inFlight !== null && !inFlight.writableEnded && inFlight.req?.complete === true) {
    metrics?.rejected.inc({ reason: 'guard_bad_request' })
    log.info({ code: 'GW_ERR_GUARD_BAD_REQUEST', reason: 'guard_bad_request', parser: err.code ?? null, client_ip: socket.remoteAddress === undefined ? null : normalizeAddress(socket.remoteAddress) }, 'unparseable bytes after a request; closing after its answer')
    inFlight.shouldKeepAlive = false
    return
  }
  const refusal = err.code === 'HPE_HEADER_OVERFLOW'
    ? new GW_ERR_GUARD_HEADERS_TOO_LARGE()
    : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? new GW_ERR_GUARD_TIMEOUT() : new GW_ERR_GUARD_BAD_REQUEST()
  metrics?.rejected.inc({ reason: rejectionReason(refusal.code) })
  ;(socket as Socket & { [CLOSING]?: true })[CLOSING] = true
  // No request exists, so no access line: this is the one line that records the refusal.
  log.info({ code: refusal.code, reason: rejectionReason(refusal.code), status: refusal.statusCode, parser: err.code ?? null, client_ip: socket.remoteAddress === undefined ? null : normalizeAddress(socket.remoteAddress) }, 'request refused before parsing')
  endWithRefusal(socket, refusal)
}

/**
 * Writes a gateway refusal straight to a socket that has no Fastify reply (no request was parsed,
 * or Node handled the method itself) and closes it: the same `{error, code, request_id}` body.
 */
function endWithRefusal (socket: Socket, refusal: FastifyError, extraHeaders = ''): void {
  const status = refusal.statusCode ?? 400
  const body = JSON.stringify({ error: refusal.message, code: refusal.code, request_id: null })
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n${extraHeaders}${REFUSAL_HEAD_LINES}content-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
}

/**
 * CONNECT never reaches Fastify (Node hands it to a 'connect' listener, or drops the socket without
 * an answer), nor does an HTTP/2 method no router knows (lifecycle/listener.ts, UNROUTABLE_METHOD).
 * The gateway tunnels nothing: it answers 405 like any other refused method (and closes HTTP/1.1).
 */
export function createMethodRefuser (metrics: Metrics, allow: string) {
  return (request: unknown, socket: Socket | Http2ServerResponse): void => {
    // HTTP/2 hands over the stream's request and response (Node's compat layer), not a socket.
    const h2 = isHttp2Request(request)
    const refusal = new GW_ERR_GUARD_METHOD(h2 ? request.method.slice(0, 32) : 'CONNECT')
    metrics.rejected.inc({ reason: rejectionReason(refusal.code) })
    if (h2) {
      const body = JSON.stringify({ error: refusal.message, code: refusal.code, request_id: null })
      ;(socket as Http2ServerResponse).writeHead(refusal.statusCode ?? 405, { ...REFUSAL_HEADERS, allow, 'content-type': 'application/json; charset=utf-8' }).end(body)
      return
    }
    endWithRefusal(socket as Socket, refusal, `allow: ${allow}\r\n`)
  }
}
