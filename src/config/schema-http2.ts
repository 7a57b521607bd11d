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
  maxRejectedStreams: Type.Integer({ minimum: 0, maximum: 10_000, default: 100, description: 'streams the gateway refuses (beyond maxConcurrentStreams, or while over maxSessionMemoryMb) one connection may cause before it is closed' }),
  // Rapid reset (CVE-2023-44487): a budget of streams the client cancels, refilled over time, so that a
  // long-lived browser connection that cancels now and then never runs out (lifecycle/http2.ts).
  resetBurst: Type.Integer({
    minimum: 1,
    maximum: 10_000,
    default: 100,
    description: 'streams one connection may cancel (RST_STREAM from the client before the answer ended) in a burst; past the budget the connection gets GOAWAY ENHANCE_YOUR_CALM and is closed (rapid reset, CVE-2023-44487). ' +
      'The default lets a client cancel every stream it may have open at once (maxConcurrentStreams)'
  }),
  resetsPerSecond: Type.Integer({ minimum: 0, maximum: 10_000, default: 10, description: 'how fast the budget of resetBurst cancelled streams refills, per second' }),
  abusePenaltySeconds: Type.Integer({
    minimum: 0,
    maximum: 3600,
    default: 10,
    description: 'after a connection is cut off for cancelling too many streams, new connections from its address (IPv6: its /64) are refused before TLS for this long; 0: never. ' +
      'Addresses in bans.trustedNetworks and rateLimit.trustedProxies are never refused'
  })
}, { additionalProperties: false, default: {}, description: 'HTTP/2 bounds per client connection (only with listen.http2)' })
