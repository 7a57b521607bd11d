import { randomUUID, X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { Socket } from 'node:net'
import Fastify, { type FastifyInstance, type FastifyServerOptions, type RouteHandlerMethod } from 'fastify'
import { createAdminServer } from './admin/server.js'
import { readAdminToken, registerAdminApi } from './admin/api.js'
import { createHealth, type Health } from './admin/health.js'
import type { Config } from './config/schema.js'
import { GW_ERR_GUARD_BAD_PATH, GW_ERR_GUARD_BAD_REQUEST } from './errors.js'
import { applyServerLimits, fastifyLimits, serverOptions } from './lifecycle/server-limits.js'
import { createCloseRegistry, type CloseRegistry } from './lifecycle/close-registry.js'
import { createProcessState, type ProcessState } from './lifecycle/process-state.js'
import { UNROUTABLE_METHOD } from './lifecycle/listener.js'
import { lazyRequestLogger, loggerOptions, quietRequestLogging } from './observability/logger.js'
import type { Metrics } from './observability/metrics.js'
import { observePlugin } from './observability/plugin.js'
import { createTracing, untraced } from './observability/tracing.js'
import { createClientErrorReplier, createErrorReplier, createMethodRefuser } from './pipeline/error-reply.js'
import type { Stage, StageServices } from './pipeline/types.js'
import { createRouteStage } from './pipeline/route/stage.js'
import { ALLOW_HEADER } from './pipeline/guard/plugin.js'
import { serveExpectations } from './pipeline/guard/expect.js'
import { createGuardStage } from './pipeline/guard/stage.js'
import { createRateLimitStages } from './pipeline/rate-limit/stage.js'
import { createDenyListStages, type DenyListStages } from './pipeline/deny-list/stage.js'
import type { KeySource } from './pipeline/authenticate/key-source.js'
import { createAuthenticateStage, type AuthenticateStage } from './pipeline/authenticate/stage.js'
import type { AuthorizeOptions } from './pipeline/authorize/plugin.js'
import type { PolicyStore } from './pipeline/authorize/policy-store.js'
import { createAuthorizeStage, type AuthorizeStage } from './pipeline/authorize/stage.js'
import { createForwardStage, type ForwardStage } from './pipeline/forward/stage.js'
import { createCertificateExpiry, type CertificateExpiry } from './tls/expiry.js'
import { tlsServerOptions } from './tls/server-tls.js'
import { http2ServerOptions } from './lifecycle/http2.js'
import { watchHttp2Abuse } from './lifecycle/http2-abuse.js'

export interface Gateway {
  /** The public listener: the request path. */
  app: FastifyInstance
  /** The admin listener: /metrics, /healthz, /readyz, /status. */
  admin: FastifyInstance
  metrics: Metrics
  policy: PolicyStore
  keySources: ReadonlyMap<string, KeySource>
  /** Readiness checks and status sections: other parts add theirs here. */
  health: Health
  /** Called when this gateway starts serving: process-wide gauges (issuer key ages) follow it. */
  activate: () => void
  close: () => Promise<void>
  /** Drain timeout reached: exchanges still waiting on a function end with a coded 503 now. */
  cutOff: () => Promise<void>
}

/**
 * The public listener's TLS (tls/server-tls.ts: Mozilla intermediate unless configured). With a client
 * CA, every client is asked for a certificate and OpenSSL verifies it, but the handshake does not fail
 * without one: routes decide what they require.
 */
function httpsOptions (tls: NonNullable<Config['listen']['tls']>, limits: Config['limits'], http2: boolean) {
  return {
    ...serverOptions(limits),
    ...tlsServerOptions(tls, false),
    handshakeTimeout: limits.headersTimeoutMs,
    ...(http2 ? http2ServerOptions(limits) : {})
  }
}

/** `Strict-Transport-Security` as configured, or null when the listener sends none. */
function hstsValue (tls: Config['listen']['tls']): string | null {
  const hsts = tls?.hsts
  if (hsts === undefined) return null
  return [`max-age=${hsts.maxAgeSeconds}`, ...(hsts.includeSubDomains ? ['includeSubDomains'] : []), ...(hsts.preload ? ['preload'] : [])].join('; ')
}

export interface GatewayOptions {
  /** How often to look for a changed bundle file; 0 turns watching off (tests). */
  bundleWatchIntervalMs?: number
  /**
   * What outlives this instance (metrics, revocations, bans, rate-limit counters, issuer keys, Redis
   * stores and sync): server.ts keeps one per process and hands it to each gateway it builds. Without
   * it the gateway has a process state of its own, closed with it.
   */
  process?: ProcessState
  /** Set when server.ts owns the sockets (lifecycle/listener.ts): one each for public and admin. */
  serverFactory?: FastifyServerOptions['serverFactory']
  adminServerFactory?: FastifyServerOptions['serverFactory']
  /**
   * Evaluate without forwarding (portcullis eval): every stage runs as configured, but a request
   * that passes them all is answered by this handler instead of the function.
   */
  evaluateOnly?: { handler: RouteHandlerMethod, onEvaluated: NonNullable<AuthorizeOptions['onEvaluated']> }
}

/**
 * The request path, in the order requests meet it. Route match runs first (the router picks the route
 * before any hook runs); each stage after it refuses what it must, and only a request that passed them
 * all reaches the forward stage, the route handler. docs/architecture.md shows this list (a test
 * checks that they agree).
 */
export const REQUEST_PATH = ['route', 'guard', 'pre-auth limit', 'client ban', 'authenticate', 'revocation', 'authorize', 'rate limit', 'forward'] as const
export type StageName = typeof REQUEST_PATH[number]

/** The public listener: Fastify's options and what Node's server does before any stage runs. */
function createPublicApp (config: Config, metrics: Metrics, serverFactory: GatewayOptions['serverFactory']): FastifyInstance {
  const errorReplier = createErrorReplier(metrics)
  // Fastify's logger exists only once the instance does; the handler is called after that.
  let clientErrorReplier = (_err: NodeJS.ErrnoException, socket: Socket): void => { socket.destroy() }
  const tls = config.listen.tls
  const app = Fastify({
    logger: loggerOptions(config.logging.level),
    logController: quietRequestLogging(),
    childLoggerFactory: lazyRequestLogger, // made when first used: most requests log only the access line
    ...(tls !== undefined ? { https: httpsOptions(tls, config.limits, config.listen.http2) } : { http: serverOptions(config.limits) }),
    // Only used when Fastify makes the server itself (no serverFactory); Fastify reads the protocol per request.
    ...(tls !== undefined && config.listen.http2 ? { http2: true as never } : {}),
    ...(serverFactory !== undefined ? { serverFactory } : {}),
    bodyLimit: config.limits.maxBodyBytes,
    ...fastifyLimits(config.limits),
    maxRequestsPerSocket: 0,
    exposeHeadRoutes: false,
    clientErrorHandler: (err, socket) => clientErrorReplier(err, socket),
    // The router refuses what it cannot decode before any hook runs; answer that as a bad path.
    frameworkErrors: (error, request, reply) => errorReplier(error.code === 'FST_ERR_BAD_URL'
      ? new GW_ERR_GUARD_BAD_PATH('invalid percent-encoding')
      : new GW_ERR_GUARD_BAD_REQUEST(), request, reply),
    return503OnClosing: true,
    trustProxy: false,
    // Random ids: unique across replicas and restarts, and never taken from a client header.
    genReqId: () => randomUUID(),
    routerOptions: { caseSensitive: true, ignoreTrailingSlash: false, ignoreDuplicateSlashes: false }
  })
  clientErrorReplier = createClientErrorReplier(metrics, app.log)
  // A proxy never parses bodies: every content type passes through untouched and is streamed upstream.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, _payload, done) => { done(null) })
  app.setErrorHandler(errorReplier)
  // Written by more than one stage (pipeline/types.ts), so decorated here rather than by either.
  app.decorateRequest('authnReason', null)
  guardServer(app, config, metrics)
  // Set last, so that a function's own Strict-Transport-Security cannot weaken the listener's.
  const hsts = hstsValue(tls)
  if (hsts !== null) app.addHook('onSend', (_request, reply, payload, done) => { reply.header('strict-transport-security', hsts); done(null, payload) })
  return app
}

/** Node's server, before any parsing of ours (lifecycle/server-limits.ts): limits, CONNECT, Expect, silence. */
function guardServer (app: FastifyInstance, config: Config, metrics: Metrics): void {
  const tls = config.listen.tls
  applyServerLimits(app.server, config.limits, tls !== undefined)
  if (tls !== undefined && config.listen.http2) watchHttp2Abuse(app.server, config, metrics, app.log)
  const refuseMethod = createMethodRefuser(metrics, ALLOW_HEADER)
  app.server.on('connect', refuseMethod)
  app.server.on(UNROUTABLE_METHOD, refuseMethod)
  // Requests with an Expect reach Fastify like any other (Node would answer a bare 417, or a loose
  // 100 Continue); the guard refuses all but 100-continue. When lifecycle/listener.ts owns the socket,
  // it does the same itself and this stub never sees one.
  serveExpectations(app.server, (req, res) => app.server.emit('request', req, res))
  // Node's head timer starts at the first byte: a connection that never sends one is closed here.
  // On TLS, both the raw connection (no ClientHello ever) and the secured one (no request ever).
  const closeIfSilent = (socket: Socket): void => {
    // bytesRead, not a 'data' listener: the HTTP parser may consume the socket without emitting data.
    const idle = setTimeout(() => { if (socket.bytesRead === 0) socket.destroy() }, config.limits.headersTimeoutMs)
    idle.unref()
    socket.once('close', () => clearTimeout(idle))
  }
  app.server.on('connection', closeIfSilent)
  if (tls !== undefined) app.server.on('secureConnection', closeIfSilent)
}

/**
 * The listener's own certificate: ready only while it is valid, and shown in /status. (Every other
 * certificate file is reported by the stage that holds it; upstream pairs and CAs as they reload.)
 */
function reportListenerCertificate (tls: Config['listen']['tls'], health: Health, certificates: CertificateExpiry): void {
  certificates.file('listener/client-ca', tls?.clientCa)
  const cert = tls !== undefined ? new X509Certificate(readFileSync(tls.cert)) : undefined
  if (cert !== undefined) {
    const notAfter = new Date(cert.validTo)
    certificates.set('listener', notAfter.getTime())
    health.addCheck('certificate:listener', () => {
      const now = Date.now()
      const ok = now >= new Date(cert.validFrom).getTime() && now < notAfter.getTime()
      return { ok, detail: `${ok ? 'valid' : 'not valid now'}; expires ${notAfter.toISOString()}` }
    })
  }
  health.addStatus('certificates', () => cert === undefined
    ? []
    : [{ name: 'listener', subject: cert.subject, not_after: new Date(cert.validTo).toISOString() }])
}

interface Stages extends Record<StageName, Stage> {
  authenticate: AuthenticateStage
  authorize: AuthorizeStage
  forward: ForwardStage
  denyList: DenyListStages
}

/** Every stage, each from its config slice; they register their own readiness, status and certificates. */
async function buildStages (config: Config, services: StageServices, opts: GatewayOptions): Promise<Stages> {
  const authenticate = await createAuthenticateStage(config, services)
  const authorize = await createAuthorizeStage(config, services, {
    ...(opts.bundleWatchIntervalMs !== undefined ? { bundleWatchIntervalMs: opts.bundleWatchIntervalMs } : {}),
    ...(opts.evaluateOnly !== undefined ? { onEvaluated: opts.evaluateOnly.onEvaluated } : {})
  })
  const forward = await createForwardStage(config, services, { checkCredentials: opts.evaluateOnly === undefined })
  const rateLimit = await createRateLimitStages(config, services)
  const denyList = await createDenyListStages(config, services)
  return {
    route: createRouteStage(config, services, opts.evaluateOnly?.handler ?? forward.handler),
    guard: createGuardStage(config),
    'pre-auth limit': rateLimit.preAuth,
    'client ban': denyList.clientBan,
    authenticate,
    revocation: denyList.revocation,
    authorize,
    'rate limit': rateLimit.main,
    forward,
    denyList
  }
}

/**
 * Registers the request path. Hooks run in the order they are added, so the stages are registered in
 * REQUEST_PATH order, except route match: it is registered last, so that its routes carry the hooks of
 * every stage before it (it runs first all the same: the router picks a route before any hook).
 */
async function registerRequestPath (app: FastifyInstance, stages: Stages, metrics: Metrics, closer: CloseRegistry, tracingConfig: Config['tracing']): Promise<void> {
  // Spans per stage when tracing is configured; otherwise each stage is registered as it is.
  const tracing = createTracing(tracingConfig)
  closer.add('tracing', () => tracing?.close())
  closer.add('public listener', () => app.close())
  const traced = tracing?.traced ?? untraced
  await app.register(observePlugin, { metrics }) // sees every request, refused or not
  if (tracing !== undefined) await app.register(tracing.plugin)
  for (const name of [...REQUEST_PATH.slice(1), REQUEST_PATH[0]]) {
    const { plugin, options, span } = stages[name]
    await app.register(span === undefined ? plugin : traced(name, plugin, { open: span === 'open' }), options)
  }
}

/**
 * Builds a gateway from a validated config. Everything the request path reads (key sources, the
 * policy, connection pools, route table) is built here, once; requests only read it.
 */
export async function createGateway (config: Config, opts: GatewayOptions = {}): Promise<Gateway> {
  const own = opts.process === undefined ? createProcessState() : null
  const proc = opts.process ?? own!
  const app = createPublicApp(config, proc.metrics, opts.serverFactory)
  // What is built is closed again if a later step fails (a reload that is refused must not leave
  // watchers, timers, pools or a Redis client behind), and all of it when the gateway is retired.
  const closer = createCloseRegistry(app.log)
  if (own !== null) closer.add('process state', () => own.close())
  try {
    const gateway = await buildGateway(config, proc, opts, app, closer)
    if (own !== null) gateway.activate()
    return gateway
  } catch (err) {
    await closer.close().catch(() => {})
    throw err
  }
}

async function buildGateway (config: Config, proc: ProcessState, opts: GatewayOptions, app: FastifyInstance, closer: CloseRegistry): Promise<Gateway> {
  const { metrics } = proc
  const health = createHealth()
  const certificates = createCertificateExpiry(metrics.certificateNotAfter)
  const services: StageServices = { log: app.log, metrics, health, closer, certificates, process: proc }
  const adminToken = readAdminToken(config.admin.tokenFile)
  const stages = await buildStages(config, services, opts)
  await registerRequestPath(app, stages, metrics, closer, config.tracing)
  reportListenerCertificate(config.listen.tls, health, certificates)

  const admin = createAdminServer({
    registry: metrics.registry,
    health,
    logLevel: config.logging.level,
    admin: config.admin,
    limits: config.limits,
    jwks: stages.forward.jwks,
    ...(opts.adminServerFactory !== undefined ? { serverFactory: opts.adminServerFactory } : {})
  })
  closer.add('admin listener', () => admin.close())
  if (adminToken !== undefined) {
    const { revocations, bans } = proc.denyList
    registerAdminApi(admin, { token: () => adminToken, revocations, bans, ...stages.denyList.writers, maxTtlSeconds: config.revocation.maxTtlSeconds })
  }
  return {
    app,
    admin,
    metrics,
    policy: stages.authorize.policy,
    keySources: stages.authenticate.keySources,
    health,
    activate: stages.authenticate.activate,
    cutOff: stages.forward.cutOff,
    close: closer.close
  }
}
