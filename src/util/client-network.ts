import { normalizeIP } from '@fastify/rate-limit'
import type { FastifyRequest } from 'fastify'

/*
 * Here, not in a stage: the rate limits and the bans both count a client by it, and a stage never
 * imports another.
 */

/**
 * The client address as a bucket key: the request's one client address (guard/client-address.ts),
 * with IPv6 clients grouped by /64 (one host can hold a whole /64).
 */
export function clientBucketIp (request: FastifyRequest): string {
  return normalizeIP(request.clientAddress)
}
