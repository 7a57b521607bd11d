/*
 * What the stages hand each other. Stages share only these types and the request decorators declared
 * in their plugins; nothing reaches into another stage's internals.
 */
import type { FastifyBaseLogger, FastifyError, FastifyPluginAsync, FastifyPluginOptions, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import type { Health } from '../admin/health.js'
import type { CloseRegistry } from '../lifecycle/close-registry.js'
import type { ProcessState } from '../lifecycle/process-state.js'
import type { Metrics } from '../observability/metrics.js'
import type { CertificateExpiry } from '../tls/expiry.js'

declare module 'fastify' {
  interface FastifyRequest {
    /**
     * Why the caller's credentials were refused (an enumerated reason, for the access line), or null:
     * set by authenticate, and by the deny list for a revoked credential. Declared here, not by either
     * stage, because both write it; app.ts decorates it.
     */
    authnReason: string | null
    /** The matched route, once routeOf has read it (null: none, the not-found handler); decorated by the route stage. */
    gatewayRoute: RouteContext | null | undefined
  }
}

/** What every stage is built with: one generation's view of the process services. */
export interface StageServices {
  log: FastifyBaseLogger
  metrics: Metrics
  /** Readiness checks (/readyz) and status sections (/status): each stage adds its own. */
  health: Health
  /** What the stage builds and must close again (pools, watchers, held process state). */
  closer: CloseRegistry
  /** Certificate files the stage holds: their expiry becomes portcullis_certificate_not_after_seconds. */
  certificates: CertificateExpiry
  /** What outlives this generation: key sources, stores, the deny list (lifecycle/process-state.ts). */
  process: ProcessState
}

/** A stage's plugin with its options, as app.ts registers it; `span` says how tracing wraps it. */
export interface Stage {
  plugin: FastifyPluginAsync<FastifyPluginOptions>
  options: FastifyPluginOptions
  /** A span around the stage ('open': closed by the next stage that opens one); none when absent. */
  span?: 'closed' | 'open'
}

/** Binds a plugin to its options (type-checked here, erased in the Stage). */
export function stageOf<O extends FastifyPluginOptions> (plugin: FastifyPluginAsync<O>, options: O, span?: Stage['span']): Stage {
  return { plugin: plugin as unknown as Stage['plugin'], options, ...(span !== undefined ? { span } : {}) }
}

/** A client certificate the TLS layer verified against the listener's client CA. */
export interface ClientCertificate {
  /** Subject distinguished name, e.g. `CN=svc,O=Example`. */
  subject: string
  issuer: string
  serialNumber: string
  notAfter: string
  sans: { dns: string[], uri: string[], email: string[], ip: string[] }
  /** The first `spiffe://` URI SAN, if any. */
  spiffeId: string | null
  /** base64url SHA-256 of the DER certificate: the `x5t#S256` of RFC 8705 token binding. */
  thumbprintSha256: string
}

interface PrincipalBase {
  issuer: string
  subject: string
  claims: Readonly<Record<string, unknown>>
  /** The verified client certificate presented with this request, if any. */
  certificate: ClientCertificate | null
}

/** A verified identity. Only the authenticate stage creates one. */
export interface JwtPrincipal extends PrincipalBase { type: 'jwt', issuerId: string }
/** Identified by a verified client certificate alone: subject is its SPIFFE ID, else its subject DN. */
export interface CertificatePrincipal extends PrincipalBase { type: 'mtls' }
/** On a public route with no credentials: still judged by the policy, with nothing vouched for. */
export interface AnonymousPrincipal extends PrincipalBase { type: 'anonymous' }

export type Principal = JwtPrincipal | CertificatePrincipal | AnonymousPrincipal

/** What an authenticator says about a request. */
export type AuthnResult =
  | { kind: 'principal', principal: Principal }
  | { kind: 'not-applicable' }
  | { kind: 'failure', error: FastifyError, reason: string }

/** The document a policy sees as `input` (policies/input.schema.json mirrors it). */
export interface PolicyInput {
  method: string
  /** HTTP/1.1, HTTP/1.0 or HTTP/2: what the client spoke (the function is reached as its upstream is configured). */
  protocol: string
  path: string
  segments: string[]
  query: Record<string, string[]>
  headers: Record<string, string>
  client: { ip: string }
  tls: { client_certificate: null | PolicyCertificate }
  principal: null | { type: Principal['type'], issuer: string, subject: string, claims: Record<string, unknown> }
  route: { id: string, metadata: Record<string, unknown> }
  time_ns: number
}

/** A client certificate as the policy sees it (snake_case, like the rest of the input). */
export interface PolicyCertificate {
  subject: string
  issuer: string
  serial_number: string
  not_after: string
  sans: { dns: string[], uri: string[], email: string[], ip: string[] }
  spiffe_id: string | null
  thumbprint_sha256: string
}

/** A policy decision after validation; anything that does not fit this shape denies. */
export interface Decision {
  allow: boolean
  reasons: string[]
  status?: number
  message?: string
  headers: { upstream: Record<string, string>, client: Record<string, string> }
  /** Rate-limit hints: a bucket key instead of the principal's, a cost per request, a named tier. */
  rateLimit?: RateLimitHint
}

export interface RateLimitHint {
  key?: string
  cost?: number
  tier?: string
}

/**
 * The route a request matched, or undefined on the not-found handler. Read once per request: Fastify's
 * `request.routeOptions` builds a new object of a dozen fields on every read, and every stage asks.
 */
export function routeOf (request: FastifyRequest): RouteContext | undefined {
  let route = request.gatewayRoute
  if (route === undefined) request.gatewayRoute = route = request.routeOptions.config.gateway ?? null
  return route ?? undefined
}

/** The route a request matched, as the stages read it (routeOf) from `routeOptions.config`. */
export interface RouteContext {
  id: string
  prefix: string
  upstream: string
  stripPrefix: boolean
  authentication: 'jwt' | 'mtls' | 'jwt-and-mtls' | 'jwt-or-mtls' | 'public'
  issuers?: readonly string[]
  /** Request body cap for this route (the route's own, else limits.maxBodyBytes). */
  maxBodyBytes: number
  metadata: Readonly<Record<string, unknown>>
}

/**
 * A check as an onRequest hook with Fastify's callback: no promise per request when the check is
 * synchronous; one that has to wait (a signature check) returns its promise. A refusal (a throw or a
 * rejection) is handed on in a later turn, as an async hook's rejection was: answered in the same turn,
 * a refusal of one of several pipelined requests lost the answer of the next (the smuggling suite's
 * pipelined case).
 */
export function syncHook (check: (request: FastifyRequest, reply: FastifyReply) => void | Promise<void>) {
  return (request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction): void => {
    let waiting: void | Promise<void>
    try {
      waiting = check(request, reply)
    } catch (err) {
      queueMicrotask(() => { done(err as Error) })
      return
    }
    if (waiting === undefined) done()
    else waiting.then(() => { done() }, done)
  }
}
