import type { Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Dispatcher } from 'undici'
import type { RouteConfig } from '../../config/schema.js'
import {
  GW_ERR_GUARD_BAD_REQUEST, GW_ERR_INTERNAL, GW_ERR_UPSTREAM_BUSY, GW_ERR_UPSTREAM_RESPONSE_TOO_LARGE, GW_ERR_UPSTREAM_TOTAL_TIMEOUT
} from '../../errors.js'
import { statusClass, type Metrics } from '../../observability/metrics.js'
import { createStatusSeries } from '../../observability/histogram.js'
import { markUpstreamError } from '../error-reply.js'
import { isHttp2Request } from '../../lifecycle/http2.js'
import { buildUpstreamHeaders, copyResponseHeaders, type HeaderRules } from './headers.js'
import type { Credentials } from './credentials/index.js'
import { createChain } from './chain.js'
import { fail, type Exchange } from './exchange.js'
import { capBody, classify, limitBody } from './outcomes.js'
import { UpstreamCall, type UpstreamResponse } from './upstream-call.js'
import { closeUpstreams, cutOffUpstreams, type Upstream } from './upstreams.js'
import { routeOf } from '../types.js'

export interface Forwarder {
  /**
   * Resolves with the answer's body, which Fastify sends: resolving with the reply instead would make
   * Fastify wait for the response's end through stream listeners (Reply.then) on every request.
   */
  handle: (request: FastifyRequest, reply: FastifyReply) => Promise<Readable | Buffer>
  close: () => Promise<void>
  /** Drain timeout: ends every exchange still in flight (503 GW_ERR_UPSTREAM_SHUTDOWN before its head). */
  cutOff: () => Promise<void>
}

export interface ForwarderOptions {
  upstreams: Map<string, Upstream>
  routes: readonly RouteConfig[]
  metrics: Metrics
  /** Per-route credentials for the function (credentials/); none attached when absent. */
  credentials?: Credentials
  /** Per-upstream header rules (headers.ts createHeaderRules); the defaults when absent. */
  headerRules?: ReadonlyMap<string, HeaderRules>
}

/** A route's way to its function: the upstream, its chain, and the route's own values, else the upstream's. */
interface RouteForwarding {
  upstream: Upstream
  chain: Dispatcher
  /** The route's own; undefined: the upstream's, which exact-timeouts.ts applies without a copy. */
  headersTimeoutMs: number | undefined
  bodyTimeoutMs: number | undefined
  totalTimeoutMs: number
  maxResponseBytes: number
  /** The upstream's listener for an answer's body that fails after the head (made once, not per request). */
  onBodyError: (err: Error) => void
}

/**
 * Stage 6, forward: sends an allowed request to its function and streams the answer back. The path
 * sent is the canonical path the policy saw (minus the route prefix when the route strips it), under
 * the upstream's base path, so a client can never reach outside that base. What happens between the
 * decision and the function is the upstream's interceptor chain (chain.ts), built here once.
 */
// long: the per-request handler and what it closes over (per-caller cap, breaker, deadline, retry); issue 22 item 5 composes it from interceptors.
export function createForwarder ({ upstreams, routes, metrics, credentials, headerRules }: ForwarderOptions): Forwarder {
  const chains = new Map([...upstreams.values()].map(u => [u.id, createChain(u, { metrics, credentials })]))
  const bodyErrors = new Map([...upstreams.keys()].map(id => [id, (err: Error): void => {
    // The head has gone out: this only cuts the client's connection, but it is counted by its kind.
    if (!(err instanceof GW_ERR_UPSTREAM_TOTAL_TIMEOUT || err instanceof GW_ERR_UPSTREAM_RESPONSE_TOO_LARGE)) metrics.upstreamErrors.inc({ upstream: id, kind: classify(err).kind ?? 'failed' })
    markUpstreamError(err)
  }]))
  const upstreamDuration = createStatusSeries(metrics.upstreamDuration, (upstream, status) => ({ upstream, status_class: statusClass(status) }))
  const forwarding = new Map<string, RouteForwarding>()
  for (const r of routes) {
    const u = upstreams.get(r.upstream)
    if (u === undefined) continue
    forwarding.set(r.id, {
      upstream: u,
      chain: chains.get(u.id)!,
      headersTimeoutMs: r.timeouts?.headersMs,
      bodyTimeoutMs: r.timeouts?.bodyMs,
      totalTimeoutMs: r.timeouts?.totalMs ?? u.totalTimeoutMs,
      maxResponseBytes: r.maxResponseBytes ?? Infinity,
      onBodyError: bodyErrors.get(u.id)!
    })
  }

  return {
    // long: per-caller cap, circuit breaker, credentials, deadline and retry inline; issue 22 item 5 composes them from interceptors.
    async handle (request, reply) {
      const route = routeOf(request)
      const settings = route === undefined ? undefined : forwarding.get(route.id)
      if (route === undefined || settings === undefined || request.principal === null || request.decision === null) {
        throw new GW_ERR_INTERNAL() // the earlier stages guarantee these; refuse rather than forward
      }
      const { upstream, chain } = settings
      // A client that is already gone (or whose request broke off) gets nothing forwarded on its behalf.
      // (An HTTP/2 stream the client reset, as in a rapid-reset flood, shows only on the stream: closed,
      // and destroyed too unless the reset's code was NO_ERROR.)
      if (request.raw.destroyed || request.raw.errored !== null || reply.raw.destroyed ||
        (isHttp2Request(request.raw) && (request.raw.stream.destroyed || request.raw.stream.closed))) throw new GW_ERR_GUARD_BAD_REQUEST()
      let path = request.canonicalPath
      if (route.stripPrefix && route.prefix !== '/') path = path.slice(route.prefix.length) || '/'

      // HTTP/2 frames a body with DATA frames; content-length is optional there (nghttp2 holds the
      // frames to it when present), so a stream not ended with its headers has one.
      const hasBody = request.headers['transfer-encoding'] !== undefined ||
        (request.headers['content-length'] !== undefined && request.headers['content-length'] !== '0') ||
        (isHttp2Request(request.raw) && !request.raw.stream.endAfterHeaders)
      const body = hasBody ? limitBody(request.raw, route.maxBodyBytes) : null
      // The chain's last handler, and the exchange's abort signal: a client that goes away cancels the
      // upstream request (on, not once: 'close' comes once, and once() would wrap the listener).
      const call = new UpstreamCall(reply.raw, body, request.method)
      reply.raw.on('close', call.clientGone)
      request.raw.on('error', call.clientGone)
      const exchange: Exchange = {
        path: upstream.basePath + path + (request.rawQuery === '' ? '' : `?${request.rawQuery}`),
        method: request.method as Dispatcher.HttpMethod,
        headers: buildUpstreamHeaders(request.headers, {
          principal: request.principal,
          decision: request.decision,
          requestId: request.id,
          clientIp: request.clientAddress,
          host: request.headers.host,
          upstreamHost: upstream.host,
          rules: headerRules?.get(upstream.id)
        }),
        body,
        signal: call,
        headersTimeout: settings.headersTimeoutMs,
        bodyTimeout: settings.bodyTimeoutMs,
        routeId: route.id,
        host: upstream.host,
        principal: request.principal,
        requestId: request.id,
        clientIp: request.clientAddress,
        clientAuthorization: request.headers.authorization,
        client: reply.raw,
        log: request.log,
        totalTimeoutMs: settings.totalTimeoutMs,
        startedAt: 0
      }

      let response: UpstreamResponse
      try {
        try { chain.dispatch(exchange, call) } catch (err) { fail(call, err as Error) }
        response = await call.response
      } catch (err) {
        const { error, kind } = classify(err)
        if (kind === null) throw error // refused by the chain, which counted it
        metrics.upstreamErrors.inc({ upstream: upstream.id, kind })
        // A full queue is load shedding, not a failure: the access line and the metric say enough
        // (a warning per refused request would add to the load it sheds).
        if (error instanceof GW_ERR_UPSTREAM_BUSY) reply.header('retry-after', upstream.busyRetryAfter)
        else request.log.warn({ upstream: upstream.id, kind, err: (err as Error).message }, 'upstream request failed')
        throw error
      }
      const elapsed = response.headersAt - exchange.startedAt
      upstreamDuration(upstream.id, response.statusCode).observe(elapsed / 1000)
      return sendAnswer(request, reply, response, settings, elapsed, metrics)
    },
    async close () {
      await closeUpstreams(upstreams)
    },
    async cutOff () {
      await cutOffUpstreams(upstreams)
    }
  }
}

/**
 * The function's answer to the client: status and allowed headers set on the reply, and the body to
 * send, under the route's size cap (a body taken whole is within it: its declared length was checked).
 * Positional arguments: an options object would be one more allocation per request.
 */
function sendAnswer (request: FastifyRequest, reply: FastifyReply, response: UpstreamResponse, settings: RouteForwarding,
  elapsed: number, metrics: Metrics): Readable | Buffer {
  const { maxResponseBytes } = settings
  const upstream = settings.upstream.id
  const declared = Number(response.headers['content-length'] ?? 0)
  if (declared > maxResponseBytes) {
    // Cancels the exchange (and its deadline); undici errors a body destroyed unread: nothing to report.
    if (!Buffer.isBuffer(response.body)) response.body.on('error', () => {}).destroy()
    metrics.upstreamErrors.inc({ upstream, kind: 'response_too_large' })
    throw new GW_ERR_UPSTREAM_RESPONSE_TOO_LARGE()
  }
  request.upstreamStatus = response.statusCode
  request.upstreamMs = Math.round(elapsed * 1000) / 1000
  reply.code(response.statusCode)
  copyResponseHeaders(response.headers, reply)
  if (Buffer.isBuffer(response.body)) return response.body
  // on, not once: a stream emits 'error' once at most, and once() would wrap the listener.
  response.body.on('error', settings.onBodyError)
  return maxResponseBytes === Infinity
    ? response.body
    : capBody(response.body, maxResponseBytes, () => {
      metrics.upstreamErrors.inc({ upstream, kind: 'response_too_large' })
      request.log.warn({ upstream }, 'upstream response cut off at maxResponseBytes')
    })
}

declare module 'fastify' {
  interface FastifyRequest {
    upstreamStatus: number | null
    /** Milliseconds until the upstream answered with headers, for the access line. */
    upstreamMs: number | null
  }
}
