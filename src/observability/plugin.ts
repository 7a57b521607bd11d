import fp from 'fastify-plugin'
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import { meaningOf } from '../error-codes.js'
import { statusClass, type Metrics, type Outcome } from './metrics.js'
import { protocolOf } from '../lifecycle/http2.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The GW_ERR_* code the request ended with, if it was refused. */
    errorCode: string | null
  }
}

const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])

function outcomeOf (code: string | null, status: number): Outcome {
  if (code === null) return status >= 500 ? 'error' : 'forwarded'
  // Every code of ours has its outcome in the table; anything else is judged by its status.
  return meaningOf(code)?.outcome ?? (status < 500 ? 'bad_request' : 'error')
}

/** What the rate limit stage did: null when the request stopped before reaching it. */
function rateLimitOutcome (request: FastifyRequest): 'limited' | 'passed' | 'none' | null {
  if (request.errorCode === 'GW_ERR_RATE_LIMITED') return 'limited'
  const forwarded = request.upstreamStatus !== null || (request.errorCode !== null && meaningOf(request.errorCode)?.stage === 'upstream')
  if (!forwarded) return null
  return request.rateLimited === false ? 'passed' : 'none'
}

/**
 * Stage 7, observe: one access line per request that also carries the verdict (it is the decision
 * log too: decision_id, policy_revision, subject, allow, reasons), and the request metrics. Registered first so it sees every request, including those the guards refuse.
 */
const observe: FastifyPluginAsync<{ metrics: Metrics }> = async (app, { metrics }) => {
  app.decorateRequest('errorCode', null)

  // Synchronous hooks take Fastify's callback: an async one costs a promise and a microtask turn per
  // request, for nothing to wait on. A throw still reaches Fastify's error path, as a rejection did.
  app.addHook('onRequest', (_request, _reply, done) => { metrics.inFlight.inc(); done() })
  app.addHook('onResponse', (request, reply, done) => {
    metrics.inFlight.dec()
    const route = request.routeOptions.config.gateway?.id ?? '-'
    const outcome = outcomeOf(request.errorCode, reply.statusCode)
    const seconds = reply.elapsedTime / 1000
    const method = METHODS.has(request.method) ? request.method : 'OTHER'
    metrics.requests.inc({ route, method, outcome, status_class: statusClass(reply.statusCode) })
    const protocol = protocolOf(request.raw)
    metrics.requestsByProtocol.inc({ protocol })
    metrics.requestDuration.observe({ route, method, outcome }, seconds)
    request.log.info({
      access: true,
      method: request.method,
      protocol,
      path: request.canonicalPath || null, // never the raw target: its query may carry secrets
      status: reply.statusCode,
      duration_ms: Math.round(reply.elapsedTime * 1000) / 1000,
      client_ip: request.clientAddress,
      route_id: route,
      outcome,
      code: request.errorCode,
      subject: request.principal?.subject ?? null,
      principal_type: request.principal?.type ?? null,
      authn_reason: request.authnReason,
      decision_id: request.decisionId,
      policy_revision: request.policyRevision,
      allow: request.decision?.allow ?? null,
      reasons: request.decision?.reasons ?? null,
      rate_limit: rateLimitOutcome(request),
      upstream_status: request.upstreamStatus,
      upstream_ms: request.upstreamMs
    }, 'request completed')
    done()
  })
}

export const observePlugin = fp(observe, { name: 'gateway-observe', fastify: '5.x' })
