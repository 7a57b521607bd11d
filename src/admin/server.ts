import Fastify, { type FastifyInstance } from 'fastify'
import type { Registry } from 'prom-client'
import { loggerOptions, quietRequestLogging } from '../observability/logger.js'

export interface Readiness {
  ready: boolean
  checks: Record<string, boolean>
  /** Informational state that does not decide readiness (e.g. the rate-limit store). */
  detail?: Record<string, unknown>
}

export interface AdminOptions {
  registry: Registry
  readiness: () => Readiness
  status: () => Record<string, unknown>
  logLevel: string
  /** The gateway's public assertion keys, for functions that verify its assertions. */
  jwks?: () => { keys: unknown[] }
}

/**
 * The admin listener, separate from the public one and on loopback by default: metrics, liveness,
 * readiness and a status document. It serves nothing from the request path.
 */
export function createAdminServer (opts: AdminOptions): FastifyInstance {
  const admin = Fastify({ logger: loggerOptions(opts.logLevel), logController: quietRequestLogging() })
  admin.get('/metrics', async (_request, reply) => {
    reply.type(opts.registry.contentType)
    return opts.registry.metrics()
  })
  admin.get('/healthz', async () => ({ status: 'ok' }))
  admin.get('/readyz', async (_request, reply) => {
    const r = opts.readiness()
    reply.code(r.ready ? 200 : 503)
    return { status: r.ready ? 'ready' : 'not ready', checks: r.checks, ...(r.detail !== undefined ? { detail: r.detail } : {}) }
  })
  admin.get('/status', async () => opts.status())
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
