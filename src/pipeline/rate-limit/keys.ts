import { createHash } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { FastifyRequest } from 'fastify'

/*
 * Whose bucket a request counts against. Nothing a client can vary freely goes in: not a header
 * (X-Forwarded-For only from a configured proxy), not the raw path (routes are matched on canonical
 * paths, so `//x` or `/X` cannot open a second bucket).
 */

/**
 * Bucket names are hashed: fixed length in Redis and in memory, and no subjects or tenant keys
 * stored in the clear. A caller sends many requests, so each name's hash is remembered (a SHA-256
 * costs a few microseconds, the lookup a fraction of one); the table is bounded.
 */
export function createBucketHasher (max = 16_384): (name: string) => string {
  const known = new LRUCache<string, string>({ max })
  return name => {
    let hash = known.get(name)
    if (hash === undefined) {
      hash = createHash('sha256').update(name).digest('base64url').slice(0, 27)
      known.set(name, hash)
    }
    return hash
  }
}

/**
 * A bucket's name: its parts joined by NUL. Callers build the constant parts
 * once (bucketPrefix) and add the per-request part, so the names, and the hashes stored in Redis, stay
 * those of earlier versions.
 */
export function bucketPrefix (...parts: string[]): string {
  return `${parts.join('\0')}\0`
}

/** The identity part of a main-limit bucket: issuer and subject, or the client IP when anonymous. */
export function principalIdentity (request: FastifyRequest, clientIp: string): string {
  const p = request.principal
  if (p === null || p.type === 'anonymous') return `ip\0${clientIp}`
  return `${p.type}\0${p.issuer}\0${p.subject}`
}
