import type { IncomingHttpHeaders } from 'node:http'
import type { FastifyError } from 'fastify'
import type { Http2ServerRequest } from 'node:http2'
import { GW_ERR_GUARD_AUTHORITY_MISMATCH, GW_ERR_GUARD_BAD_REQUEST, GW_ERR_GUARD_HEADERS_TOO_LARGE } from '../../errors.js'

/*
 * The guard's own checks of an HTTP/2 request (issue #21). nghttp2 refuses most of this before the
 * request exists; checking again here keeps the gateway fail-closed whatever Node version or
 * nghttp2 option changes, because the next hop may be HTTP/1.1, where a CR or LF in a value or a
 * Transfer-Encoding would be framing (h2 → h1 desync).
 */

const PSEUDO = new Set([':method', ':scheme', ':authority', ':path'])
// RFC 9113 §8.2.2: headers that only mean something to one HTTP/1.1 connection.
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade'])
// CR, LF, NUL anywhere, or an upper-case letter in a name (RFC 9113 §8.2.1, §8.2).
const BAD_VALUE = /[\r\n\0]/
const BAD_NAME = /[\r\n\0A-Z]/

/**
 * Refuses a malformed HTTP/2 request, or returns null. Counts header fields without the
 * pseudo-headers (the same limit as HTTP/1.1), and gives a request with only `:authority` a Host
 * equal to it, so that every later stage reads the host the same way for both protocols.
 */
export function checkHttp2Request (raw: Http2ServerRequest, headers: IncomingHttpHeaders, maxHeaders: number): FastifyError | null {
  const list = raw.rawHeaders
  let fields = 0
  for (let i = 0; i < list.length; i += 2) {
    const name = list[i]!
    const value = list[i + 1]!
    if (BAD_NAME.test(name) || BAD_VALUE.test(value)) return new GW_ERR_GUARD_BAD_REQUEST()
    if (name.charCodeAt(0) === 58 /* : */) {
      if (!PSEUDO.has(name)) return new GW_ERR_GUARD_BAD_REQUEST()
      continue
    }
    fields++
    if (CONNECTION_SPECIFIC.has(name) || (name === 'te' && value.trim().toLowerCase() !== 'trailers')) return new GW_ERR_GUARD_BAD_REQUEST()
  }
  if (fields > maxHeaders) return new GW_ERR_GUARD_HEADERS_TOO_LARGE()
  // The listener is TLS only: a request that claims another scheme is not one it received.
  if (headers[':scheme'] !== 'https') return new GW_ERR_GUARD_BAD_REQUEST()
  const authority = headers[':authority'] as string | undefined
  const host = headers.host
  if (authority !== undefined && host !== undefined && authority.toLowerCase() !== host.toLowerCase()) return new GW_ERR_GUARD_AUTHORITY_MISMATCH()
  if (host === undefined && authority !== undefined) headers.host = authority
  return null
}

/** Whether a header name is an HTTP/2 pseudo-header: never a header field, never forwarded or shown to a policy. */
export function isPseudoHeader (name: string): boolean {
  return name.charCodeAt(0) === 58
}
