import fp from 'fastify-plugin'
import type { FastifyPluginAsync, RouteHandlerMethod } from 'fastify'
import type { Config } from '../../config/schema.js'
import { GW_ERR_ROUTE_NOT_FOUND } from '../../errors.js'
import type { RouteContext } from '../types.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The matched gateway route; absent only on the not-found handler. */
    gateway?: RouteContext
  }
}

export interface RouteTableOptions {
  config: Pick<Config, 'routes' | 'limits'>
  /** Stage 6: what an allowed request is handed to. */
  handler: RouteHandlerMethod
}

/**
 * Stage 2, route match: each configured prefix becomes two router entries (`/p` and `/p/*`) for its
 * methods; anything else is a 404 with no default route. The router sees only canonical paths because
 * the guard refuses the rest before any route's hooks run.
 */
const routeTable: FastifyPluginAsync<RouteTableOptions> = async (app, { config, handler }) => {
  app.decorateRequest('gatewayRoute', undefined) // routeOf (pipeline/types.ts) fills it on first read
  for (const route of config.routes) {
    const gateway: RouteContext = {
      id: route.id,
      prefix: route.prefix,
      upstream: route.upstream,
      stripPrefix: route.stripPrefix,
      authentication: route.authentication,
      maxBodyBytes: route.maxBodyBytes ?? config.limits.maxBodyBytes,
      ...(route.issuers !== undefined ? { issuers: route.issuers } : {}),
      metadata: route.metadata
    }
    const urls = route.prefix === '/' ? ['/', '/*'] : [route.prefix, `${route.prefix}/*`]
    for (const url of urls) {
      app.route({ method: [...route.methods], url, handler, config: { gateway } })
    }
  }
  app.setNotFoundHandler(async (request) => {
    throw new GW_ERR_ROUTE_NOT_FOUND(request.method, request.canonicalPath || '/')
  })
}

export const routePlugin = fp(routeTable, { name: 'gateway-route', fastify: '5.x', dependencies: ['gateway-guard'] })
