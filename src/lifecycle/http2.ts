import { constants, Http2ServerRequest, type Http2Session, type SecureServerOptions, type ServerHttp2Stream } from 'node:http2'
import type { EventEmitter } from 'node:events'
import type { Config } from '../config/schema.js'

/*
 * The public listener's HTTP/2 (issue #21): ALPN offers `h2` and `http/1.1` on TLS only (no h2c),
 * and every per-connection resource an HTTP/2 client can make the gateway hold is bounded here, so
 * that one connection abusing them (rapid reset, CONTINUATION, SETTINGS or PING floods, HPACK bombs)
 * is closed while the others keep being served. nghttp2 itself refuses malformed messages
 * (connection-specific or upper-case header names, a content-length the DATA frames do not match);
 * the guard checks the same again before anything is forwarded. What nghttp2 lets through (a field
 * with CR, LF, NUL or another control character, or a name that is not a token, which Node drops and
 * serves the request) or Node answers
 * wrongly, the frame guard in front of the session handles (h2-frame-guard.ts, h2-guarded-socket.ts).
 */

/** The pseudo-headers a request carries (:method, :scheme, :authority, :path): not counted as header fields. */
export const REQUEST_PSEUDO_HEADERS = 4

// The reset budget rides with the server options (Node ignores a key it does not know): like them, it
// is fixed when the socket opens (lifecycle/restart-only.ts).
const RESET_BUDGET = 'portcullisResetBudget'

/** Options of `http2.createSecureServer` beside the TLS ones, from `limits`. */
export function http2ServerOptions (limits: Config['limits']): SecureServerOptions & { [RESET_BUDGET]: ResetBudget } {
  const h2 = limits.http2
  return {
    allowHTTP1: true,
    settings: {
      maxConcurrentStreams: h2.maxConcurrentStreams,
      headerTableSize: h2.headerTableSize,
      // The same byte budget as an HTTP/1.1 head; Node resets a stream whose header list exceeds it.
      maxHeaderListSize: limits.maxHeaderBytes,
      enablePush: false,
      enableConnectProtocol: false
    },
    // One field beyond maxHeaders reaches the guard (431), as with HTTP/1.1's maxHeadersCount.
    maxHeaderListPairs: limits.maxHeaders + 1 + REQUEST_PSEUDO_HEADERS,
    maxSessionMemory: h2.maxSessionMemoryMb,
    maxOutstandingPings: h2.maxOutstandingPings,
    maxSettings: h2.maxSettings,
    maxSessionInvalidFrames: h2.maxInvalidFrames,
    maxSessionRejectedStreams: h2.maxRejectedStreams,
    [RESET_BUDGET]: { burst: h2.resetBurst, perSecond: h2.resetsPerSecond },
    // A TLS client that negotiates no protocol this listener speaks is dropped after this.
    unknownProtocolTimeout: limits.headersTimeoutMs
  }
}

const PROTOCOLS: Record<string, string> = { '1.1': 'HTTP/1.1', '1.0': 'HTTP/1.0' }

/** The protocol a request came over, for the access line, metrics and policy input: HTTP/1.1, HTTP/1.0, HTTP/2 or other. */
export function protocolOf (raw: { httpVersion: string }): string {
  return isHttp2Request(raw) ? 'HTTP/2' : PROTOCOLS[raw.httpVersion] ?? 'other'
}

/** The reset budget http2ServerOptions put in `options`. */
export function resetBudgetOf (options: SecureServerOptions): ResetBudget {
  const budget = (options as { [RESET_BUDGET]?: ResetBudget })[RESET_BUDGET]
  if (budget === undefined) throw new Error('HTTP/2 server options without a reset budget (made by http2ServerOptions)')
  return budget
}

/** The budget of streams one connection may cancel: `burst` at once, refilled at `perSecond` (limits.http2). */
export interface ResetBudget { burst: number, perSecond: number }

// Set on a stream the gateway itself closes (listener.ts, a request past requestTimeout): not the client's cancel.
const CLOSED_BY_GATEWAY = Symbol('portcullis.closedByGateway')

/** Closes a stream on the gateway's own account: it does not count against the client's reset budget. */
export function closeStream (stream: ServerHttp2Stream, code: number): void {
  (stream as ServerHttp2Stream & { [CLOSED_BY_GATEWAY]?: true })[CLOSED_BY_GATEWAY] = true
  stream.close(code)
}

/**
 * Rapid reset (CVE-2023-44487): a client that cancels streams it opened makes the gateway start work
 * (authenticate, authorize, forward) it then throws away, at no cost to itself. Node bounds only the
 * streams it refuses itself (maxSessionRejectedStreams). Streams the client cancels before their answer
 * ended are counted here against a budget that refills over time (a token bucket, so a connection that
 * lives for hours and cancels now and then never runs out); past it, the connection gets GOAWAY
 * ENHANCE_YOUR_CALM and is destroyed at once, and `onCutOff` is told how many it cancelled.
 *
 * Whose cancel: Node emits 'aborted' when a stream closes with its answer unfinished, both for the
 * client's RST_STREAM (whatever its code, NO_ERROR included) and for the gateway's own destroy or close.
 * The gateway's destroy marks the stream destroyed before 'aborted'; its close marks it (closeStream);
 * a stream the client reset before Node handed it on is already aborted when it arrives.
 */
export function limitClientResets (session: Http2Session, budget: ResetBudget, onCutOff: (resets: number) => void): void {
  let tokens = budget.burst
  let refilledAt = performance.now()
  let resets = 0
  const cancelled = (): void => {
    resets++
    const now = performance.now()
    tokens = Math.min(budget.burst, tokens + (now - refilledAt) * budget.perSecond / 1000)
    refilledAt = now
    if (--tokens >= 0 || session.destroyed) return
    // The code is the final GOAWAY's; the error only reaches the server's 'sessionError' event.
    session.destroy(new Error('too many streams cancelled by the client'), constants.NGHTTP2_ENHANCE_YOUR_CALM)
    onCutOff(resets)
  }
  const byGateway = (stream: ServerHttp2Stream): boolean => (stream as ServerHttp2Stream & { [CLOSED_BY_GATEWAY]?: true })[CLOSED_BY_GATEWAY] === true
  session.on('stream', (stream: ServerHttp2Stream) => {
    // Already aborted: reset by the client before Node handed it on, or refused by the frame guard.
    if (stream.aborted) { if (!byGateway(stream)) cancelled(); return }
    stream.once('aborted', () => {
      if (!stream.destroyed && !byGateway(stream)) cancelled()
    })
  })
}

// nghttp2's own flood verdicts (nghttp2.h), the errno of the session error Node then emits: too many
// queued SETTINGS or PING acknowledgements (a SETTINGS or PING flood), and a header block that never
// ends (CONTINUATION flood, CVE-2024-27983). nghttp2 has already ended the connection.
const NGHTTP2_ERR_FLOODED = -904
const NGHTTP2_ERR_TOO_MANY_CONTINUATIONS = -905

/**
 * Takes Node's own `name` listener of `event` off `server` and returns it, so that the gateway's
 * listener decides whether and with what it runs (a refused address, the frame guard's stream). Throws
 * when this Node has no such listener: what the gateway puts in front of it must never be skipped.
 */
export function takeNodeListener<A extends unknown[]> (server: EventEmitter, event: string, name: string, what: string): (...args: A) => void {
  const listener = server.listeners(event).find(l => l.name === name) as ((...args: A) => void) | undefined
  if (listener === undefined) throw new Error(`Node's ${event} listener (${name}) was not found: ${what}`)
  server.removeListener(event, listener)
  return (...args) => { listener.apply(server, args) }
}

/**
 * Emitted on a session, with the error, when it is being destroyed (h2-guarded-socket.ts): Node emits
 * the error itself only once the socket has closed, after the client may already have seen the GOAWAY.
 */
export const SESSION_DESTROYING = 'portcullis:destroying'

/** Calls `onFlood` (once) when nghttp2 ends `session` for a flood. */
export function watchFloods (session: Http2Session, onFlood: () => void): void {
  let seen = false
  const check = (err: (Error & { errno?: number }) | undefined): void => {
    if (seen || (err?.errno !== NGHTTP2_ERR_FLOODED && err?.errno !== NGHTTP2_ERR_TOO_MANY_CONTINUATIONS)) return
    seen = true
    onFlood()
  }
  session.on(SESSION_DESTROYING, check)
  session.on('error', check)
}

/** Whether a request came over HTTP/2 (not HTTP/1.1 text claiming "HTTP/2.0", which the guard refuses). */
export function isHttp2Request (raw: unknown): raw is Http2ServerRequest {
  return raw instanceof Http2ServerRequest
}
