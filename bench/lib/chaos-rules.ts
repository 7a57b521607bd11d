import type { Episode } from './chaos-faults.js'
import type { FaultKind } from './chaos-schedule.js'
import type { Answer, RequestKind } from './chaos-traffic.js'
import { storeDownBetween, type ProbeSample } from './chaos-probe.js'
import { ISSUER, STORE } from './chaos-stack.js'

/*
 * The declared failure modes: what each kind of request may be answered while a fault is active (a
 * request counts as under a fault when its time in flight overlaps the fault plus a short grace
 * after it ends). Everything else is "outside the declared failure modes" and fails the run. These
 * are the promises of docs/operations.md and issue #17, written so a machine can hold the gateway to
 * them; docs/errors.md has the codes.
 */

export type Verdict = 'expected' | 'declared' | 'outside'
export interface Judgement { verdict: Verdict, mode: string, faults: string[] }

interface Expect { status: number, code?: string }

/** Without any fault. */
export const NORMAL: Record<RequestKind, Expect> = {
  'ok-local': { status: 200 },
  'ok-strict': { status: 200 },
  denied: { status: 403, code: 'GW_ERR_AUTHZ_DENIED' },
  'no-token': { status: 401, code: 'GW_ERR_AUTHN_MISSING' },
  // The gateway asks the IdP once (single flight, cooldown) and then refuses: not a bad request to retry.
  'unknown-kid': { status: 401, code: 'GW_ERR_AUTHN_INVALID' }
}

/** After a fault is undone, how long its effects may linger (recovery, back-off, open circuits). */
export const GRACE_MS: Record<string, number> = { idp: 3000, redis: 5000, fn: 5000 }
/** A killed worker: only requests in flight on it around the kill may fail, as connection errors. */
export const WORKER_KILL_WINDOW_MS = 1000
/** How long a new worker may take to start (and to try its dependencies at start). */
const WORKER_START_MS = 10_000
/**
 * A new worker that could not fetch keys at start retries with back-off capped at
 * jwksCacheSeconds; after the IdP is back, its first keys may take that long (plus a fetch).
 */
const FRESH_WORKER_KEYS_MS = ISSUER.jwksCacheSeconds * 1000 + ISSUER.fetchTimeoutMs + 1000

const lane = (k: FaultKind): string => k.split('-')[0]!
const overlaps = (a: Answer, from: number, to: number): boolean => a.t0 <= to && a.t1 >= from
const has = (a: Answer, status: number, code?: string): boolean => a.status === status && (code === undefined || a.code === code)
const WITH_TOKEN: RequestKind[] = ['ok-local', 'ok-strict', 'denied', 'unknown-kid']
const FORWARDED: RequestKind[] = ['ok-local', 'ok-strict']

/** The IdP cannot answer within the fetch timeout: down, stopped, or slower than the timeout. */
const idpUnreachable = (e: Episode): boolean =>
  e.kind === 'idp-kill' || e.kind === 'idp-pause' || (e.kind === 'idp-slow' && (e.slowMs ?? 0) >= ISSUER.fetchTimeoutMs)

/** What one active fault allows for this answer beyond NORMAL; a label, or null. */
function allowedBy (e: Episode, a: Answer): string | null {
  switch (e.kind) {
    case 'idp-kill': case 'idp-pause': case 'idp-slow':
      // Known kids keep verifying from the last good keys; an unknown kid cannot be checked: retryable 503.
      return a.kind === 'unknown-kid' && has(a, 503, 'GW_ERR_AUTHN_KEYS_UNAVAILABLE') ? `${e.kind}: unknown kid 503 keys unavailable` : null
    case 'idp-rotate':
      // The new kid is fetched on first sight and accepted: nothing to excuse there. A token signed
      // with the old key before the switch that reaches the gateway after its withdrawal is refused.
      return a.kid === e.withdrawnKid && a.t1 >= e.end && has(a, 401, 'GW_ERR_AUTHN_INVALID') ? 'idp-rotate: token of the withdrawn key 401' : null
    case 'redis-kill': case 'redis-pause':
      if (a.kind === 'ok-local' && (has(a, 429, 'GW_ERR_RATE_LIMITED'))) return `${e.kind}: local route 429 from the fallback share`
      if (a.kind === 'ok-strict' && has(a, 503, 'GW_ERR_RATE_LIMIT_STORE')) return `${e.kind}: fail-closed route 503 store`
      return null
    case 'fn-kill': case 'fn-pause':
      if (!FORWARDED.includes(a.kind) || a.status === null || ![502, 503, 504].includes(a.status) || a.code?.startsWith('GW_ERR_UPSTREAM_') !== true) return null
      // A busy upstream says when to come back.
      if (a.code === 'GW_ERR_UPSTREAM_BUSY' && a.retryAfter === null) return null
      return `${e.kind}: ${a.status} ${a.code}`
    case 'worker-kill':
      return a.replica === 'B' && a.error !== null && !/TIMEOUT/i.test(a.error) ? 'worker-kill: connection error on replica B' : null
    case 'reload':
      return null
  }
}

/** The window in which a fault counts as active for an answer. */
function window (e: Episode): [number, number] {
  if (e.kind === 'worker-kill') return [e.start, e.start + WORKER_KILL_WINDOW_MS]
  if (e.kind === 'reload') return [e.start, e.start + 2000] // listed as context; it excuses nothing
  if (e.kind === 'idp-rotate') return [e.start, Infinity] // a withdrawn key stays withdrawn
  return [e.start, e.end + (GRACE_MS[lane(e.kind)] ?? 0)]
}

/**
 * A worker started while the IdP or Redis was away holds no keys or no synced revocation set:
 * process state does not survive a crash, and it fails closed (503) until the dependency is back.
 */
function freshWorker (episodes: Episode[], a: Answer): string | null {
  if (a.replica !== 'B' || !WITH_TOKEN.includes(a.kind)) return null
  for (const kill of episodes.filter(e => e.kind === 'worker-kill' && e.start <= a.t1)) {
    for (const dep of episodes) {
      if (dep.start > kill.start + WORKER_START_MS || dep.end + GRACE_MS[lane(dep.kind)]! < kill.start) continue
      if (idpUnreachable(dep) && has(a, 503, 'GW_ERR_AUTHN_KEYS_UNAVAILABLE') && a.t0 <= dep.end + FRESH_WORKER_KEYS_MS) {
        return `worker started during ${dep.kind}: 503 keys unavailable`
      }
      if (lane(dep.kind) === 'redis' && a.kind !== 'unknown-kid' && has(a, 503, 'GW_ERR_AUTHN_REVOCATION_UNAVAILABLE') && a.t0 <= dep.end + GRACE_MS.redis!) {
        return `worker started during ${dep.kind}: 503 revocations unavailable`
      }
    }
  }
  return null
}

/** Around a late answer, the store may have been seen down this much before or after it. */
const PROBE_SLACK_MS = 1000

export function judge (a: Answer, episodes: Episode[], probes: ProbeSample[]): Judgement {
  const active = episodes.filter(e => { const [from, to] = window(e); return overlaps(a, from, to) })
  const faults = active.map(e => e.kind)
  const normal = NORMAL[a.kind]
  if (a.error === null && has(a, normal.status, normal.code)) return { verdict: 'expected', mode: 'normal', faults }
  for (const e of active) {
    const mode = allowedBy(e, a)
    if (mode !== null) return { verdict: 'declared', mode, faults }
  }
  const fresh = freshWorker(episodes, a)
  if (fresh !== null) return { verdict: 'declared', mode: fresh, faults }
  // An unknown kid waits at most unknownKidWaitMs for the refresh it triggers, then gets a retryable
  // 503 (docs: issuers[].jwks): declared whenever the IdP, or the gateway asking it, is that slow.
  if (a.kind === 'unknown-kid' && has(a, 503, 'GW_ERR_AUTHN_KEYS_UNAVAILABLE') && a.t1 - a.t0 >= ISSUER.unknownKidWaitMs) {
    return { verdict: 'declared', mode: `key refresh slower than unknownKidWaitMs (${ISSUER.unknownKidWaitMs} ms): unknown kid 503`, faults }
  }
  // A store answer later than its deadline fails that one request (docs: rateLimit.store), even with
  // Redis healthy, e.g. when the gateway itself was starved of CPU. Such a refusal cannot come sooner
  // than the deadline, and the store stays up; a quicker one, or the replica reporting its store
  // down meanwhile, is a store marked down while Redis was fine (flapping, issue #17 case 7): outside.
  if (a.kind === 'ok-strict' && has(a, 503, 'GW_ERR_RATE_LIMIT_STORE') && a.t1 - a.t0 >= STORE.commandTimeoutMs &&
    !storeDownBetween(probes, a.replica, a.t0 - PROBE_SLACK_MS, a.t1 + PROBE_SLACK_MS)) {
    return { verdict: 'declared', mode: `store answer late (answer took ≥ ${STORE.commandTimeoutMs} ms): fail-closed 503`, faults }
  }
  return { verdict: 'outside', mode: 'outside the declared failure modes', faults }
}

/** The table above in words, for the report. */
export const DECLARED_MODES = [
  ['no fault', 'ok-local, ok-strict → 200; denied → 403 GW_ERR_AUTHZ_DENIED; no-token → 401 GW_ERR_AUTHN_MISSING; unknown-kid → 401 GW_ERR_AUTHN_INVALID'],
  ['IdP killed, paused or slow (+3 s)', 'known kids unchanged (last good keys); unknown-kid → 503 GW_ERR_AUTHN_KEYS_UNAVAILABLE'],
  ['IdP key rotation', 'a token with the newly published kid → 200 from its first use; a token signed with the old key before the switch and answered after its withdrawal → 401 GW_ERR_AUTHN_INVALID'],
  ['Redis killed or paused (+5 s)', 'ok-local → 200 or 429 GW_ERR_RATE_LIMITED (local fallback share); ok-strict → 503 GW_ERR_RATE_LIMIT_STORE; others unchanged'],
  ['function killed or paused (+5 s)', 'ok-local, ok-strict → 502/503/504 with a GW_ERR_UPSTREAM_* code (GW_ERR_UPSTREAM_BUSY only with Retry-After)'],
  ['worker of B killed (1 s)', 'replica B: a connection error for requests in flight'],
  ['worker of B started during an IdP or Redis outage', `replica B, requests with a token: 503 GW_ERR_AUTHN_KEYS_UNAVAILABLE until ${FRESH_WORKER_KEYS_MS / 1000} s after the IdP is back; 503 GW_ERR_AUTHN_REVOCATION_UNAVAILABLE until 5 s after Redis is back`],
  ['any time', `unknown-kid → 503 GW_ERR_AUTHN_KEYS_UNAVAILABLE if the answer took at least unknownKidWaitMs (${ISSUER.unknownKidWaitMs} ms): the refresh it asked for was not done in time`],
  ['any time', `ok-strict → 503 GW_ERR_RATE_LIMIT_STORE if the answer took at least commandTimeoutMs (${STORE.commandTimeoutMs} ms): that request's own store answer was late, and the replica kept reporting its store up (portcullis_ratelimit_store_up, sampled every second); a quicker one, or the store reported down, is the store marked down with Redis healthy: outside`],
  ['reload (SIGHUP to both)', 'nothing']
] as const
