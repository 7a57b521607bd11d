import fp from 'fastify-plugin'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { isHttp2Request } from '../../lifecycle/http2.js'
import type { Metrics } from '../../observability/metrics.js'
import { routeOf, syncHook, type AuthnResult, type ClientCertificate, type Principal, type RouteContext } from '../types.js'
import { authenticateRequest } from './chain.js'
import { readPeerCertificate } from './client-cert.js'
import type { Authenticator } from './jwt.js'

declare module 'fastify' {
  interface FastifyRequest {
    principal: Principal | null
    /** The client certificate the TLS layer verified, whatever the route requires. */
    clientCertificate: ClientCertificate | null
  }
}

export interface AuthenticateOptions {
  jwt: Authenticator
  metrics: Metrics
}

// RFC 6750 §3.1: a request that is malformed (rather than carrying a bad token) is invalid_request.
const INVALID_REQUEST = new Set(['malformed', 'ambiguous', 'too_large', 'cert_missing', 'cert_untrusted', 'cert_binding_mismatch'])

/** Stage 3, authenticate: every routed request must yield a principal, or it ends here with 401. */
const authenticate: FastifyPluginAsync<AuthenticateOptions> = async (app, { jwt, metrics }) => {
  app.decorateRequest('principal', null)
  app.decorateRequest('clientCertificate', null)

  // A remembered token is judged without a promise (chain.ts); only a signature check waits.
  app.addHook('onRequest', syncHook((request, reply) => {
    const route = routeOf(request)
    if (route === undefined) return // not found: the route stage answers 404
    const raw = request.raw
    const peer = readPeerCertificate(raw.socket, isHttp2Request(raw) ? raw.stream.session ?? raw.socket : raw.socket)
    if (peer.state === 'verified') request.clientCertificate = peer.certificate
    const result = authenticateRequest({ headers: request.headers, rawHeaders: request.raw.rawHeaders, query: request.rawQuery, peer }, route, jwt)
    if (result instanceof Promise) return result.then(r => { apply(request, reply, route, r) })
    apply(request, reply, route, result)
  }))

  /** A principal for the request, or its refusal (thrown). */
  const apply = (request: FastifyRequest, reply: FastifyReply, route: RouteContext, result: AuthnResult): void => {
    if (result.kind === 'principal') {
      request.principal = result.principal
      return
    }
    if (result.kind === 'not-applicable') throw new Error('authentication returned not-applicable')
    metrics.authnFailures.inc({ route: route.id, reason: result.reason })
    request.authnReason = result.reason
    // RFC 6750 §3: say how to authenticate; name the error only when a token was actually presented.
    if (result.error.statusCode === 401) {
      reply.header('www-authenticate', result.reason === 'missing'
        ? 'Bearer realm="portcullis"'
        : `Bearer realm="portcullis", error="${INVALID_REQUEST.has(result.reason) ? 'invalid_request' : 'invalid_token'}"`)
    }
    throw result.error
  }
}

export const authenticatePlugin = fp(authenticate, {
  name: 'gateway-authenticate',
  fastify: '5.x',
  dependencies: ['gateway-guard']
})
