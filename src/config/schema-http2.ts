import { Type } from '@sinclair/typebox'

/*
 * HTTP/2 on the public listener (issue #21): whether ALPN offers `h2`, and the per-connection bounds
 * that keep one abusive connection from taking the gateway from everyone else. Header count and size
 * come from `limits` (maxHeaders, maxHeaderBytes), the same for both protocols.
 */

export const Http2Enabled = Type.Boolean({
  default: true,
  description: 'offer HTTP/2 (ALPN "h2") beside HTTP/1.1 on the TLS listener; never cleartext h2c (ignored with plaintext)'
})

export const Http2Limits = Type.Object({
  maxConcurrentStreams: Type.Integer({ minimum: 1, maximum: 1000, default: 100, description: 'streams one HTTP/2 connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS)' }),
  headerTableSize: Type.Integer({ minimum: 0, maximum: 65_536, default: 4096, description: 'HPACK dynamic table size the gateway allows a client (SETTINGS_HEADER_TABLE_SIZE)' }),
  maxSessionMemoryMb: Type.Integer({ minimum: 1, maximum: 1024, default: 10, description: 'memory one HTTP/2 connection may hold (streams, HPACK, buffers); new streams are refused beyond it' }),
  maxOutstandingPings: Type.Integer({ minimum: 1, maximum: 1000, default: 10, description: 'PINGs the gateway sent that may be unanswered at once (a PING flood from the client is bounded by nghttp2\'s limit on queued acknowledgements)' }),
  maxSettings: Type.Integer({ minimum: 1, maximum: 1000, default: 32, description: 'entries one SETTINGS frame may carry (a SETTINGS flood is bounded by nghttp2\'s limit on queued acknowledgements)' }),
  maxInvalidFrames: Type.Integer({ minimum: 0, maximum: 10_000, default: 100, description: 'invalid frames one connection may send before it is closed' }),
  maxRejectedStreams: Type.Integer({ minimum: 0, maximum: 10_000, default: 100, description: 'streams refused or reset one connection may cause before it is closed (rapid reset, CVE-2023-44487)' })
}, { additionalProperties: false, default: {}, description: 'HTTP/2 bounds per client connection (only with listen.http2)' })
