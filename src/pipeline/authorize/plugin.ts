import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import {
  GW_ERR_AUTHN_MISSING, GW_ERR_AUTHZ_BAD_DECISION, GW_ERR_AUTHZ_DENIED, GW_ERR_AUTHZ_NOT_READY,
  GW_ERR_AUTHZ_POLICY_ABORTED, GW_ERR_AUTHZ_POLICY_ERROR, GW_ERR_AUTHZ_POLICY_TIMEOUT
} from '../../errors.js'
import type { DecisionLog } from '../../observability/decision-log.js'
import type { Metrics } from '../../observability/metrics.js'
import type { TallySeries } from '../../observability/tally.js'
import { DECISION_ID_HEADER } from '../../util/header-names.js'
import { routeOf, syncHook, type Decision, type PolicyInput } from '../types.js'
import { createDecisionReader } from './decision.js'
import { createPolicyInputWriter } from './input.js'
import { policyMasks } from './log-mask.js'
import { PolicyEvaluationFault } from './policy-engine.js'
import type { PolicyStore } from './policy-store.js'
import type { Shadow } from './shadow.js'


declare module 'fastify' {
  interface FastifyRequest {
    decision: Decision | null
    decisionId: string | null
    policyRevision: string | null
  }
}

export interface AuthorizeOptions {
  policy: PolicyStore
  metrics: Metrics
  decisionLog: DecisionLog
  /** Route ids whose policy entrypoint is not the default one. */
  routeEntrypoints: ReadonlyMap<string, string>
  /** The shadow policy (policy.shadow), offered each decision once it is made; it never changes one. */
  shadow?: Shadow
  /** Told of every evaluation (portcullis eval shows what the policy saw and said). */
  onEvaluated?: (request: FastifyRequest, evaluation: { entrypoint: string, input: PolicyInput, result: unknown }) => void
}

/**
 * Stage 4, authorize: the policy decides every routed request. No policy, an evaluation error, an
 * undefined or malformed decision: each refuses the request (fail closed) with its own code.
 */
// long: one evaluation with each of its fail-closed outcomes, its metrics, decision log and shadow, in the order they happen.
const authorize: FastifyPluginAsync<AuthorizeOptions> = async (app, { policy, metrics, decisionLog, routeEntrypoints, shadow, onEvaluated }) => {
  app.decorateRequest('decision', null)
  app.decorateRequest('decisionId', null)
  app.decorateRequest('policyRevision', null)

  const writeInput = createPolicyInputWriter()
  const toDecision = createDecisionReader()
  // The decisions counter's series per route, counted as plain numbers (observability/tally.ts).
  const decided = new Map<string, Record<'allow' | 'deny' | 'error', TallySeries>>()
  const count = (routeId: string, result: 'allow' | 'deny' | 'error'): void => {
    let series = decided.get(routeId)
    if (series === undefined) {
      const one = (r: typeof result): TallySeries => metrics.policyDecisionTally.series(`${routeId}\0${r}`, { route: routeId, result: r })
      decided.set(routeId, series = { allow: one('allow'), deny: one('deny'), error: one('error') })
    }
    series[result].pending++
  }
  const policyDuration = metrics.policyDuration.series({})
  // Synchronous (syncHook in pipeline/types.ts: no promise per request); a throw is the refusal.
  const decide = (request: FastifyRequest, reply: FastifyReply): void => {
    const route = routeOf(request)
    if (route === undefined) return
    if (request.principal === null) throw new GW_ERR_AUTHN_MISSING() // unreachable unless stages are misordered
    const engine = policy.current
    if (engine === null) throw new GW_ERR_AUTHZ_NOT_READY()

    // Written once as JSON text: the active policy and the shadow judge the same text; the document
    // itself is made only for those who read it (portcullis eval, the decision log).
    const inputJson = writeInput(request, route, Date.now())
    const entrypoint = routeEntrypoints.get(route.id) ?? engine.entrypoint
    request.decisionId = randomUUID()
    // On every answer from here on; the forward stage drops a function's own (GATEWAY_ANSWER).
    reply.header(DECISION_ID_HEADER, request.decisionId)
    const started = performance.now() // not hrtime.bigint(): no BigInt per request
    let value: unknown
    let failure: Error & { code: string } | undefined
    try {
      value = engine.evaluateJson(inputJson, entrypoint)
    } catch (err) {
      failure = refusalFor(err)
      count(route.id, 'error')
      request.log.error({ decision_id: request.decisionId, policy_revision: engine.revision, code: failure.code, err }, 'policy evaluation failed')
      throw failure
    } finally {
      const ns = Math.round((performance.now() - started) * 1e6) // the decision log's is an integer
      policyDuration.observe(ns / 1e9)
      const input = onEvaluated !== undefined || decisionLog.enabled ? JSON.parse(inputJson) as PolicyInput : null
      if (input !== null) onEvaluated?.(request, { entrypoint, input, result: value })
      if (input !== null && decisionLog.enabled) {
        const masks = policyMasks(engine, input, value, err => {
          request.log.error({ decision_id: request.decisionId, err }, 'decision log mask policy failed; input and result left out')
        })
        decisionLog.record({
          ...(masks !== undefined ? { masks } : {}),
          decision_id: request.decisionId,
          path: entrypoint,
          input,
          result: value,
          bundles: { authz: { revision: engine.revision } },
          requested_by: request.clientAddress,
          metrics: { timer_rego_query_eval_ns: ns },
          ...(failure !== undefined ? { error: { code: failure.code, message: failure.message } } : {})
        })
      }
    }
    // Queued only: the shadow judges after this request has its answer, off its path.
    shadow?.offer({ route: route.id, decisionId: request.decisionId, entrypoint, inputJson, result: value, engine })
    const decision = toDecision(value)
    // The decision is logged once, on the request's access line (observability/plugin.ts), which
    // carries decision_id, policy_revision, allow and reasons; only a malformed one gets its own line.
    request.policyRevision = engine.revision
    if (decision === null) {
      request.log.warn({ decision_id: request.decisionId, policy_revision: engine.revision, route_id: route.id }, 'policy returned a malformed decision')
      count(route.id, 'error')
      throw new GW_ERR_AUTHZ_BAD_DECISION()
    }
    request.decision = decision
    count(route.id, decision.allow ? 'allow' : 'deny')
    const clientHeaders = decision.headers.client
    for (const name in clientHeaders) reply.header(name, clientHeaders[name]!)
    if (!decision.allow) {
      const denied = new GW_ERR_AUTHZ_DENIED()
      if (decision.status !== undefined) (denied as { statusCode: number }).statusCode = decision.status
      // RFC 9110 §15.5.2: every 401 carries a challenge, also when the policy chose the status.
      if (decision.status === 401) reply.header('www-authenticate', 'Bearer realm="portcullis"')
      if (decision.message !== undefined) denied.message = decision.message
      throw denied
    }
  }
  app.addHook('onRequest', syncHook(decide))
}

/**
 * A faulted evaluation (trap, abort, timeout) is 503: the engine has already replaced its instance,
 * and nothing about the request was judged. Any other error is the policy's (500).
 */
function refusalFor (err: unknown): Error & { code: string } {
  if (!(err instanceof PolicyEvaluationFault)) return new GW_ERR_AUTHZ_POLICY_ERROR()
  if (err.reason === 'timeout') return new GW_ERR_AUTHZ_POLICY_TIMEOUT()
  if (err.reason === 'trap' || err.reason === 'abort') return new GW_ERR_AUTHZ_POLICY_ABORTED()
  return new GW_ERR_AUTHZ_POLICY_ERROR()
}

export const authorizePlugin = fp(authorize, {
  name: 'gateway-authorize',
  fastify: '5.x',
  dependencies: ['gateway-authenticate']
})
