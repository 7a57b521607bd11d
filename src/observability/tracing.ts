import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyPluginAsync, FastifyPluginOptions, FastifyRequest } from 'fastify'
import { defaultTextMapGetter, defaultTextMapSetter, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span } from '@opentelemetry/api'
import { createRequire } from 'node:module'
import type * as OtelCore from '@opentelemetry/core'
import type * as OtelExporter from '@opentelemetry/exporter-trace-otlp-http'
import type * as OtelResources from '@opentelemetry/resources'
import type * as OtelSdk from '@opentelemetry/sdk-trace-base'
import type { Config } from '../config/schema.js'
import { routeOf } from '../pipeline/types.js'

/*
 * OpenTelemetry spans for the request path, exported over OTLP/HTTP. Off unless `tracing.otlpUrl` is
 * set, and then nothing is registered at all: no hooks, no per-request objects (a client's own
 * traceparent still passes through untouched). On, each request gets a server span (child of the
 * client's W3C traceparent when it sent one) with one child per stage, and the function receives a
 * traceparent naming the gateway's upstream span, so its own spans join the same trace.
 */

type Traced = <O extends FastifyPluginOptions>(name: string, stage: FastifyPluginAsync<O>, opts?: { open?: boolean }) => FastifyPluginAsync<O>

/** Without tracing, a stage is registered as it is. */
export const untraced: Traced = (_name, stage) => stage

interface RequestTrace { root: Span, ctx: Context, stage: Span | undefined }

export interface Tracing {
  /** Registered right after observe: opens the request span, closes everything at the response. */
  plugin: FastifyPluginAsync
  /** Wraps a stage plugin in a span; `open` leaves it to be closed by the next stage (rate limit). */
  traced: Traced
  close: () => Promise<void>
}

declare module 'fastify' {
  interface FastifyRequest {
    trace: RequestTrace | null
  }
}

// The SDK and its exporter (~15 MiB of RSS) are loaded only by a gateway that traces.
const load = createRequire(import.meta.url)

export function createTracing (config: Config['tracing']): Tracing | undefined {
  if (config.otlpUrl === undefined) return undefined
  const { W3CTraceContextPropagator } = load('@opentelemetry/core') as typeof OtelCore
  const { OTLPTraceExporter } = load('@opentelemetry/exporter-trace-otlp-http') as typeof OtelExporter
  const { resourceFromAttributes } = load('@opentelemetry/resources') as typeof OtelResources
  const { BasicTracerProvider, BatchSpanProcessor } = load('@opentelemetry/sdk-trace-base') as typeof OtelSdk
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': config.serviceName }),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: config.otlpUrl }))]
  })
  const tracer = provider.getTracer('portcullis')
  const propagator = new W3CTraceContextPropagator()

  const begin = (request: FastifyRequest, name: string, kind = SpanKind.INTERNAL): void => {
    const t = request.trace
    if (t === null) return
    t.stage?.end()
    t.stage = tracer.startSpan(name, { kind }, t.ctx)
  }
  const end = (request: FastifyRequest): void => {
    const t = request.trace
    if (t === null) return
    t.stage?.end()
    t.stage = undefined
  }

  const plugin = fp(async app => {
    app.decorateRequest('trace', null)
    app.addHook('onRequest', async request => {
      const parent = propagator.extract(ROOT_CONTEXT, request.headers, defaultTextMapGetter)
      const root = tracer.startSpan('portcullis request', { kind: SpanKind.SERVER, attributes: { 'http.request.method': request.method } }, parent)
      request.trace = { root, ctx: trace.setSpan(parent, root), stage: undefined }
    })
    app.addHook('preHandler', async request => {
      if (request.trace === null || routeOf(request) === undefined) return
      begin(request, 'upstream', SpanKind.CLIENT)
      // The forwarder copies the client's headers; these two now name the gateway's upstream span.
      delete request.headers.tracestate
      propagator.inject(trace.setSpan(request.trace.ctx, request.trace.stage!), request.headers, defaultTextMapSetter)
    })
    app.addHook('onResponse', async (request, reply) => {
      const t = request.trace
      if (t === null) return
      const failed = request.errorCode !== null || reply.statusCode >= 500
      if (failed) t.stage?.setStatus({ code: SpanStatusCode.ERROR, message: request.errorCode ?? String(reply.statusCode) })
      t.stage?.end()
      t.root.setAttributes({
        'http.route': routeOf(request)?.id ?? '-',
        'http.response.status_code': reply.statusCode,
        ...(request.errorCode !== null ? { 'portcullis.error_code': request.errorCode } : {})
      })
      if (failed) t.root.setStatus({ code: SpanStatusCode.ERROR, message: request.errorCode ?? String(reply.statusCode) })
      t.root.end()
    })
  }, { name: 'gateway-tracing', fastify: '5.x' })

  const traced: Traced = <O extends FastifyPluginOptions>(name: string, stage: FastifyPluginAsync<O>, opts: { open?: boolean } = {}) =>
    fp(async (app: FastifyInstance, options: O) => {
      app.addHook('onRequest', async request => { begin(request, name) })
      await app.register(stage, options)
      if (opts.open !== true) app.addHook('onRequest', async request => { end(request) })
    })

  return {
    plugin,
    traced,
    close: async () => provider.shutdown()
  }
}
