import { EventEmitter } from 'node:events'
import type { Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Dispatcher } from 'undici'
import type { RouteConfig } from '../../config/schema.js'
import {
  GW_ERR_GUARD_BAD_REQUEST, GW_ERR_INTERNAL, GW_ERR_UPSTREAM_BUSY, GW_ERR_RATE_CONCURRENCY, GW_ERR_UPSTREAM_RESPONSE_TOO_LARGE,
  GW_ERR_UPSTREAM_TOTAL_TIMEOUT, GW_ERR_UPSTREAM_UNAVAILABLE
} from '../../errors.js'
import { statusClass, type Metrics } from '../../observability/metrics.js'
import { markUpstreamError } from '../error-reply.js'
import { isHttp2Request } from '../../lifecycle/http2.js'
import { buildUpstreamHeaders, filterResponseHeaders, type HeaderRules } from './headers.js'
import type { Credentials } from './credentials/index.js'
import { capBody, classify, isRetryable, limitBody } from './outcomes.js'
import { closeUpstreams, cutOffUpstreams, type Upstream } from './upstreams.js'

export interface Forwarder {
  handle: (request: FastifyRequest, reply: FastifyReply) => Promise<FastifyReply>
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

/** What a route sets for its exchange with the function: its own values, else the upstream's. */
interface RouteForwarding { headersTimeoutMs: number, bodyTimeoutMs: number, totalTimeoutMs: number, maxResponseBytes: number }

// RFC 9110 §9.2.2. Only these are sent twice, only without a body, and only when the first attempt
// never reached the function (no connection): the retry cannot repeat an effect.
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE'])

/**
 * Stage 6, forward: sends an allowed request to its function and streams the answer back. The path
 * sent is the canonical path the policy saw (minus the route prefix when the route strips it), under
 * the upstream's base path, so a client can never reach outside that base.
 */
export function createForwarder ({ upstreams, routes, metrics, credentials, headerRules }: ForwarderOptions): Forwarder {
  const forwarding = new Map<string, RouteForwarding>()
  const circuitOpen = (upstream: string): Error => {
    metrics.upstreamErrors.inc({ upstream, kind: 'circuit_open' })
    return new GW_ERR_UPSTREAM_UNAVAILABLE()
  }
  for (const r of routes) {
    const u = upstreams.get(r.upstream)
    if (u === undefined) continue
    forwarding.set(r.id, {
      headersTimeoutMs: r.timeouts?.headersMs ?? u.headersTimeoutMs,
      bodyTimeoutMs: r.timeouts?.bodyMs ?? u.bodyTimeoutMs,
      totalTimeoutMs: r.timeouts?.totalMs ?? u.totalTimeoutMs,
      maxResponseBytes: r.maxResponseBytes ?? Infinity
    })
  }

  return {
    async handle (request, reply) {
      const route = request.routeOptions.config.gateway
      const upstream = route === undefined ? undefined : upstreams.get(route.upstream)
      const settings = route === undefined ? undefined : forwarding.get(route.id)
      if (route === undefined || upstream === undefined || settings === undefined || request.principal === null || request.decision === null) {
        throw new GW_ERR_INTERNAL() // the earlier stages guarantee these; refuse rather than forward
      }
      // A client that is already gone (or whose request broke off) gets nothing forwarded on its behalf.
      // (An HTTP/2 stream the client reset, as in a rapid-reset flood, shows only on the stream.)
      if (request.raw.destroyed || request.raw.errored !== null || reply.raw.destroyed ||
        (isHttp2Request(request.raw) && request.raw.stream.destroyed)) throw new GW_ERR_GUARD_BAD_REQUEST()
      let path = request.canonicalPath
      if (route.stripPrefix && route.prefix !== '/') path = path.slice(route.prefix.length) || '/'
      const target = upstream.basePath + path + (request.rawQuery === '' ? '' : `?${request.rawQuery}`)

      const headers = buildUpstreamHeaders(request.headers, {
        principal: request.principal,
        decision: request.decision,
        requestId: request.id,
        clientIp: request.clientAddress,
        host: request.headers.host,
        upstreamHost: upstream.host,
        rules: headerRules?.get(upstream.id)
      })
      // HTTP/2 frames a body with DATA frames; content-length is optional there (nghttp2 holds the
      // frames to it when present), so a stream not ended with its headers has one.
      const hasBody = request.headers['transfer-encoding'] !== undefined ||
        (request.headers['content-length'] !== undefined && request.headers['content-length'] !== '0') ||
        (isHttp2Request(request.raw) && !request.raw.stream.endAfterHeaders)
      // Per-caller cap on requests in flight, so one caller cannot use up the function's concurrency.
      // Checked, like the circuit, before any credential is made or any body buffered for signing.
      if (upstream.inFlight !== null) {
        const p = request.principal
        const who = p.type === 'anonymous' ? `ip ${request.clientAddress}` : `${p.issuer}\n${p.subject}`
        const n = upstream.inFlight.get(who) ?? 0
        if (n >= upstream.maxConcurrentPerIdentity) throw new GW_ERR_RATE_CONCURRENCY()
        upstream.inFlight.set(who, n + 1)
        const counts = upstream.inFlight
        reply.raw.once('close', () => {
          const left = (counts.get(who) ?? 1) - 1
          if (left <= 0) counts.delete(who)
          else counts.set(who, left)
        })
      }
      // The probe slot itself is taken only once the request is ready to go (admit() below): a
      // client that dawdles over its body must not hold the circuit half-open.
      const breaker = upstream.breaker
      if (breaker?.refusing() === true) throw circuitOpen(upstream.id)
      // The same for a full queue: no credential made for a request that could not be sent anyway.
      if (upstream.queue.full) {
        metrics.upstreamErrors.inc({ upstream: upstream.id, kind: 'queue_full' })
        reply.header('retry-after', upstream.busyRetryAfter)
        throw new GW_ERR_UPSTREAM_BUSY()
      }

      // What is sent: the client's body, or what the credentials made of it (buffered to be signed).
      const requestBody = credentials === undefined
        ? (hasBody ? limitBody(request.raw, route.maxBodyBytes) : null)
        : await credentials.attach({
          routeId: route.id, method: request.method, host: upstream.host, target, principal: request.principal, requestId: request.id,
          clientAuthorization: request.headers.authorization, headers, body: hasBody ? limitBody(request.raw, route.maxBodyBytes) : null, log: request.log
        })
      // Gone while its credentials were made: nothing is sent on its behalf.
      if (reply.raw.destroyed) throw new GW_ERR_GUARD_BAD_REQUEST()

      // A client that goes away cancels the upstream request, and so does the total deadline. undici
      // accepts an EventEmitter that emits 'abort' as a signal, which costs far less per request than
      // an AbortController (~10 us here).
      const abort = new EventEmitter()
      let body: Readable | null = null
      let timedOut = false
      const deadline = setTimeout(() => {
        timedOut = true
        if (body !== null) {
          // Past the head: the response is cut off, which the client sees as an incomplete body.
          const err = new GW_ERR_UPSTREAM_TOTAL_TIMEOUT()
          markUpstreamError(err)
          metrics.upstreamErrors.inc({ upstream: upstream.id, kind: 'total_timeout' })
          body.destroy(err)
        }
        abort.emit('abort')
      }, settings.totalTimeoutMs)
      reply.raw.once('close', () => {
        clearTimeout(deadline)
        if (!reply.raw.writableFinished) abort.emit('abort')
      })
      request.raw.once('error', () => abort.emit('abort'))

      const started = performance.now()
      let response: Dispatcher.ResponseData
      for (let attempt = 1; ; attempt++) {
        // Admitted while the circuit is not closed: this request is its probe.
        const probe = breaker !== null && breaker.state !== 'closed'
        if (breaker !== null && !breaker.admit()) {
          clearTimeout(deadline)
          throw circuitOpen(upstream.id)
        }
        try {
          response = await upstream.dispatcher.request({
            path: target,
            method: request.method as Dispatcher.HttpMethod,
            headers,
            body: requestBody, // only a request without a body is tried twice
            signal: abort,
            headersTimeout: settings.headersTimeoutMs,
            bodyTimeout: settings.bodyTimeoutMs
          })
          breaker?.succeeded()
          break
        } catch (err) {
          const { error, kind, transport } = classify(err, timedOut)
          if (transport) breaker?.failed()
          else if (probe) breaker?.abandoned() // only the probe's own slot is freed, never a second probe let in
          metrics.upstreamErrors.inc({ upstream: upstream.id, kind })
          if (attempt === 1 && upstream.retryConnectFailures && !hasBody && IDEMPOTENT.has(request.method) && isRetryable(err) && !reply.raw.destroyed) {
            metrics.upstreamRetries.inc({ upstream: upstream.id })
            request.log.info({ upstream: upstream.id, kind }, 'upstream connection failed; retrying once')
            continue
          }
          clearTimeout(deadline)
          // A full queue is load shedding, not a failure: the access line and the metric say enough
          // (a warning per refused request would add to the load it sheds).
          if (error instanceof GW_ERR_UPSTREAM_BUSY) reply.header('retry-after', upstream.busyRetryAfter)
          else request.log.warn({ upstream: upstream.id, kind, err: (err as Error).message }, 'upstream request failed')
          throw error
        }
      }
      metrics.upstreamDuration.observe({ upstream: upstream.id, status_class: statusClass(response.statusCode) },
        (performance.now() - started) / 1000)

      const declared = Number(response.headers['content-length'] ?? 0)
      if (declared > settings.maxResponseBytes) {
        clearTimeout(deadline)
        response.body.on('error', () => {}).destroy() // undici errors a body destroyed unread; nothing to report
        metrics.upstreamErrors.inc({ upstream: upstream.id, kind: 'response_too_large' })
        throw new GW_ERR_UPSTREAM_RESPONSE_TOO_LARGE()
      }
      request.upstreamStatus = response.statusCode
      request.upstreamMs = Math.round((performance.now() - started) * 1000) / 1000
      body = response.body
      response.body.once('error', (err: Error) => {
        // The head has gone out: this only cuts the client's connection, but it is counted by its kind.
        if (!(err instanceof GW_ERR_UPSTREAM_TOTAL_TIMEOUT || err instanceof GW_ERR_UPSTREAM_RESPONSE_TOO_LARGE)) metrics.upstreamErrors.inc({ upstream: upstream.id, kind: classify(err, false).kind })
        markUpstreamError(err)
      })
      reply.code(response.statusCode)
      reply.headers(filterResponseHeaders(response.headers))
      const out = settings.maxResponseBytes === Infinity
        ? response.body
        : capBody(response.body, settings.maxResponseBytes, () => {
          metrics.upstreamErrors.inc({ upstream: upstream.id, kind: 'response_too_large' })
          request.log.warn({ upstream: upstream.id }, 'upstream response cut off at maxResponseBytes')
        })
      return reply.send(out)
    },
    async close () {
      await closeUpstreams(upstreams)
    },
    async cutOff () {
      await cutOffUpstreams(upstreams)
    }
  }
}

declare module 'fastify' {
  interface FastifyRequest {
    upstreamStatus: number | null
    /** Milliseconds until the upstream answered with headers, for the access line. */
    upstreamMs: number | null
  }
}
