import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import { GW_ERR_GUARD_BAD_PATH, GW_ERR_GUARD_BODY_TOO_LARGE, GW_ERR_GUARD_METHOD } from '../../errors.js'
import { canonicalizeTarget } from './canonical-path.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The canonical path (no query): what the router, the policy and the upstream all see. */
    canonicalPath: string
    /** The raw query string, without "?". */
    rawQuery: string
  }
}

export interface GuardOptions {
  maxBodyBytes: number
}

const ALLOWED_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])
const ALLOW_HEADER = [...ALLOWED_METHODS].join(', ')

/** Stage 1, edge guards: refuse what is ambiguous or oversized before any identity or policy work. */
const guard: FastifyPluginAsync<GuardOptions> = async (app, opts) => {
  app.decorateRequest('canonicalPath', '')
  app.decorateRequest('rawQuery', '')

  app.addHook('onRequest', async (request, reply) => {
    if (!ALLOWED_METHODS.has(request.method)) {
      reply.header('allow', ALLOW_HEADER) // RFC 9110 §15.5.6
      throw new GW_ERR_GUARD_METHOD(request.method)
    }
    const verdict = canonicalizeTarget(request.raw.url ?? '')
    if (!verdict.ok) throw new GW_ERR_GUARD_BAD_PATH(verdict.reason)
    request.canonicalPath = verdict.path
    request.rawQuery = verdict.query
    const length = request.headers['content-length']
    if (length !== undefined && Number(length) > opts.maxBodyBytes) throw new GW_ERR_GUARD_BODY_TOO_LARGE()
  })
}

export const guardPlugin = fp(guard, { name: 'gateway-guard', fastify: '5.x' })
