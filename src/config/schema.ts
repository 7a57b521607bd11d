import { Type, type Static } from '@sinclair/typebox'
import { FilePath, FilePathOf, HttpUrl, Id, StringEnum } from './schema-common.js'
import { Admin, Limits, Listen } from './schema-listeners.js'
import { BundleServer, PolicyShadow } from './schema-bundle.js'
import { Assertion, CredentialKind, UpstreamCredentials } from './schema-credentials.js'

/*
 * The one config schema. It is the source of the TypeScript types (Static<>), of the defaults and of
 * the validation run once at start (config/load.ts). Every object is closed so a typo is an error,
 * not a silently ignored key.
 */

// How a remote key set lives through outages and rotations (defaults in key-source.ts: the schema
// cannot give defaults inside a union).
const RemoteJwksSettings = {
  maxStaleSeconds: Type.Optional(Type.Integer({
    minimum: 60,
    maximum: 2_592_000,
    description: 'how long the last good key set keeps verifying while the IdP cannot be reached (default 86400, 24 h); after that the issuer\'s tokens get 503'
  })),
  unknownKidCooldownMs: Type.Optional(Type.Integer({
    minimum: 100,
    maximum: 300_000,
    description: 'a token with an unknown kid refreshes the key set at most once per this interval per issuer (default 1000)'
  })),
  unknownKidWaitMs: Type.Optional(Type.Integer({
    minimum: 50,
    maximum: 60_000,
    description: 'how long a request with an unknown kid waits for that refresh (including what is left of the cooldown) before a retryable 503 (default 1500)'
  }))
}

const Jwks = Type.Union([
  Type.Object({ discovery: Type.Literal(true), ...RemoteJwksSettings }, { additionalProperties: false }),
  Type.Object({ url: HttpUrl, ...RemoteJwksSettings }, { additionalProperties: false }),
  Type.Object({ file: FilePath }, { additionalProperties: false })
], { description: 'where the issuer keys come from: OIDC discovery at the issuer, a JWKS URL, or a JWKS file' })

const Algorithm = StringEnum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'HS256', 'HS384', 'HS512'])

const Issuer = Type.Object({
  id: Id,
  issuer: HttpUrl,
  audiences: Type.Array(Type.String({ minLength: 1 }), { minItems: 1 }),
  algorithms: Type.Array(Algorithm, { minItems: 1, uniqueItems: true }),
  jwks: Type.Optional(Jwks),
  secret: Type.Optional(Type.String({
    minLength: 32,
    description: 'shared secret for HS256/384/512 only (at least 32 bytes; use ${ENV}); an issuer has either a secret or jwks'
  })),
  typ: Type.Optional(Type.String({ minLength: 1, description: 'required "typ" header, e.g. at+jwt (RFC 9068), so other JWTs cannot be substituted' })),
  requiredClaims: Type.Array(Type.String({ minLength: 1 }), { default: [], uniqueItems: true, description: 'claims that must be present besides exp and sub' }),
  maxTokenBytes: Type.Integer({ minimum: 512, maximum: 65_536, default: 8192 }),
  maxTokenLifetimeSeconds: Type.Optional(Type.Integer({
    minimum: 1,
    description: 'refuse tokens whose exp is further than this in the future (a correctly signed token must still run out)'
  })),
  ca: Type.Optional(FilePath),
  clockToleranceSeconds: Type.Integer({ minimum: 0, maximum: 300, default: 30 }),
  jwksCacheSeconds: Type.Integer({ minimum: 1, maximum: 86_400, default: 600, description: 'how often a remote key set is refreshed in the background' }),
  verifiedTokenCacheSeconds: Type.Integer({
    minimum: 0,
    maximum: 300,
    default: 60,
    description: 'how long a verified token is remembered (never past its exp); 0 verifies every request'
  }),
  fetchTimeoutMs: Type.Integer({ minimum: 1, maximum: 60_000, default: 5_000 })
}, { additionalProperties: false })

const BundleVerificationKey = Type.Object({
  algorithm: StringEnum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'], { default: 'RS256' }),
  key: FilePathOf('public-key', { description: 'PEM public key file, relative to the config file' }),
  scope: Type.Optional(Type.String({ description: 'scope the bundle signature must carry when signed with this key' }))
}, { additionalProperties: false })

const Policy = Type.Object({
  bundle: Type.Optional(FilePathOf('watched', { description: 'bundle file (.tar.gz) or bundle folder, watched for changes; or use server' })),
  server: Type.Optional(BundleServer),
  entrypoint: Type.String({ default: 'gateway/authz/decision', pattern: '^[a-zA-Z_][a-zA-Z0-9_]*(/[a-zA-Z_][a-zA-Z0-9_]*)*$' }),
  verification: Type.Optional(Type.Object({
    keys: Type.Record(Type.String({ minLength: 1 }), BundleVerificationKey, { minProperties: 1, description: 'public keys by key id' }),
    keyId: Type.Optional(Type.String({ minLength: 1, description: 'use this key whatever the bundle names (OPA signing.keyid)' })),
    scope: Type.Optional(Type.String({ description: 'scope every bundle signature must carry' }))
  }, { additionalProperties: false, description: 'when set, every bundle must be signed (.signatures.json, as by opa build --signing-key or opa sign)' })),
  maxBundleBytes: Type.Integer({ minimum: 1024, maximum: 1_073_741_824, default: 67_108_864, description: 'cap on a bundle, compressed and uncompressed' }),
  shadow: Type.Optional(PolicyShadow),
  persistDirectory: Type.Optional(FilePathOf('written', { description: 'folder where the last good bundle is kept; used (and verified again) when no source delivers one at start' })),
  evaluationTimeoutMs: Type.Integer({
    minimum: 1,
    maximum: 10_000,
    default: 100,
    description: 'longest one guarded policy evaluation may hold the event loop; it is then stopped and the request gets 503 (GW_ERR_AUTHZ_POLICY_TIMEOUT)'
  }),
  evaluationGuard: StringEnum(['risky', 'always'], {
    default: 'risky',
    description: 'which evaluations run under the timeout: risky (only bundles whose module includes replace or numbers.range, or cannot be checked; the others cost no watchdog) or always (~85 µs more per decision)'
  })
}, { additionalProperties: false })

const UpstreamTls = Type.Object({
  ca: Type.Optional(FilePathOf('read', { description: 'CA file the upstream certificate must chain to; the system roots when absent' })),
  cert: Type.Optional(FilePathOf('read', { description: 'the gateway\'s client certificate for mutual TLS (with key); reloaded when the file changes' })),
  key: Type.Optional(FilePathOf('read', { description: 'the private key of cert' })),
  servername: Type.Optional(Type.String({ minLength: 1, description: 'SNI and the name the certificate must match; the URL host when absent' })),
  reloadIntervalMs: Type.Integer({ minimum: 100, maximum: 3_600_000, default: 5_000, description: 'how often cert and key are checked for a change on disk' })
}, { additionalProperties: false })

const CircuitBreaker = Type.Object({
  enabled: Type.Boolean({ default: true }),
  failures: Type.Integer({ minimum: 1, maximum: 1000, default: 5, description: 'consecutive connection failures or timeouts that open the circuit' }),
  openMs: Type.Integer({ minimum: 100, maximum: 600_000, default: 10_000, description: 'how long an open circuit fails fast before one probe request is let through' })
}, { additionalProperties: false, default: {} })

const RouteTimeouts = Type.Object({
  headersMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 600_000, description: 'response headers must arrive within this (504)' })),
  bodyMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 600_000, description: 'longest pause while the response body streams' })),
  totalMs: Type.Optional(Type.Integer({ minimum: 1, maximum: 3_600_000, description: 'the whole upstream exchange, body included (504 before the response starts)' }))
}, { additionalProperties: false, description: 'overrides the upstream\'s timeouts for this route' })

const Upstream = Type.Object({
  id: Id,
  url: HttpUrl,
  tls: Type.Optional(UpstreamTls),
  plaintext: Type.Boolean({ default: false, description: 'allow an http:// URL (local development only)' }),
  connectTimeoutMs: Type.Integer({ minimum: 1, maximum: 60_000, default: 5_000 }),
  headersTimeoutMs: Type.Integer({ minimum: 1, maximum: 600_000, default: 30_000 }),
  bodyTimeoutMs: Type.Integer({ minimum: 1, maximum: 600_000, default: 30_000 }),
  connections: Type.Integer({ minimum: 1, maximum: 1024, default: 64 }),
  // undici closes an idle connection after 4 s: under uneven traffic the connections beyond the usual
  // concurrency expired between bursts, and each burst opened them again at once, a TLS handshake
  // each, at the moment the function was busiest (bench/README.md: p99 9–34 ms at a quarter of the
  // gateway's capacity, 5.6 ms with 60 s). 60 s is nginx's and Kong's upstream keep-alive default.
  keepAliveTimeoutMs: Type.Integer({
    minimum: 1_000,
    maximum: 600_000,
    default: 60_000,
    description: 'how long an idle connection to the function is kept for the next request; a shorter Keep-Alive: timeout=N from the function wins (N less 2 s). Keep it below the idle timeout of the function\'s server or load balancer when that one sends no Keep-Alive header'
  }),
  // Envoy's circuit breaker lets 1024 requests wait per cluster, sized for services with many hosts.
  // A function's concurrency is `connections`: at most as many waiting as running, for at most a
  // second, keeps a slow route from holding a fast one for longer than a client would wait anyway.
  maxQueue: Type.Integer({
    minimum: 0,
    maximum: 100_000,
    default: 64,
    description: 'requests that may wait for a connection when all are busy (Envoy\'s max_pending_requests); beyond it, 503 GW_ERR_UPSTREAM_BUSY at once'
  }),
  queueTimeoutMs: Type.Integer({
    minimum: 1,
    maximum: 600_000,
    default: 1_000,
    description: 'longest wait for a connection; then 503 GW_ERR_UPSTREAM_BUSY with Retry-After (this, in whole seconds, at least 1)'
  }),
  // Issue #21: an HTTP/2 client with a valid token resets streams faster than they are served and,
  // first come first served, filled the queue; in turn by caller, it holds only its share.
  queueFairness: StringEnum(['per-identity', 'none'], {
    default: 'per-identity',
    description: 'per-identity: waiting requests leave in turn by caller (issuer and subject; client IP when anonymous), and a caller that finds the queue full takes the place of the newest waiter of the caller holding the most (that one gets 503 GW_ERR_UPSTREAM_BUSY), so one caller cannot keep the others out; none: first come, first served'
  }),
  http2: Type.Boolean({ default: false, description: 'offer HTTP/2 in ALPN (https only); HTTP/1.1 when the function does not pick it' }),
  totalTimeoutMs: Type.Integer({ minimum: 1, maximum: 3_600_000, default: 120_000, description: 'the whole upstream exchange, body included' }),
  retryConnectFailures: Type.Boolean({
    default: true,
    description: 'retry once when a connection could not be opened, for GET, HEAD, OPTIONS, PUT and DELETE without a body'
  }),
  circuitBreaker: CircuitBreaker,
  maxConcurrentPerIdentity: Type.Optional(Type.Integer({
    minimum: 1,
    description: 'requests one caller (issuer and subject; client IP when anonymous) may have in flight to this upstream (429 beyond)'
  })),
  credentials: UpstreamCredentials,
  passClientHeaders: Type.Array(Type.String({ pattern: '^[a-z0-9]+(-[a-z0-9]+)*$', maxLength: 128 }), {
    default: [],
    uniqueItems: true,
    description: 'client headers this upstream may receive although they assert an address, identity, client certificate or ' +
      'rewritten target (cf-connecting-ip, x-client-cert, x-original-url, ...; the families are in docs/security.md), for a function ' +
      'that really needs one from a trusted client. Lower-case, dashed names; only that exact spelling passes (aliases such as ' +
      'CF_Connecting_IP are still dropped). Names the gateway sets itself (host, authorization, forwarded, x-forwarded-for/-proto/-host, ' +
      'x-portcullis-*, hop-by-hop) are refused.'
  })
}, { additionalProperties: false })

const RateLimit = Type.Object({
  max: Type.Integer({ minimum: 1 }),
  windowSeconds: Type.Integer({ minimum: 1, maximum: 86_400 }),
  algorithm: StringEnum(['fixed-window', 'gcra'], {
    default: 'fixed-window',
    description: 'fixed-window: at most max per window (2 × max can pass around a window edge); gcra: a smooth rate of max per window with at most burst at once'
  }),
  burst: Type.Optional(Type.Integer({ minimum: 1, description: 'gcra only: requests allowed at once (default: max)' })),
  onStoreError: StringEnum(['fail-closed', 'local'], {
    default: 'fail-closed',
    description: 'when the shared store fails or does not answer in time: refuse with 503, or limit in this process alone'
  })
}, { additionalProperties: false })

const RedisUrl = Type.String({ pattern: '^rediss?://', description: 'a redis:// or rediss:// URL' })

const RateLimitStore = Type.Object({
  type: StringEnum(['memory', 'redis'], { default: 'memory', description: 'memory: per process; redis: shared by every replica' }),
  url: Type.Optional(RedisUrl),
  cluster: Type.Optional(Type.Array(RedisUrl, { minItems: 1, description: 'Redis Cluster seed nodes (instead of url)' })),
  commandTimeoutMs: Type.Integer({
    minimum: 1,
    maximum: 10_000,
    default: 200,
    description: 'a store answer later than this fails that request (its route\'s onStoreError); the deadline grows by the event loop\'s recent delay, at most doubling'
  }),
  failuresBeforeDown: Type.Integer({
    minimum: 1,
    maximum: 100,
    default: 3,
    description: 'failed or late commands in a row (commands in flight together count once) before the store is marked down and skipped until a probe answers; a closed connection is down at once'
  }),
  localFallbackShare: Type.Number({
    exclusiveMinimum: 0,
    maximum: 1,
    default: 0.5,
    description: 'share of each limit (max and burst, at least 1) that an onStoreError: local route allows in this process while the store fails; 1 / replicas keeps the fleet at the shared limit, the default 0.5 does so for two'
  }),
  keyPrefix: Type.String({ default: 'portcullis:rl:', maxLength: 64 })
}, { additionalProperties: false, default: {} })

const PreAuthLimit = Type.Object({
  max: Type.Integer({ minimum: 1 }),
  windowSeconds: Type.Integer({ minimum: 1, maximum: 86_400 }),
  onStoreError: StringEnum(['fail-closed', 'local'], { default: 'local' })
}, { additionalProperties: false, description: 'per client IP, before authentication: a flood of bogus tokens never reaches signature checks or the policy' })

// Automatic bans (pipeline/deny-list/): failures of one client IP or subject within a window.
const BanRule = Type.Object({
  enabled: Type.Boolean({ default: true, description: 'false turns bans off (e.g. for one route when bans.default is set)' }),
  failures: Type.Integer({ minimum: 1, maximum: 100_000, default: 10, description: 'failures within windowSeconds that lead to a ban' }),
  windowSeconds: Type.Integer({ minimum: 1, maximum: 86_400, default: 60 }),
  on: Type.Array(StringEnum(['authn', 'authz']), {
    minItems: 1,
    uniqueItems: true,
    default: ['authn', 'authz'],
    description: 'what counts as a failure: refused authentication (401), policy denial (403)'
  }),
  banSeconds: Type.Integer({ minimum: 1, maximum: 86_400, default: 60, description: 'the first ban; each further ban of the same client doubles it' }),
  maxBanSeconds: Type.Integer({ minimum: 1, maximum: 604_800, default: 3600, description: 'the cap of the doubling' })
}, { additionalProperties: false })

const Bans = Type.Object({
  default: Type.Optional(BanRule),
  trustedNetworks: Type.Array(Type.String({ minLength: 1 }), {
    default: [],
    description: 'client IPs or CIDRs that are never banned (e.g. health checkers, the office)'
  }),
  keyPrefix: Type.String({ default: 'portcullis:bans', maxLength: 64, description: 'Redis hash and channel name through which replicas share bans (the rate-limit store\'s Redis, when it is redis)' }),
  syncIntervalMs: Type.Integer({ minimum: 1000, maximum: 600_000, default: 30_000, description: 'full re-read of the shared bans, besides pub/sub' })
}, { additionalProperties: false, default: {} })

const Revocation = Type.Object({
  keyPrefix: Type.String({ default: 'portcullis:revoked', maxLength: 64, description: 'Redis hash and channel name (the rate-limit store\'s Redis, when it is redis)' }),
  maxTtlSeconds: Type.Integer({ minimum: 1, default: 31_536_000, description: 'the longest a revocation may last' }),
  syncIntervalMs: Type.Integer({ minimum: 1000, maximum: 600_000, default: 30_000, description: 'full re-read of the stored set, besides pub/sub' })
}, { additionalProperties: false, default: {} })

const Method = StringEnum(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])

const Route = Type.Object({
  id: Id,
  prefix: Type.String({ pattern: '^/([A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*)?$', description: 'canonical path prefix, no trailing slash' }),
  methods: Type.Array(Method, { minItems: 1, uniqueItems: true }),
  upstream: Id,
  stripPrefix: Type.Boolean({ default: false }),
  authentication: StringEnum(['jwt', 'mtls', 'jwt-and-mtls', 'jwt-or-mtls', 'public'], {
    default: 'jwt',
    description: 'what a caller must present: a token, a client certificate, both, either, or nothing (public: an anonymous principal, still judged by the policy)'
  }),
  issuers: Type.Optional(Type.Array(Id, { minItems: 1, uniqueItems: true, description: 'issuers accepted here; all when absent' })),
  rateLimit: Type.Optional(RateLimit),
  maxBodyBytes: Type.Optional(Type.Integer({ minimum: 0, description: 'overrides limits.maxBodyBytes for this route' })),
  timeouts: Type.Optional(RouteTimeouts),
  maxResponseBytes: Type.Optional(Type.Integer({ minimum: 0, description: 'response body cap: a larger declared length is 502, a longer stream is cut off' })),
  metadata: Type.Record(Type.String(), Type.Unknown(), { default: {} }),
  credentials: Type.Optional(Type.Array(CredentialKind, { uniqueItems: true, description: 'credentials attached upstream; all of the upstream\'s when absent, none when []' })),
  forwardAuthorization: Type.Boolean({ default: false, description: 'pass the client\'s own Authorization header on to the function' }),
  entrypoint: Type.Optional(Type.String({ pattern: '^[a-zA-Z_][a-zA-Z0-9_]*(/[a-zA-Z_][a-zA-Z0-9_]*)*$', description: 'policy entrypoint for this route (default: policy.entrypoint); every bundle must have it' })),
  ban: Type.Optional(Type.Object(BanRule.properties, { additionalProperties: false, description: 'automatic bans for this route; bans.default when absent' }))
}, { additionalProperties: false })

const Logging = Type.Object({
  level: StringEnum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], { default: 'info' })
}, { additionalProperties: false, default: {} })

const Lifecycle = Type.Object({
  drainTimeoutMs: Type.Integer({
    minimum: 0,
    maximum: 600_000,
    default: 10_000,
    description: 'on SIGTERM/SIGINT (and for the old config after a reload), how long in-flight requests may take to finish before their connections are cut'
  }),
  watch: Type.Boolean({ default: true, description: 'reload when the config file or the listener certificate/key files change (SIGHUP always reloads)' }),
  watchIntervalMs: Type.Integer({ minimum: 100, maximum: 60_000, default: 1000, description: 'how often watched files are polled' })
}, { additionalProperties: false, default: {} })

const Tracing = Type.Object({
  otlpUrl: Type.Optional(Type.String({
    format: 'uri',
    pattern: '^https?://',
    description: 'OTLP/HTTP traces endpoint, e.g. http://collector:4318/v1/traces; tracing is off when absent'
  })),
  serviceName: Type.String({ minLength: 1, default: 'portcullis', description: 'service.name of the exported spans' })
}, { additionalProperties: false, default: {} })

const DecisionLog = Type.Object({
  stdout: Type.Boolean({ default: false, description: 'write each decision event to the gateway log (pino, stdout)' }),
  file: Type.Optional(FilePathOf('written', { description: 'append each decision event as a JSON line to this file' })),
  mask: Type.Array(Type.String({ pattern: '^/(input|result)/' }), {
    default: [],
    description: 'JSON pointers removed from every event before it is written (e.g. /input/headers/x-user-email), listed in its "erased"'
  }),
  http: Type.Optional(Type.Object({
    url: HttpUrl,
    flushIntervalMs: Type.Integer({ minimum: 50, maximum: 600_000, default: 5_000 }),
    maxBatchEvents: Type.Integer({ minimum: 1, maximum: 100_000, default: 1_000 }),
    timeoutMs: Type.Integer({ minimum: 100, maximum: 60_000, default: 10_000 }),
    bearerToken: Type.Optional(Type.String({ minLength: 1, description: 'sent as Authorization: Bearer (use ${ENV})' })),
    tls: Type.Optional(Type.Object({ ca: Type.Optional(FilePath), cert: Type.Optional(FilePath), key: Type.Optional(FilePath) }, { additionalProperties: false })),
    plaintext: Type.Boolean({ default: false, description: 'allow an http:// URL (local development only)' })
  }, { additionalProperties: false, description: 'upload events in OPA\'s format (gzipped JSON array batches) to a decision-log collector' })),
  labels: Type.Record(Type.String(), Type.String(), { default: {}, description: 'added to every event\'s labels' }),
  maxQueuedEvents: Type.Integer({ minimum: 1, maximum: 1_000_000, default: 10_000, description: 'events waiting for a slow sink beyond this are dropped and counted' })
}, { additionalProperties: false, default: {}, description: 'one event per policy decision, in OPA\'s decision-log event shape' })

export const ConfigSchema = Type.Object({
  listen: Listen,
  admin: Admin,
  limits: Limits,
  logging: Logging,
  issuers: Type.Array(Issuer, { minItems: 1 }),
  policy: Policy,
  rateLimit: Type.Object({
    default: Type.Optional(RateLimit),
    store: RateLimitStore,
    preAuth: Type.Optional(PreAuthLimit),
    trustedProxies: Type.Array(Type.String({ minLength: 1 }), {
      default: [],
      description: 'peers (IPs or CIDRs) whose X-Forwarded-For is believed for the client address (the one the policy, upstream headers, limits, bans and logs see); every other peer is the client'
    }),
    tiers: Type.Record(Type.String({ pattern: '^[a-z0-9][a-z0-9_-]{0,62}$' }), RateLimit, {
      default: {},
      description: 'named limits a policy decision selects per principal (rateLimit.tier)'
    })
  }, { additionalProperties: false, default: {} }),
  upstreams: Type.Array(Upstream, { minItems: 1 }),
  routes: Type.Array(Route, { minItems: 1 }),
  assertion: Assertion,
  lifecycle: Lifecycle,
  tracing: Tracing,
  decisionLog: DecisionLog,
  revocation: Revocation,
  bans: Bans
}, { additionalProperties: false, $id: 'https://portcullis.dev/schema/config.json', title: 'Portcullis gateway configuration' })

export type Config = Static<typeof ConfigSchema>
export type RouteConfig = Config['routes'][number]
export type UpstreamConfig = Config['upstreams'][number]
export type IssuerConfig = Config['issuers'][number]
export type RateLimitConfig = Static<typeof RateLimit>
export type AssertionConfig = Config['assertion']
export type { CredentialKindName } from './schema-credentials.js'
export type RateLimitStoreConfig = Static<typeof RateLimitStore>
export type PreAuthLimitConfig = Static<typeof PreAuthLimit>
export type BanRuleConfig = Static<typeof BanRule>
