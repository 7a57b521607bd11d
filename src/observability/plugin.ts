import fp from 'fastify-plugin'
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import { meaningOf } from '../error-codes.js'
import { statusClass, type Metrics, type Outcome } from './metrics.js'
import { createAccessLog } from './logger.js'
import type { TallySeries } from './tally.js'
import type { HistogramSeries } from './histogram.js'
import { protocolOf } from '../lifecycle/http2.js'
import { routeOf } from '../pipeline/types.js'

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

/** What one request adds to the request metrics, for one route, method, outcome and status class. */
interface Cell {
  requests: TallySeries
  duration: HistogramSeries
}

/**
 * The request metrics' series, found by plain lookups of values the gateway chose (route ids from
 * config, the method set above, outcomes, status classes): the counters and the duration histogram
 * take no label object or label string per request (issue #19). Per gateway generation; bounded as
 * the labels are.
 */
function createRequestSeries (metrics: Metrics) {
  const cells = new Map<string, Map<string, Map<Outcome, Array<Cell | undefined>>>>()
  const protocols = new Map<string, TallySeries>()
  return {
    cell (route: string, method: string, outcome: Outcome, status: number): Cell {
      let byMethod = cells.get(route)
      if (byMethod === undefined) cells.set(route, byMethod = new Map())
      let byOutcome = byMethod.get(method)
      if (byOutcome === undefined) byMethod.set(method, byOutcome = new Map())
      let byClass = byOutcome.get(outcome)
      if (byClass === undefined) byOutcome.set(outcome, byClass = [])
      const index = Math.floor(status / 100)
      let cell = byClass[index]
      if (cell === undefined) {
        const status_class = statusClass(status)
        cell = byClass[index] = {
          requests: metrics.requestTally.series(`${route}\0${method}\0${outcome}\0${status_class}`, { route, method, outcome, status_class }),
          duration: metrics.requestDuration.series({ route, method, outcome })
        }
      }
      return cell
    },
    protocol (protocol: string): TallySeries {
      let series = protocols.get(protocol)
      if (series === undefined) protocols.set(protocol, series = metrics.protocolTally.series(protocol, { protocol }))
      return series
    }
  }
}

/**
 * Stage 7, observe: one access line per request that also carries the verdict (it is the decision
 * log too: decision_id, policy_revision, subject, allow, reasons), and the request metrics. Registered first so it sees every request, including those the guards refuse.
 */
const observe: FastifyPluginAsync<{ metrics: Metrics }> = async (app, { metrics }) => {
  app.decorateRequest('errorCode', null)
  const series = createRequestSeries(metrics)
  // The line as request.log.info(fields, msg) would write it, without the per-field cost (logger.ts).
  const access = createAccessLog(app.log, 'request completed')

  // Synchronous hooks take Fastify's callback: an async one costs a promise and a microtask turn per
  // request, for nothing to wait on. A throw still reaches Fastify's error path, as a rejection did.
  app.addHook('onRequest', (_request, _reply, done) => { metrics.requestsInFlight.count++; done() })
  app.addHook('onResponse', (request, reply, done) => {
    metrics.requestsInFlight.count--
    const route = routeOf(request)?.id ?? '-'
    const outcome = outcomeOf(request.errorCode, reply.statusCode)
    const method = METHODS.has(request.method) ? request.method : 'OTHER'
    const cell = series.cell(route, method, outcome, reply.statusCode)
    cell.requests.pending++
    const protocol = protocolOf(request.raw)
    series.protocol(protocol).pending++
    cell.duration.observe(reply.elapsedTime / 1000)
    access({
      request_id: request.id,
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
    })
    done()
  })
}

export const observePlugin = fp(observe, { name: 'gateway-observe', fastify: '5.x' })
