import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { Socket } from 'node:net'
import Fastify, { type FastifyInstance, type RouteHandlerMethod } from 'fastify'
import { Registry } from 'prom-client'
import { createAdminServer } from './admin/server.js'
import type { Config } from './config/schema.js'
import { createMetrics, type Metrics } from './observability/metrics.js'
import { loggerOptions, quietRequestLogging } from './observability/logger.js'
import { observePlugin } from './observability/plugin.js'
import { createDecisionLogFromConfig } from './observability/decision-log.js'
import { GW_ERR_GUARD_BAD_PATH, GW_ERR_GUARD_BAD_REQUEST } from './errors.js'
import { createClientErrorReplier, createConnectRefuser, createErrorReplier } from './pipeline/error-reply.js'
import { ALLOW_HEADER, guardPlugin } from './pipeline/guard/plugin.js'
import { routePlugin } from './pipeline/route/plugin.js'
import { authenticatePlugin } from './pipeline/authenticate/plugin.js'
import { createJwtAuthenticator } from './pipeline/authenticate/jwt.js'
import { createKeySource, type KeySource } from './pipeline/authenticate/key-source.js'
import { authorizePlugin, type AuthorizeOptions } from './pipeline/authorize/plugin.js'
import { createPolicyStore, type PolicyStore } from './pipeline/authorize/policy-store.js'
import { bundleSettings } from './pipeline/authorize/bundle-config.js'
import { rateLimitPlugin } from './pipeline/rate-limit/plugin.js'
import { forwardPlugin } from './pipeline/forward/plugin.js'
import { createForwarder } from './pipeline/forward/forwarder.js'
import { createUpstreams } from './pipeline/forward/upstreams.js'

export interface Gateway {
  /** The public listener: the request path. */
  app: FastifyInstance
  /** The admin listener: /metrics, /healthz, /readyz, /status. */
  admin: FastifyInstance
  metrics: Metrics
  policy: PolicyStore
  keySources: ReadonlyMap<string, KeySource>
  close: () => Promise<void>
}

/**
 * The public listener's TLS. With a client CA, every client is asked for a certificate and OpenSSL
 * verifies it, but the handshake does not fail without one: routes decide what they require.
 */
function httpsOptions (tls: NonNullable<Config['listen']['tls']>, limits: Config['limits']) {
  return {
    ...serverOptions(limits),
    cert: readFileSync(tls.cert),
    key: readFileSync(tls.key),
    minVersion: 'TLSv1.2' as const,
    handshakeTimeout: limits.headersTimeoutMs,
    ...(tls.clientCa !== undefined ? { ca: readFileSync(tls.clientCa), requestCert: true, rejectUnauthorized: false } : {})
  }
}

/**
 * Node HTTP server options for either listener kind. A missing Host is left to the guard, so that it
 * gets the gateway's own 400 body rather than Node's empty one.
 */
function serverOptions (limits: Config['limits']) {
  return {
    maxHeaderSize: limits.maxHeaderBytes,
    requireHostHeader: false,
    // Node enforces headersTimeout/requestTimeout only when it checks, every 30 s by default.
    connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs)
  }
}

export interface GatewayOptions {
  /** How often to look for a changed bundle file; 0 turns watching off (tests). */
  bundleWatchIntervalMs?: number
  /**
   * Evaluate without forwarding (portcullis eval): every stage runs as configured, but a request
   * that passes them all is answered by this handler instead of the function.
   */
  evaluateOnly?: { handler: RouteHandlerMethod, onEvaluated: NonNullable<AuthorizeOptions['onEvaluated']> }
}

/**
 * Builds a gateway from a validated config. Everything the request path reads (key sources, the
 * policy, connection pools, route table) is built here, once; requests only read it.
 */
export async function createGateway (config: Config, opts: GatewayOptions = {}): Promise<Gateway> {
  const registry = new Registry()
  const metrics = createMetrics(registry)
  const errorReplier = createErrorReplier(metrics)
  // Fastify's logger exists only once the instance does; the handler is called after that.
  let clientErrorReplier = (_err: NodeJS.ErrnoException, socket: Socket): void => { socket.destroy() }
  const tls = config.listen.tls
  const app = Fastify({
    logger: loggerOptions(config.logging.level),
    logController: quietRequestLogging(),
    ...(tls !== undefined ? { https: httpsOptions(tls, config.limits) } : { http: serverOptions(config.limits) }),
    bodyLimit: config.limits.maxBodyBytes,
    requestTimeout: config.limits.requestTimeoutMs,
    maxRequestsPerSocket: 0,
    exposeHeadRoutes: false,
    clientErrorHandler: (err, socket) => clientErrorReplier(err, socket),
    // The router refuses what it cannot decode before any hook runs; answer that as a bad path.
    frameworkErrors: (error, request, reply) => errorReplier(error.code === 'FST_ERR_BAD_URL'
      ? new GW_ERR_GUARD_BAD_PATH('invalid percent-encoding')
      : new GW_ERR_GUARD_BAD_REQUEST(), request, reply),
    keepAliveTimeout: config.limits.keepAliveTimeoutMs,
    return503OnClosing: true,
    trustProxy: false,
    // Random ids: unique across replicas and restarts, and never taken from a client header.
    genReqId: () => randomUUID(),
    routerOptions: { caseSensitive: true, ignoreTrailingSlash: false, ignoreDuplicateSlashes: false }
  })

  const keySources = new Map<string, KeySource>()
  for (const issuer of config.issuers) keySources.set(issuer.id, await createKeySource(issuer))
  await Promise.all([...keySources.values()].map(async k => k.warm().catch((err: unknown) => {
    app.log.warn({ err: (err as Error).message }, 'issuer keys not loaded yet; retrying on demand')
  })))
  const bundles = await bundleSettings(config.policy)
  const routeEntrypoints = new Map(config.routes.flatMap(r => r.entrypoint !== undefined ? [[r.id, r.entrypoint] as const] : []))
  const policy = await createPolicyStore({
    source: bundles.source,
    parse: bundles.parse,
    entrypoints: [...new Set([config.policy.entrypoint, ...routeEntrypoints.values()])],
    ...(config.policy.persistDirectory !== undefined ? { persistDirectory: config.policy.persistDirectory } : {}),
    log: app.log,
    metrics,
    watchIntervalMs: bundles.intervalMs ?? opts.bundleWatchIntervalMs ?? 2000
  })
  const decisionLog = createDecisionLogFromConfig(config.decisionLog, app.log, metrics)
  const forwarder = createForwarder({ upstreams: await createUpstreams(config.upstreams), metrics })
  const jwt = createJwtAuthenticator(config.issuers.map(c => ({ config: c, keys: keySources.get(c.id)! })))

  // A proxy never parses bodies: every content type passes through untouched and is streamed upstream.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, _payload, done) => { done(null) })
  app.setErrorHandler(errorReplier)
  clientErrorReplier = createClientErrorReplier(metrics, app.log)
  // Node's server limits, before any parsing of ours: a slow head (slowloris) is cut at
  // headersTimeout; one header field beyond maxHeaders is kept so the guard can see and refuse it.
  app.server.headersTimeout = config.limits.headersTimeoutMs
  app.server.maxHeadersCount = config.limits.maxHeaders + 1
  app.server.maxConnections = config.limits.maxConnections
  app.server.on('connect', createConnectRefuser(metrics, ALLOW_HEADER))
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

  // The request path, in order. Each stage refuses what it must; only a request that passed them all
  // reaches the route handler, which is the forward stage.
  await app.register(observePlugin, { metrics }) //                 7. observe (sees every request)
  await app.register(guardPlugin, { //                                           1. edge guards
    maxBodyBytes: config.limits.maxBodyBytes,
    maxUriBytes: config.limits.maxUriBytes,
    maxHeaders: config.limits.maxHeaders,
    pathParameters: config.limits.pathParameters === 'allow',
    ...(config.listen.hosts !== undefined ? { hosts: config.listen.hosts } : {})
  })
  await app.register(authenticatePlugin, { jwt, metrics }) //                    3. authenticate
  await app.register(authorizePlugin, { //                                        4. authorize
    policy,
    metrics,
    decisionLog,
    routeEntrypoints,
    ...(opts.evaluateOnly !== undefined ? { onEvaluated: opts.evaluateOnly.onEvaluated } : {})
  })
  await app.register(rateLimitPlugin, { metrics }) //                            5. rate limit
  await app.register(forwardPlugin, { forwarder }) //                            6. forward
  await app.register(routePlugin, { config, handler: opts.evaluateOnly?.handler ?? forwarder.handle }) // 2. route match

  const readiness = () => {
    const checks: Record<string, boolean> = { policy: policy.current !== null }
    for (const [id, k] of keySources) checks[`issuer:${id}`] = k.ready
    return { ready: Object.values(checks).every(Boolean), checks }
  }
  const admin = createAdminServer({
    registry,
    readiness,
    logLevel: config.logging.level,
    status: () => ({
      ready: readiness().ready,
      policy: { ...policy.status(), entrypoint: config.policy.entrypoint },
      issuers: config.issuers.map(i => ({ id: i.id, issuer: i.issuer, keys_loaded: keySources.get(i.id)?.ready ?? false })),
      routes: config.routes.map(r => ({ id: r.id, prefix: r.prefix, methods: r.methods, upstream: r.upstream })),
      upstreams: config.upstreams.map(u => ({ id: u.id, url: u.url, mtls: u.tls !== undefined }))
    })
  })
  // Issuers that were down at start are retried in the background, so readiness can recover.
  const retry = setInterval(() => {
    for (const k of keySources.values()) if (!k.ready) k.warm().catch(() => {})
  }, 5000).unref()

  return {
    app,
    admin,
    metrics,
    policy,
    keySources,
    async close () {
      clearInterval(retry)
      await policy.close()
      await app.close()
      await decisionLog.close()
      await admin.close()
      await Promise.all([...keySources.values()].map(k => k.close()))
    }
  }
}
