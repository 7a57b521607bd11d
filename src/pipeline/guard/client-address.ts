import { isIPv6 } from 'node:net'
import proxyAddr from '@fastify/proxy-addr'
import type { FastifyRequest } from 'fastify'

/*
 * The one client address of a request, decided at the edge and read by every stage: the policy
 * (input.client.ip), the headers sent upstream (X-Forwarded-For, Forwarded), the pre-auth limit, the
 * bans, the rate-limit buckets and the logs. Without this, a listener on "::" reports IPv4 clients
 * as "::ffff:10.1.2.3", which a policy's net.cidr_contains("10.0.0.0/8", ...) does not match in WASM
 * (it does in opa eval), and which a ban on 10.1.2.3 would not cover.
 */

// How Node reports an IPv4 peer on a dual-stack listener; the common case, answered without parsing.
const NODE_MAPPED = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i
// Any other spelling, once canonicalised by the URL parser: "[::ffff:a01:203]".
const CANONICAL_MAPPED = /^\[::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})\]$/

/**
 * The TCP peer, or, when that peer is a trusted proxy, the address X-Forwarded-For names (read from
 * the right; the first address that is not a trusted proxy), normalised by normalizeAddress.
 */
export function createClientAddress (trustedProxies: readonly string[]): (request: FastifyRequest) => string {
  if (trustedProxies.length === 0) return request => normalizeAddress(request.raw.socket.remoteAddress ?? '')
  const trust = proxyAddr.compile([...trustedProxies])
  return request => normalizeAddress(proxyAddr(request.raw, trust))
}

/** IPv4-mapped IPv6 becomes the dotted quad; other IPv6 its canonical (RFC 5952) form; IPv4 as is. */
export function normalizeAddress (ip: string): string {
  if (!isIPv6(ip)) return ip
  const fast = NODE_MAPPED.exec(ip)
  if (fast !== null) return fast[1]!
  let host: string
  try {
    host = new URL(`http://[${ip}]/`).hostname
  } catch {
    return ip.toLowerCase() // a zone id (fe80::1%eth0) is not URL syntax; nothing to map there
  }
  const mapped = CANONICAL_MAPPED.exec(host)
  if (mapped === null) return host.slice(1, -1)
  const hi = parseInt(mapped[1]!, 16)
  const lo = parseInt(mapped[2]!, 16)
  return `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`
}
