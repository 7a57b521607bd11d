import fp from 'fastify-plugin'
import rateLimit from '@fastify/rate-limit'
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import { GW_ERR_RATE_LIMITED } from '../../errors.js'
import type { Metrics } from '../../observability/metrics.js'

export interface RateLimitOptions {
  metrics: Metrics
}

/**
 * The key is the authenticated identity on one route: issuer and subject, never anything the client
 * can vary freely (a header, the raw path). Routes are matched on canonical paths, so `//x` or `/x/.`
 * cannot open a second bucket either.
 */
export function rateLimitKey (request: FastifyRequest): string {
  const route = request.routeOptions.config.gateway?.id ?? '-'
  const p = request.principal
  // Authentication runs first and fails closed, so a principal is always present here; the fallback
  // keeps a misordered pipeline limited per address rather than unlimited.
  return p === null ? `${route}\0ip\0${request.ip}` : `${route}\0${p.issuer}\0${p.subject}`
}

/**
 * Stage 5, rate limit: @fastify/rate-limit with an in-memory store, one bucket per identity and route.
 * Its hook is attached to each route, and route-level onRequest hooks run after the instance-level
 * authenticate and authorize hooks, so only allowed requests are counted.
 */
const limit: FastifyPluginAsync<RateLimitOptions> = async (app, { metrics }) => {
  // Translate the gateway route's limit into the plugin's per-route option before the plugin's own
  // onRoute hook (registered next) reads it.
  app.addHook('onRoute', (routeOptions) => {
    const gateway = routeOptions.config?.gateway
    if (gateway?.rateLimit === undefined) return
    routeOptions.config = {
      ...routeOptions.config,
      rateLimit: {
        max: gateway.rateLimit.max,
        timeWindow: gateway.rateLimit.windowSeconds * 1000,
        keyGenerator: rateLimitKey,
        onExceeded: () => metrics.rateLimited.inc({ route: gateway.id })
      }
    }
  })
  await app.register(rateLimit, {
    global: false,
    hook: 'onRequest',
    errorResponseBuilder: (_request, context) => new GW_ERR_RATE_LIMITED(Math.ceil(context.ttl / 1000))
  })
}

export const rateLimitPlugin = fp(limit, {
  name: 'gateway-rate-limit',
  fastify: '5.x',
  dependencies: ['gateway-authorize']
})
