import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import type { Registry } from 'prom-client'
import type { Config } from '../config/schema.js'
import type { Health } from './health.js'
import { createAdminListener } from './listener.js'
import { renderStatusPage } from './status-page.js'

export interface AdminOptions {
  registry: Registry
  health: Health
  logLevel: string
  admin: Config['admin']
  limits: Config['limits']
  /** The gateway's public assertion keys, for functions that verify its assertions. */
  jwks?: () => { keys: unknown[] }
  /** Set when the listening socket is owned by the process (server.ts) and outlives this instance. */
  serverFactory?: FastifyServerOptions['serverFactory']
}

/**
 * The admin listener, separate from the public one and on loopback by default: metrics, liveness,
 * readiness and a status document. It serves nothing from the request path. Its protections (limits,
 * TLS, Host allow-list, reply headers) are in listener.ts.
 */
export function createAdminServer (opts: AdminOptions): FastifyInstance {
  const admin = createAdminListener({ admin: opts.admin, limits: opts.limits, logLevel: opts.logLevel, serverFactory: opts.serverFactory })
  admin.get('/metrics', async (_request, reply) => {
    reply.type(opts.registry.contentType)
    return opts.registry.metrics()
  })
  // Liveness: the process answers. Dependencies belong to readiness, so a down issuer never gets
  // the gateway restarted.
  admin.get('/healthz', async () => ({ status: 'ok' }))
  admin.get('/readyz', async (_request, reply) => {
    const r = opts.health.readiness()
    reply.code(r.ready ? 200 : 503)
    return { status: r.ready ? 'ready' : 'not ready', checks: r.checks, details: r.details }
  })
  admin.get('/status', async () => opts.health.status())
  // The same document for people, as a page.
  admin.get('/status.html', async (_request, reply) => {
    reply.type('text/html; charset=utf-8')
    return renderStatusPage(await opts.health.status())
  })
  const jwks = opts.jwks
  if (jwks !== undefined) {
    admin.get('/.well-known/jwks.json', async (_request, reply) => {
      // Short caching: a rotated key is published ahead of use, so a minute's delay is harmless.
      reply.header('cache-control', 'public, max-age=60')
      return jwks()
    })
  }
  return admin
}
