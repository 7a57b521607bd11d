import type { EventEmitter } from 'node:events'
import proxyAddr from '@fastify/proxy-addr'
import { normalizeIP } from '@fastify/rate-limit'
import type { FastifyBaseLogger } from 'fastify'
import type { Config } from '../config/schema.js'
import type { Metrics } from '../observability/metrics.js'
import type { GuardReason } from './h2-frame-guard.js'
import { normalizeAddress } from '../pipeline/guard/client-address.js'

/*
 * What follows an HTTP/2 connection cut off for abuse (issue #21: rapid reset, and the CONTINUATION,
 * SETTINGS and PING floods nghttp2 ends itself): the listener (listener.ts) detects it and closes the
 * connection; the generation serving then counts it, logs it,
 * and refuses new connections from the same address for a short while (limits.http2.abusePenaltySeconds),
 * so that the attacker cannot simply reconnect and make the gateway pay a TLS handshake and another
 * burst of streams, over and over.
 *
 * The refusal is by TCP peer, before TLS: not the ban list (pipeline/deny-list/), which bans the client
 * address the request path decides (behind trusted proxies, from X-Forwarded-For), refuses requests
 * rather than connections, and is shared with other replicas. A peer in bans.trustedNetworks or
 * rateLimit.trustedProxies (a load balancer many clients share) is never refused.
 */

/** Emitted on the serving generation's server, with an Http2CutOff, when a connection is cut off for abuse. */
export const HTTP2_CUT_OFF = 'portcullis:http2-cut-off'
/** Emitted there when a new connection is refused because its address was cut off moments ago. */
export const HTTP2_CONNECTION_REFUSED = 'portcullis:http2-connection-refused'

/** Emitted there, with an Http2Guarded, when the HTTP/2 frame guard refused a stream or ended a connection. */
export const HTTP2_GUARDED = 'portcullis:http2-guarded'

export interface Http2Guarded {
  /** field_bytes: a header field HTTP/1.1 would refuse (stream refused); indexed_field_bytes: in one the HPACK table kept (connection ended); flow_control, framing: connection or stream ended. */
  reason: Exclude<GuardReason, 'flood'>
  address: string
}

export interface Http2CutOff {
  /** client_resets: more cancelled streams than the budget; flood: nghttp2 ended a CONTINUATION, SETTINGS or PING flood. */
  reason: 'client_resets' | 'flood'
  /** The TCP peer, normalised (client-address.ts). */
  address: string
  /** Streams the client cancelled on that connection (client_resets; 0 for a flood). */
  resets: number
  /** Refuses new connections from this peer (an IPv6 one: its /64) for `ms`. */
  refuseAddress: (ms: number) => void
}

// Bounded: past this many addresses refused at once, new ones are not (the cut-off itself still works).
const MAX_REFUSED = 10_000

export interface PenaltyBox {
  refuse: (remoteAddress: string | undefined, ms: number) => void
  refuses: (remoteAddress: string | undefined) => boolean
}

/** Peers refused for a while, by address (IPv6 by /64, as bans and rate limits group them). */
export function createPenaltyBox (now: () => number = Date.now): PenaltyBox {
  const until = new Map<string, number>()
  const keyOf = (remoteAddress: string | undefined): string => normalizeIP(normalizeAddress(remoteAddress ?? ''))
  return {
    refuse (remoteAddress, ms) {
      const t0 = now()
      if (until.size >= MAX_REFUSED) for (const [key, end] of until) if (end <= t0) until.delete(key)
      if (until.size < MAX_REFUSED) until.set(keyOf(remoteAddress), t0 + ms)
    },
    refuses (remoteAddress) {
      if (until.size === 0) return false
      const key = keyOf(remoteAddress)
      const end = until.get(key)
      if (end === undefined) return false
      if (end > now()) return true
      until.delete(key)
      return false
    }
  }
}

/** The generation's part: counts and logs each cut-off, and refuses the address unless it is trusted. */
export function watchHttp2Abuse (server: EventEmitter, config: Config, metrics: Metrics, log: FastifyBaseLogger): void {
  const penaltyMs = config.limits.http2.abusePenaltySeconds * 1000
  const exempt = [...config.bans.trustedNetworks, ...config.rateLimit.trustedProxies]
  const trust = exempt.length > 0 ? proxyAddr.compile(exempt) : null
  server.on(HTTP2_CUT_OFF, (cut: Http2CutOff) => {
    metrics.http2CutOffs.inc({ reason: cut.reason })
    const refused = penaltyMs > 0 && (trust === null || !trust(cut.address, 0))
    if (refused) cut.refuseAddress(penaltyMs)
    log.warn({ client_ip: cut.address, reason: cut.reason, streams_cancelled: cut.resets, refused_seconds: refused ? penaltyMs / 1000 : 0 },
      'HTTP/2 connection cut off for abuse')
  })
  server.on(HTTP2_CONNECTION_REFUSED, () => { metrics.http2ConnectionsRefused.inc() })
  server.on(HTTP2_GUARDED, (guarded: Http2Guarded) => {
    // A malformed request, as HTTP/1.1's parser refuses the same bytes (guard_bad_request); never the value.
    if (guarded.reason === 'field_bytes' || guarded.reason === 'indexed_field_bytes') {
      metrics.rejected.inc({ reason: 'guard_bad_request' })
      log.warn({ client_ip: guarded.address, reason: 'guard_bad_request', detail: guarded.reason, ended: guarded.reason === 'field_bytes' ? 'stream' : 'connection' },
        'HTTP/2 header field refused: a control character in its value or a name that is not a token')
    } else log.info({ client_ip: guarded.address, detail: guarded.reason }, 'HTTP/2 connection or stream ended by the frame guard')
  })
}
