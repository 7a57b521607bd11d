import { constants, Http2ServerRequest, type Http2Session, type SecureServerOptions, type ServerHttp2Stream } from 'node:http2'
import type { Config } from '../config/schema.js'

/*
 * The public listener's HTTP/2 (issue #21): ALPN offers `h2` and `http/1.1` on TLS only (no h2c),
 * and every per-connection resource an HTTP/2 client can make the gateway hold is bounded here, so
 * that one connection abusing them (rapid reset, CONTINUATION, SETTINGS or PING floods, HPACK bombs)
 * is closed while the others keep being served. nghttp2 itself refuses malformed messages
 * (connection-specific or upper-case header names, CR/LF/NUL in fields, a content-length the DATA
 * frames do not match); the guard checks the same again before anything is forwarded.
 */

/** The pseudo-headers a request carries (:method, :scheme, :authority, :path): not counted as header fields. */
export const REQUEST_PSEUDO_HEADERS = 4

/** Options of `http2.createSecureServer` beside the TLS ones, from `limits`. */
export function http2ServerOptions (limits: Config['limits']): SecureServerOptions {
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
    // A TLS client that negotiates no protocol this listener speaks is dropped after this.
    unknownProtocolTimeout: limits.headersTimeoutMs
  }
}

const PROTOCOLS: Record<string, string> = { '1.1': 'HTTP/1.1', '1.0': 'HTTP/1.0' }

/** The protocol a request came over, for the access line, metrics and policy input: HTTP/1.1, HTTP/1.0, HTTP/2 or other. */
export function protocolOf (raw: { httpVersion: string }): string {
  return isHttp2Request(raw) ? 'HTTP/2' : PROTOCOLS[raw.httpVersion] ?? 'other'
}

/**
 * Rapid reset (CVE-2023-44487): a client that cancels streams it opened makes the gateway start work
 * (authenticate, authorize, forward) it then throws away, at no cost to itself. Node bounds only the
 * streams it refuses itself (maxSessionRejectedStreams); streams the client resets before their
 * response ended are counted here against the same limit, and a connection past it gets GOAWAY
 * ENHANCE_YOUR_CALM and is closed. Ordinary clients cancel a stream now and then, far below it.
 */
export function limitClientResets (session: Http2Session, limit: number): void {
  let resets = 0
  session.on('stream', (stream: ServerHttp2Stream) => {
    stream.once('close', () => {
      if (stream.rstCode === constants.NGHTTP2_NO_ERROR || stream.sentTrailers !== undefined || (stream.writableEnded && stream.headersSent)) return
      if (++resets > limit && !session.destroyed) {
        session.goaway(constants.NGHTTP2_ENHANCE_YOUR_CALM)
        session.destroy()
      }
    })
  })
}

/** Whether a request came over HTTP/2 (not HTTP/1.1 text claiming "HTTP/2.0", which the guard refuses). */
export function isHttp2Request (raw: unknown): raw is Http2ServerRequest {
  return raw instanceof Http2ServerRequest
}
