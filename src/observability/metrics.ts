import { Counter, Gauge, collectDefaultMetrics, type Registry } from 'prom-client'
import { createEventLoopDelay } from './event-loop-delay.js'
import { BoundHistogram } from './histogram.js'
import { createShadowMetrics } from './shadow-metrics.js'
import { createTally } from './tally.js'

/*
 * Every metric the gateway exports, on a registry the caller owns (never prom-client's global one).
 * Labels are bounded: route and upstream ids come from config, outcomes and reasons from fixed sets.
 * Subjects, tokens and raw paths never become labels.
 */

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]
const POLICY_BUCKETS = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01, 0.05]

export type Outcome =
  | 'forwarded' | 'bad_request' | 'not_found' | 'unauthenticated' | 'denied' | 'rate_limited'
  | 'not_ready' | 'upstream_error' | 'error'

// Counted by each process that applies or refuses a config: with --workers, the workers count what they
// applied and the primary what it refused before any worker saw it (the scrape sums both).
const CONFIG_RELOADS = {
  name: 'portcullis_config_reloads_total',
  help: 'Config reloads, by result (success, failure); a failed reload leaves the previous config serving',
  labelNames: ['result'] as const
}

// long: a table of metric definitions, one after another.
export function createMetrics (registry: Registry) {
  const registers = [registry]
  collectDefaultMetrics({ register: registry, prefix: 'portcullis_' })
  // Certificate name → notAfter (ms since the epoch); the expiry gauge reads it at scrape time.
  const certificateNotAfter = new Map<string, number>()
  // What the deny list holds, read at scrape time; set by app.ts (the lists outlive config reloads).
  const denyListCounts: { revocations?: (kind: 'jti' | 'sub' | 'cert') => number, bans?: (scope: 'ip' | 'sub') => number } = {}
  // Issuer id → age of its key set in seconds (null: none fetched); set by the active generation.
  const issuerKeyAges = new Map<string, () => number | null>()
  // prom-client names these gauges *_total, which Prometheus reserves for counters (promtool flags them).
  for (const name of ['active_handles_total', 'active_requests_total', 'active_resources_total']) registry.removeSingleMetric(`portcullis_nodejs_${name}`)
  // Read by the scrape and by the Redis health check (its command deadline allows for it).
  const eventLoopDelay = createEventLoopDelay()
  // Bumped on every request: counted as plain numbers and handed on when read (tally.ts).
  const requestTally = createTally<'route' | 'method' | 'outcome' | 'status_class'>()
  const protocolTally = createTally<'protocol'>()
  const policyDecisionTally = createTally<'route' | 'result'>()
  const requestsInFlight = { count: 0 }
  return {
    registry,
    eventLoopDelay,
    /** Stops the event-loop sampler; the registry stays readable. */
    close (): void { eventLoopDelay.close() },
    requests: new Counter({
      name: 'portcullis_requests_total',
      help: 'Requests answered, by route, method, outcome and status class',
      labelNames: ['route', 'method', 'outcome', 'status_class'] as const,
      registers,
      collect () { requestTally.flush(this) }
    }),
    requestTally,
    // Observed on every request, as are policyDuration and upstreamDuration: through a series bound
    // once per label set, not prom-client's Histogram (histogram.ts).
    requestDuration: new BoundHistogram({
      name: 'portcullis_request_duration_seconds',
      help: 'Time from request start to response end, by route, method and outcome',
      labelNames: ['route', 'method', 'outcome'] as const,
      buckets: LATENCY_BUCKETS,
      registers
    }),
    // Issue #21: which protocol clients speak (HTTP/1.0, HTTP/1.1, HTTP/2; anything else the guard refuses is "other").
    requestsByProtocol: new Counter({
      name: 'portcullis_requests_by_protocol_total',
      help: 'Requests answered, by the protocol the client spoke',
      labelNames: ['protocol'] as const,
      registers,
      collect () { protocolTally.flush(this) }
    }),
    protocolTally,
    // Issue #21, rapid reset: HTTP/2 connections the gateway closed for abuse, and the reconnects it refused.
    http2CutOffs: new Counter({
      name: 'portcullis_http2_cutoffs_total',
      help: 'HTTP/2 connections closed for abuse, by reason: client_resets (more cancelled streams than limits.http2.resetBurst and resetsPerSecond allow; GOAWAY ENHANCE_YOUR_CALM), flood (a CONTINUATION, SETTINGS or PING flood nghttp2 ended)',
      labelNames: ['reason'] as const,
      registers
    }),
    http2ConnectionsRefused: new Counter({
      name: 'portcullis_http2_connections_refused_total',
      help: 'Connections refused before TLS because their address was cut off for HTTP/2 abuse moments ago (limits.http2.abusePenaltySeconds)',
      registers
    }),
    // Moved on every request: a plain number, read by the gauge when scraped (as the tallies above).
    requestsInFlight,
    inFlight: new Gauge({ name: 'portcullis_requests_in_flight', help: 'Requests being handled now', registers, collect () { this.set(requestsInFlight.count) } }),
    rejected: new Counter({
      name: 'portcullis_rejected_total',
      help: 'Requests the gateway refused, by reason (the error code without GW_ERR_, lower-cased)',
      labelNames: ['reason'] as const,
      registers
    }),
    authnFailures: new Counter({
      name: 'portcullis_authn_failures_total',
      help: 'Requests refused by the authenticate stage, by reason',
      labelNames: ['route', 'reason'] as const,
      registers
    }),
    policyDecisions: new Counter({
      name: 'portcullis_policy_decisions_total',
      help: 'Policy decisions, by route and result (allow, deny, error)',
      labelNames: ['route', 'result'] as const,
      registers,
      collect () { policyDecisionTally.flush(this) }
    }),
    policyDecisionTally,
    policyDuration: new BoundHistogram({
      name: 'portcullis_policy_evaluation_seconds',
      help: 'Time spent evaluating the policy for one request',
      buckets: POLICY_BUCKETS,
      registers
    }),
    bundleLoaded: new Gauge({
      name: 'portcullis_policy_bundle_loaded',
      help: '1 while a policy bundle is active, else 0',
      registers
    }),
    bundleActivatedAt: new Gauge({
      name: 'portcullis_policy_bundle_activation_timestamp_seconds',
      help: 'When the active policy bundle was activated',
      registers
    }),
    bundleLoadFailures: new Counter({
      name: 'portcullis_policy_bundle_load_failures_total',
      help: 'Policy bundles that failed to load and were not activated',
      registers
    }),
    policyEngineResets: new Counter({
      name: 'portcullis_policy_engine_resets_total',
      help: 'Policy instances discarded and made again after an evaluation faulted, by reason (trap, abort, timeout, error)',
      labelNames: ['reason'] as const,
      registers
    }),
    rateLimited: new Counter({
      name: 'portcullis_rate_limited_total',
      help: 'Requests refused with 429, by route',
      labelNames: ['route'] as const,
      registers
    }),
    upstreamDuration: new BoundHistogram({
      name: 'portcullis_upstream_duration_seconds',
      help: 'Time until the upstream answered with headers, by upstream and status class',
      labelNames: ['upstream', 'status_class'] as const,
      buckets: LATENCY_BUCKETS,
      registers
    }),
    bundleInfo: new Gauge({
      name: 'portcullis_policy_bundle_info',
      help: 'The active policy bundle: one series, value 1, labelled with its revision (replaced on each activation)',
      labelNames: ['revision'] as const,
      registers
    }),
    decisionLogEvents: new Counter({
      name: 'portcullis_decision_log_events_total',
      help: 'Decision-log events, by sink and outcome (written, dropped)',
      labelNames: ['sink', 'outcome'] as const,
      registers
    }),
    upstreamErrors: new Counter({
      name: 'portcullis_upstream_errors_total',
      help: 'Upstream requests that failed without a response, by upstream and kind',
      labelNames: ['upstream', 'kind'] as const,
      registers
    }),
    certificateNotAfter,
    // Set by whoever holds a certificate (the listener, each upstream's client pair); read at scrape
    // time. A timestamp, so alerts compute the time left: `... - time() < 14 * 86400`.
    certificateExpiry: new Gauge({
      name: 'portcullis_certificate_expiry_timestamp_seconds',
      help: 'When each certificate the gateway holds stops being valid (notAfter), by certificate (listener, upstream/<id>)',
      labelNames: ['certificate'] as const,
      registers,
      collect () {
        this.reset()
        for (const [certificate, notAfter] of certificateNotAfter) this.set({ certificate }, notAfter / 1000)
      }
    }),
    certificateReloads: new Counter({
      name: 'portcullis_certificate_reloads_total',
      help: 'Certificate files reloaded after a change on disk, by certificate and result (loaded, failed: old one kept)',
      labelNames: ['certificate', 'result'] as const,
      registers
    }),
    upstreamCircuitState: new Gauge({
      name: 'portcullis_upstream_circuit_state',
      help: 'Circuit breaker per upstream: 0 closed, 1 open (failing fast), 2 half-open (one probe in flight)',
      labelNames: ['upstream'] as const,
      registers
    }),
    upstreamQueued: new Gauge({
      name: 'portcullis_upstream_queued_requests',
      help: 'Requests waiting for a connection to their upstream (all busy), by upstream; at most its maxQueue',
      labelNames: ['upstream'] as const,
      registers
    }),
    upstreamRetries: new Counter({
      name: 'portcullis_upstream_retries_total',
      help: 'Requests sent a second time after the first could not connect, by upstream',
      labelNames: ['upstream'] as const,
      registers
    }),
    credentialFailures: new Counter({
      name: 'portcullis_upstream_credential_failures_total',
      help: 'Requests refused because a credential for the function could not be made, by upstream and kind',
      labelNames: ['upstream', 'kind'] as const,
      registers
    }),
    assertionKeyRotations: new Counter({
      name: 'portcullis_assertion_key_rotations_total',
      help: 'New assertion signing keys made by rotation',
      registers
    }),
    assertionKeys: new Gauge({
      name: 'portcullis_assertion_keys',
      help: 'Assertion keys published in the gateway JWKS (signing, upcoming and retiring)',
      registers
    }),
    rateLimitStoreErrors: new Counter({
      name: 'portcullis_ratelimit_store_errors_total',
      help: 'Rate-limit decisions the shared store could not make (down, timed out, odd reply), by route (pre_auth for the per-IP limit) and what was done instead (fail_closed, local)',
      labelNames: ['route', 'action'] as const,
      registers
    }),
    rateLimitStoreUp: new Gauge({
      name: 'portcullis_ratelimit_store_up',
      help: '1 while the rate-limit store answers (always, for the memory store), else 0',
      registers
    }),
    eventLoopDelaySeconds: new Gauge({
      name: 'portcullis_event_loop_delay_seconds',
      help: 'How late the event loop ran beyond its 10 ms sampling tick over the last complete 5-second window, by stat (p50, p99, max); under --workers the highest worker\'s',
      labelNames: ['stat'] as const,
      aggregator: 'max',
      registers,
      collect () {
        const { p50, p99, max } = eventLoopDelay.last
        this.set({ stat: 'p50' }, p50)
        this.set({ stat: 'p99' }, p99)
        this.set({ stat: 'max' }, max)
      }
    }),
    preAuthLimited: new Counter({
      name: 'portcullis_ratelimit_pre_auth_limited_total',
      help: 'Requests refused with 429 by the per-client-IP limit before authentication',
      registers
    }),
    configReloads: new Counter({ ...CONFIG_RELOADS, registers }),
    jwksFetches: new Counter({
      name: 'portcullis_jwks_fetches_total',
      help: 'Fetches of an issuer\'s JWKS (first load and every refresh), by issuer id and result (success, failure)',
      labelNames: ['issuer', 'result'] as const,
      registers
    }),
    issuerKeyAges,
    issuerKeyAge: new Gauge({
      name: 'portcullis_issuer_keys_age_seconds',
      help: 'Seconds since an issuer\'s key set was last fetched, by issuer id; grows while the IdP cannot be reached (the keys keep verifying until maxStaleSeconds). Absent until a set was fetched; not exported for keys from a file or a secret',
      labelNames: ['issuer'] as const,
      registers,
      collect () {
        this.reset()
        for (const [issuer, age] of issuerKeyAges) {
          const value = age()
          if (value !== null) this.set({ issuer }, value)
        }
      }
    }),
    configLoadedAt: new Gauge({
      name: 'portcullis_config_last_reload_success_timestamp_seconds',
      help: 'When the active config was applied',
      registers
    }),
    revokedRequests: new Counter({
      name: 'portcullis_revoked_requests_total',
      help: 'Requests refused with 401 because their token id, subject or client certificate is revoked, by route and kind (jti, sub, cert)',
      labelNames: ['route', 'kind'] as const,
      registers
    }),
    denyListCounts,
    revocations: new Gauge({
      name: 'portcullis_revocations',
      help: 'Revocations in force, by kind (jti, sub, cert)',
      labelNames: ['kind'] as const,
      registers,
      collect () {
        const count = denyListCounts.revocations
        if (count !== undefined) for (const kind of ['jti', 'sub', 'cert'] as const) this.set({ kind }, count(kind))
      }
    }),
    revocationStoreErrors: new Counter({
      name: 'portcullis_revocation_store_errors_total',
      help: 'Reads and writes of the shared revocation set (Redis) that failed',
      registers
    }),
    banStoreErrors: new Counter({
      name: 'portcullis_ban_store_errors_total',
      help: 'Reads and writes of the bans shared between replicas (Redis) that failed; each replica keeps its own bans meanwhile',
      registers
    }),
    bansImposed: new Counter({
      name: 'portcullis_bans_total',
      help: 'Automatic bans imposed after repeated failures, by scope (ip, sub)',
      labelNames: ['scope'] as const,
      registers
    }),
    bansActive: new Gauge({
      name: 'portcullis_bans_active',
      help: 'Bans in force in this process, by scope (ip, sub)',
      labelNames: ['scope'] as const,
      registers,
      collect () {
        const count = denyListCounts.bans
        if (count !== undefined) for (const scope of ['ip', 'sub'] as const) this.set({ scope }, count(scope))
      }
    }),
    bannedRequests: new Counter({
      name: 'portcullis_banned_requests_total',
      help: 'Requests refused with 429 because the client IP or subject is banned, by route and scope',
      labelNames: ['route', 'scope'] as const,
      registers
    }),
    // The shadow policy's (policy.shadow): observability/shadow-metrics.ts.
    shadow: createShadowMetrics(registers)
  }
}

export type Metrics = ReturnType<typeof createMetrics>

export type WorkerState = 'starting' | 'listening' | 'waiting'

/**
 * The cluster primary's own metrics (`start --workers N`), served in the same scrape as the workers'
 * sum. `workerStates` is read at scrape time, from the primary's worker slots.
 */
export function createClusterMetrics (registry: Registry, workerStates: () => Record<WorkerState, number>) {
  const registers = [registry]
  return {
    registry,
    workerRestarts: new Counter({
      name: 'portcullis_worker_restarts_total',
      help: 'Workers started again after one exited unexpectedly (with --workers); each restart waits a back-off that doubles while workers keep dying',
      registers
    }),
    workers: new Gauge({
      name: 'portcullis_workers',
      help: 'Worker slots by state (with --workers): starting, listening, or waiting out a restart back-off',
      labelNames: ['state'] as const,
      registers,
      collect () {
        for (const [state, n] of Object.entries(workerStates())) this.set({ state }, n)
      }
    }),
    configReloads: new Counter({ ...CONFIG_RELOADS, registers })
  }
}

export type ClusterMetrics = ReturnType<typeof createClusterMetrics>

export function statusClass (status: number): string {
  return `${Math.floor(status / 100)}xx`
}
