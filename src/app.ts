import { randomUUID } from 'node:crypto'
import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { Socket } from 'node:net'
import Fastify, { type FastifyInstance, type FastifyServerOptions, type RouteHandlerMethod } from 'fastify'
import { createAdminServer } from './admin/server.js'
import { applyServerLimits, fastifyLimits, serverOptions } from './lifecycle/server-limits.js'
import { tlsServerOptions } from './tls/server-tls.js'
import { http2ServerOptions } from './lifecycle/http2.js'
import { earliestExpiry } from './tls/expiry.js'
import { createHealth, type Health } from './admin/health.js'
import type { Config } from './config/schema.js'
import type { Metrics } from './observability/metrics.js'
import { loggerOptions, quietRequestLogging } from './observability/logger.js'
import { observePlugin } from './observability/plugin.js'
import { createTracing, untraced } from './observability/tracing.js'
import { createDecisionLogFromConfig } from './observability/decision-log.js'
import { GW_ERR_GUARD_BAD_PATH, GW_ERR_GUARD_BAD_REQUEST } from './errors.js'
import { createClientErrorReplier, createConnectRefuser, createErrorReplier } from './pipeline/error-reply.js'
import { ALLOW_HEADER, guardPlugin } from './pipeline/guard/plugin.js'
import { serveExpectations } from './pipeline/guard/expect.js'
import { routePlugin } from './pipeline/route/plugin.js'
import { authenticatePlugin } from './pipeline/authenticate/plugin.js'
import { createJwtAuthenticator } from './pipeline/authenticate/jwt.js'
import type { KeySource } from './pipeline/authenticate/key-source.js'
import { authorizePlugin, type AuthorizeOptions } from './pipeline/authorize/plugin.js'
import { createPolicyStore, type PolicyStore } from './pipeline/authorize/policy-store.js'
import { bundleSettings } from './pipeline/authorize/bundle-config.js'
import { preAuthLimitPlugin, rateLimitPlugin } from './pipeline/rate-limit/plugin.js'
import { forwardPlugin } from './pipeline/forward/plugin.js'
import { createForwarder } from './pipeline/forward/forwarder.js'
import { createHeaderRules } from './pipeline/forward/headers.js'
import { closeUpstreams, createUpstreams } from './pipeline/forward/upstreams.js'
import { createCredentials } from './pipeline/forward/credentials/index.js'
import { createKeyRing } from './pipeline/forward/credentials/signing-keys.js'
import { clientBanPlugin, revocationPlugin } from './pipeline/deny-list/plugin.js'
import type { Ban } from './pipeline/deny-list/bans.js'
import { createProcessState, type ProcessState } from './lifecycle/process-state.js'
import { readAdminToken, registerAdminApi } from './admin/api.js'

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
 * Builds a gateway from a validated config. Everything the request path reads (key sources, the
 * policy, connection pools, route table) is built here, once; requests only read it.
 */
export async function createGateway (config: Config, opts: GatewayOptions = {}): Promise<Gateway> {
  // What is built is closed again if a later step fails (a reload that is refused must not leave
  // watchers, timers, pools or a Redis client behind).
  const built: Array<() => unknown> = []
  const own = opts.process === undefined ? createProcessState() : null
  if (own !== null) built.push(() => own.close())
  try {
    const gateway = await buildGateway(config, opts.process ?? own!, opts, closer => built.push(closer))
    if (own === null) return gateway
    gateway.activate()
    return { ...gateway, close: async () => { try { await gateway.close() } finally { await own.close() } } }
  } catch (err) {
    for (const close of built.reverse()) await Promise.resolve().then(close).catch(() => {})
    throw err
  }
}

async function buildGateway (config: Config, proc: ProcessState, opts: GatewayOptions, built: (close: () => unknown) => void): Promise<Gateway> {
  const { metrics, revocations, bans } = proc
  const registry = metrics.registry
  const errorReplier = createErrorReplier(metrics)
  // Fastify's logger exists only once the instance does; the handler is called after that.
  let clientErrorReplier = (_err: NodeJS.ErrnoException, socket: Socket): void => { socket.destroy() }
  const tls = config.listen.tls
  const app = Fastify({
    logger: loggerOptions(config.logging.level),
    logController: quietRequestLogging(),
    ...(tls !== undefined ? { https: httpsOptions(tls, config.limits, config.listen.http2) } : { http: serverOptions(config.limits) }),
    // Only used when Fastify makes the server itself (no serverFactory); Fastify reads the protocol per request.
    ...(tls !== undefined && config.listen.http2 ? { http2: true as never } : {}),
    ...(opts.serverFactory !== undefined ? { serverFactory: opts.serverFactory } : {}),
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

  // Process state this generation holds: given back when it closes (or when building it fails).
  const releases: Array<() => Promise<void>> = []
  const hold = <T>(held: { value: T, release: () => Promise<void> }): T => {
    releases.push(held.release)
    built(held.release)
    return held.value
  }
  const keySources = new Map<string, KeySource>()
  for (const issuer of config.issuers) keySources.set(issuer.id, hold(await proc.keySource(issuer, app.log)))
  // Keys the process already holds are used as they are; others are fetched once now, and retried
  // in the background (with back-off) if the IdP does not answer.
  await Promise.all([...keySources.values()].map(async k => k.warm().catch((err: unknown) => {
    app.log.warn({ err: (err as Error).message }, 'issuer keys not loaded yet; retrying in the background')
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
    watchIntervalMs: bundles.intervalMs ?? opts.bundleWatchIntervalMs ?? 2000,
    evaluation: { timeoutMs: config.policy.evaluationTimeoutMs, guard: config.policy.evaluationGuard }
  })
  built(() => policy.close())
  const decisionLog = createDecisionLogFromConfig(config.decisionLog, app.log, metrics)
  built(() => decisionLog.close())
  // The gateway's assertion keys: loaded or made at start, rotated with overlap, published as a JWKS.
  const assertionKeys = await createKeyRing({
    config: config.assertion,
    onRotate: () => metrics.assertionKeyRotations.inc(),
    onChange: (published) => metrics.assertionKeys.set(published),
    onError: (err) => app.log.error({ err: (err as Error).message }, 'assertion key rotation failed; keeping the current keys')
  })
  built(() => assertionKeys.close())
  const credentials = await createCredentials({ config, keys: assertionKeys, metrics })
  const upstreams = await createUpstreams(config.upstreams, { log: app.log, metrics })
  built(() => closeUpstreams(upstreams))
  const forwarder = createForwarder({ upstreams, routes: config.routes, metrics, credentials, headerRules: createHeaderRules(config) })
  const rateLimitStore = hold(await proc.rateLimitStore(config.rateLimit, app.log))
  const jwt = createJwtAuthenticator(config.issuers.map(c => ({ config: c, keys: keySources.get(c.id)! })))
  const adminToken = readAdminToken(config.admin.tokenFile)
  // The deny list: revocations (shared through the rate-limit store's Redis when it is redis) and bans.
  const shared = hold(await proc.denyListSync(config, app.log))
  const revocationSync = shared?.revocations ?? null
  // Serve with the shared sets already read; if Redis is away, requests fail closed until it is
  // (bans: each replica's own meanwhile). A sync this process already holds has been read.
  await shared?.ready(5000)
  metrics.denyListCounts.revocations = kind => revocations.count(kind)
  metrics.denyListCounts.bans = scope => bans.count(scope)

  // A proxy never parses bodies: every content type passes through untouched and is streamed upstream.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, _payload, done) => { done(null) })
  app.setErrorHandler(errorReplier)
  clientErrorReplier = createClientErrorReplier(metrics, app.log)
  // Node's server limits, before any parsing of ours (lifecycle/server-limits.ts).
  applyServerLimits(app.server, config.limits, tls !== undefined)
  app.server.on('connect', createConnectRefuser(metrics, ALLOW_HEADER))
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
  // Set last, so that a function's own Strict-Transport-Security cannot weaken the listener's.
  const hsts = hstsValue(tls)
  if (hsts !== null) app.addHook('onSend', async (_request, reply) => { reply.header('strict-transport-security', hsts) })

  // Spans per stage when tracing is configured; otherwise each stage is registered as it is.
  const tracing = createTracing(config.tracing)
  built(() => tracing?.close())
  built(() => app.close())
  const traced = tracing?.traced ?? untraced

  const denyList = {
    config,
    metrics,
    revocations,
    bans,
    revocationsReady: () => revocationSync?.synced ?? true,
    // Shared in the background: a ban this replica holds works whether or not Redis takes it.
    shareBan: (ban: Ban) => { shared?.bans.put(ban).catch(() => {}) }
  }

  // The request path, in order. Each stage refuses what it must; only a request that passed them all
  // reaches the route handler, which is the forward stage.
  await app.register(observePlugin, { metrics }) //                 7. observe (sees every request)
  if (tracing !== undefined) await app.register(tracing.plugin)
  await app.register(guardPlugin, { //                                           1. edge guards
    maxBodyBytes: config.limits.maxBodyBytes,
    maxUriBytes: config.limits.maxUriBytes,
    maxHeaders: config.limits.maxHeaders,
    pathParameters: config.limits.pathParameters === 'allow',
    trustedProxies: config.rateLimit.trustedProxies,
    doubleEncodedPath: config.limits.doubleEncodedPath === 'allow',
    lookalikePath: config.limits.lookalikePath === 'allow',
    ...(config.listen.hosts !== undefined ? { hosts: config.listen.hosts } : {})
  })
  await app.register(preAuthLimitPlugin, { metrics, store: rateLimitStore, config }) //  1. pre-auth IP limit
  await app.register(clientBanPlugin, denyList) //                            1. banned client IPs (and ban counting)
  await app.register(traced('authenticate', authenticatePlugin), { jwt, metrics }) // 3. authenticate
  await app.register(revocationPlugin, denyList) //                 3. revoked credentials, banned subjects
  await app.register(traced('authorize', authorizePlugin), { //                        4. authorize
    policy,
    metrics,
    decisionLog,
    routeEntrypoints,
    ...(opts.evaluateOnly !== undefined ? { onEvaluated: opts.evaluateOnly.onEvaluated } : {})
  })
  // Its hook runs per route, after these; the span stays open until the forward stage starts.
  await app.register(traced('rate limit', rateLimitPlugin, { open: true }), { metrics, store: rateLimitStore, config }) // 5. rate limit
  await app.register(forwardPlugin, { forwarder }) //                            6. forward
  await app.register(routePlugin, { config, handler: opts.evaluateOnly?.handler ?? forwarder.handle }) // 2. route match

  const health = createHealth()
  health.addCheck('policy', () => policy.current !== null ? { ok: true, detail: `revision ${policy.current.revision}` } : { ok: false, detail: 'no policy bundle loaded' })
  // Ready while the keys verify: fresh, or stale within maxStaleSeconds (the outage shows in /status
  // and portcullis_issuer_keys_age_seconds, and alerts, without taking the replica out of service).
  for (const [id, k] of keySources) {
    health.addCheck(`issuer:${id}`, () => {
      const s = k.status()
      return { ok: k.ready, detail: s.state === 'none' ? 'issuer keys not loaded' : `keys ${s.state}${s.age_seconds !== null ? `, ${s.age_seconds} s old` : ''}` }
    })
  }
  // Shown, never failing: each route decides (onStoreError) what a store outage means for it.
  health.addCheck('rate_limit_store', () => {
    const s = rateLimitStore.detail()
    return { ok: true, detail: `${s.type} ${s.up ? 'up' : 'down'}${s.last_error !== undefined ? `: ${s.last_error}` : ''}` }
  })
  health.addStatus('rate_limit_store', () => rateLimitStore.detail())
  const listenerCert = tls !== undefined ? new X509Certificate(readFileSync(tls.cert)) : undefined
  // Every other certificate file the gateway holds (upstream pairs and CAs export their own, as they
  // reload): when one runs out, a dependency stops working, so its expiry is a metric too.
  const held: Array<[string, string | undefined]> = [
    ['listener/client-ca', tls?.clientCa],
    ...config.issuers.map((i): [string, string | undefined] => [`issuer/${i.id}/ca`, i.ca]),
    ['policy-server/ca', config.policy.server?.tls?.ca],
    ['policy-server/client', config.policy.server?.tls?.cert],
    ['decision-log/ca', config.decisionLog.http?.tls?.ca],
    ['decision-log/client', config.decisionLog.http?.tls?.cert]
  ]
  for (const [name, file] of held) {
    const notAfter = file === undefined ? null : earliestExpiry(readFileSync(file, 'utf8'))
    if (notAfter !== null) metrics.certificateNotAfter.set(name, notAfter)
  }
  if (listenerCert !== undefined) {
    const notAfter = new Date(listenerCert.validTo)
    metrics.certificateNotAfter.set('listener', notAfter.getTime())
    health.addCheck('certificate:listener', () => {
      const now = Date.now()
      const ok = now >= new Date(listenerCert.validFrom).getTime() && now < notAfter.getTime()
      return { ok, detail: `${ok ? 'valid' : 'not valid now'}; expires ${notAfter.toISOString()}` }
    })
  }
  health.addStatus('policy', () => {
    const status = policy.status()
    const age = status.activated_at === null ? null : Math.round((Date.now() - Date.parse(status.activated_at)) / 1000)
    return { ...status, age_seconds: age, entrypoint: config.policy.entrypoint }
  })
  health.addStatus('issuers', () => config.issuers.map(i => {
    const k = keySources.get(i.id)!
    return { id: i.id, issuer: i.issuer, keys_loaded: k.ready, keys: k.status() }
  }))
  health.addStatus('routes', () => config.routes.map(r => ({ id: r.id, prefix: r.prefix, methods: r.methods, upstream: r.upstream })))
  health.addStatus('upstreams', () => config.upstreams.map(u => ({ id: u.id, url: u.url, mtls: u.tls !== undefined })))
  health.addStatus('certificates', () => listenerCert === undefined
    ? []
    : [{ name: 'listener', subject: listenerCert.subject, not_after: new Date(listenerCert.validTo).toISOString() }])
  const admin = createAdminServer({
    registry,
    health,
    logLevel: config.logging.level,
    admin: config.admin,
    limits: config.limits,
    jwks: () => assertionKeys.jwks(),
    ...(opts.adminServerFactory !== undefined ? { serverFactory: opts.adminServerFactory } : {})
  })
  if (revocationSync !== null) {
    health.addCheck('revocations', () => revocationSync.synced
      ? { ok: true, detail: `redis ${revocationSync.up ? 'up' : 'down'}` }
      : { ok: false, detail: 'shared revocation set not read yet' })
  }
  health.addStatus('revocations', () => ({
    store: revocationSync === null ? 'memory' : 'redis',
    ...(revocationSync !== null ? { synced: revocationSync.synced, up: revocationSync.up } : {}),
    in_force: revocations.list().length
  }))
  health.addStatus('bans', () => bans.list().map(b => ({ scope: b.scope, value: b.value, until: new Date(b.until).toISOString(), strikes: b.strikes })))
  if (adminToken !== undefined) {
    registerAdminApi(admin, {
      token: () => adminToken,
      revocations,
      bans,
      writer: revocationSync ?? { add: async r => { revocations.add(r) }, remove: async (kind, value) => revocations.remove(kind, value) },
      banWriter: shared?.bans ?? { lift: async (scope, value) => bans.lift(scope, value) },
      maxTtlSeconds: config.revocation.maxTtlSeconds
    })
  }
  return {
    app,
    admin,
    metrics,
    policy,
    keySources,
    health,
    activate () {
      metrics.issuerKeyAges.clear()
      for (const [id, k] of keySources) metrics.issuerKeyAges.set(id, () => k.ageSeconds())
    },
    cutOff: async () => forwarder.cutOff(),
    async close () {
      assertionKeys.close()
      // In this order (requests finish before their decisions are flushed), and every step runs even
      // when one before it failed: a retired gateway must not keep sockets or timers.
      const steps: Array<() => unknown> = [
        async () => policy.close(),
        async () => app.close(),
        async () => decisionLog.close(),
        async () => admin.close(),
        async () => tracing?.close(),
        ...releases

      ]
      const failures: unknown[] = []
      for (const step of steps) {
        try { await step() } catch (err) { failures.push(err) }
      }
      if (failures.length > 0) throw failures[0]
    }
  }
}
