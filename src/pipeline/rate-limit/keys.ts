import { createHash } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import proxyAddr from '@fastify/proxy-addr'
import { normalizeIP } from '@fastify/rate-limit'
import type { FastifyRequest } from 'fastify'

/*
 * Whose bucket a request counts against. Nothing a client can vary freely goes in: not a header
 * (X-Forwarded-For only from a configured proxy), not the raw path (routes are matched on canonical
 * paths, so `//x` or `/X` cannot open a second bucket).
 */

/**
 * The client address as a bucket key: the request's one client address (guard/client-address.ts),
 * with IPv6 clients grouped by /64 (one host can hold a whole /64).
 */
export function clientBucketIp (request: FastifyRequest): string {
  return normalizeIP(request.clientAddress)
}

/** Checks trusted proxy entries the way they will be read; the message of the first bad one, or null. */
export function checkTrustedProxies (entries: readonly string[]): string | null {
  try {
    proxyAddr.compile([...entries])
    return null
  } catch (err) {
    return (err as Error).message
  }
}

/**
 * Bucket names are hashed: fixed length in Redis and in memory, and no subjects or tenant keys
 * stored in the clear. A caller sends many requests, so each name's hash is remembered (a SHA-256
 * costs a few microseconds, the lookup a fraction of one); the table is bounded.
 */
export function createBucketHasher (max = 16_384): (...parts: string[]) => string {
  const known = new LRUCache<string, string>({ max })
  return (...parts) => {
    const name = parts.join('\0')
    let hash = known.get(name)
    if (hash === undefined) {
      hash = createHash('sha256').update(name).digest('base64url').slice(0, 27)
      known.set(name, hash)
    }
    return hash
  }
}

/** The identity part of a main-limit bucket: issuer and subject, or the client IP when anonymous. */
export function principalIdentity (request: FastifyRequest, clientIp: string): string {
  const p = request.principal
  if (p === null || p.type === 'anonymous') return `ip\0${clientIp}`
  return `${p.type}\0${p.issuer}\0${p.subject}`
}
