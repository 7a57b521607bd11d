import { createHash } from 'node:crypto'
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

/**
 * Bucket names are hashed: fixed length in Redis and in memory, and no subjects or tenant keys
 * stored in the clear.
 */
export function bucketHash (...parts: string[]): string {
  return createHash('sha256').update(parts.join('\0')).digest('base64url').slice(0, 27)
}

/** The identity part of a main-limit bucket: issuer and subject, or the client IP when anonymous. */
export function principalIdentity (request: FastifyRequest, clientIp: string): string {
  const p = request.principal
  if (p === null || p.type === 'anonymous') return `ip\0${clientIp}`
  return `${p.type}\0${p.issuer}\0${p.subject}`
}
