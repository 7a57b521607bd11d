import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import type { Metrics } from '../../observability/metrics.js'
import type { Principal } from '../types.js'
import { runAuthenticators } from './chain.js'
import type { Authenticator } from './jwt.js'

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null
  }
}

export interface AuthenticateOptions {
  authenticators: readonly Authenticator[]
  metrics: Metrics
}

/** Stage 3, authenticate: every routed request must yield a principal, or it ends here with 401. */
const authenticate: FastifyPluginAsync<AuthenticateOptions> = async (app, { authenticators, metrics }) => {
  app.decorateRequest('principal', null)

  app.addHook('onRequest', async (request, reply) => {
    const route = request.routeOptions.config.gateway
    if (route === undefined) return // not found: the route stage answers 404
    const result = await runAuthenticators(authenticators, request.headers, route)
    if (result.kind === 'principal') {
      request.principal = result.principal
      return
    }
    if (result.kind === 'not-applicable') throw new Error('authenticator chain returned not-applicable')
    metrics.authnFailures.inc({ route: route.id, reason: result.reason })
    // RFC 6750 §3: say how to authenticate; name the error only when a token was actually presented.
    if (result.error.statusCode === 401) {
      reply.header('www-authenticate', result.reason === 'missing'
        ? 'Bearer realm="portcullis"'
        : `Bearer realm="portcullis", error="${result.reason === 'malformed' ? 'invalid_request' : 'invalid_token'}"`)
    }
    throw result.error
  })
}

export const authenticatePlugin = fp(authenticate, {
  name: 'gateway-authenticate',
  fastify: '5.x',
  dependencies: ['gateway-guard']
})
