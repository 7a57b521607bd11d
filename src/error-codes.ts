import type * as errors from './errors.js'
import type { Outcome } from './observability/metrics.js'

/*
 * What each error code means to the rest of the gateway, in one table beside errors.ts: the stage
 * that refuses with it, the outcome label of portcullis_requests_total, and which kind of failure
 * (if any) counts toward a ban. Observability, the deny list and the error reply read this table
 * rather than guessing from a code's prefix. The type makes a code without a row a compile error;
 * test/errors.test.ts checks the rows against the code names and the table in docs/errors.md.
 */

/** A code a client can receive (errors.ts exports one constructor per code, plus the config error). */
export type ErrorCode = Extract<keyof typeof errors, `GW_ERR_${string}`>

export type ErrorStage = 'guard' | 'route' | 'admin' | 'authn' | 'authz' | 'rate' | 'upstream' | 'internal'

/** The failures a ban rule counts (`bans.*.on`): a bad identity, or a policy refusal. */
export type BanKind = 'authn' | 'authz'

export interface ErrorMeaning {
  stage: ErrorStage
  outcome: Outcome
  ban: BanKind | null
}

const row = (stage: ErrorStage, outcome: Outcome, ban: BanKind | null = null): ErrorMeaning => ({ stage, outcome, ban })

export const ERROR_CODES: Readonly<Record<ErrorCode, ErrorMeaning>> = {
  GW_ERR_GUARD_BAD_PATH: row('guard', 'bad_request'),
  GW_ERR_GUARD_METHOD: row('guard', 'bad_request'),
  GW_ERR_GUARD_BAD_REQUEST: row('guard', 'bad_request'),
  GW_ERR_GUARD_HEADERS_TOO_LARGE: row('guard', 'bad_request'),
  GW_ERR_GUARD_TIMEOUT: row('guard', 'bad_request'),
  GW_ERR_GUARD_URI_TOO_LONG: row('guard', 'bad_request'),
  GW_ERR_GUARD_UPGRADE: row('guard', 'bad_request'),
  GW_ERR_GUARD_BODY_TOO_LARGE: row('guard', 'bad_request'),
  GW_ERR_GUARD_HTTP_VERSION: row('guard', 'bad_request'),
  GW_ERR_GUARD_EXPECTATION: row('guard', 'bad_request'),
  GW_ERR_GUARD_AMBIGUOUS_PATH: row('guard', 'bad_request'),
  GW_ERR_GUARD_AUTHORITY_MISMATCH: row('guard', 'bad_request'),

  GW_ERR_ROUTE_NOT_FOUND: row('route', 'not_found'),
  GW_ERR_ROUTE_UNKNOWN_HOST: row('route', 'bad_request'),

  GW_ERR_ADMIN_UNKNOWN_HOST: row('admin', 'bad_request'),

  GW_ERR_AUTHN_MISSING: row('authn', 'unauthenticated', 'authn'),
  GW_ERR_AUTHN_MALFORMED: row('authn', 'unauthenticated', 'authn'),
  GW_ERR_AUTHN_UNKNOWN_ISSUER: row('authn', 'unauthenticated', 'authn'),
  GW_ERR_AUTHN_EXPIRED: row('authn', 'unauthenticated', 'authn'),
  GW_ERR_AUTHN_INVALID: row('authn', 'unauthenticated', 'authn'),
  GW_ERR_AUTHN_CERTIFICATE: row('authn', 'unauthenticated', 'authn'),
  GW_ERR_AUTHN_REVOKED: row('authn', 'unauthenticated', 'authn'),
  // The gateway's own trouble, not the caller's: never counted toward a ban.
  GW_ERR_AUTHN_KEYS_UNAVAILABLE: row('authn', 'not_ready'),
  GW_ERR_AUTHN_REVOCATION_UNAVAILABLE: row('authn', 'not_ready'),

  GW_ERR_AUTHZ_DENIED: row('authz', 'denied', 'authz'),
  GW_ERR_AUTHZ_NOT_READY: row('authz', 'not_ready'),
  GW_ERR_AUTHZ_POLICY_ERROR: row('authz', 'error'),
  GW_ERR_AUTHZ_BAD_DECISION: row('authz', 'error'),
  GW_ERR_AUTHZ_POLICY_ABORTED: row('authz', 'error'),
  GW_ERR_AUTHZ_POLICY_TIMEOUT: row('authz', 'error'),

  GW_ERR_RATE_LIMITED: row('rate', 'rate_limited'),
  GW_ERR_RATE_BANNED: row('rate', 'rate_limited'),
  // A 429, but from the per-caller cap of the forward stage, not the limiter: counted as it always was.
  GW_ERR_RATE_CONCURRENCY: row('rate', 'bad_request'),
  GW_ERR_RATE_LIMIT_STORE: row('rate', 'error'),
  GW_ERR_RATE_LIMIT_TIER: row('rate', 'error'),

  GW_ERR_UPSTREAM_CONNECT: row('upstream', 'upstream_error'),
  GW_ERR_UPSTREAM_TLS: row('upstream', 'upstream_error'),
  GW_ERR_UPSTREAM_TIMEOUT: row('upstream', 'upstream_error'),
  GW_ERR_UPSTREAM_FAILED: row('upstream', 'upstream_error'),
  GW_ERR_UPSTREAM_CONNECT_TIMEOUT: row('upstream', 'upstream_error'),
  GW_ERR_UPSTREAM_BODY_TIMEOUT: row('upstream', 'upstream_error'),
  GW_ERR_UPSTREAM_TOTAL_TIMEOUT: row('upstream', 'upstream_error'),
  GW_ERR_UPSTREAM_UNAVAILABLE: row('upstream', 'upstream_error'),
  GW_ERR_UPSTREAM_RESPONSE_TOO_LARGE: row('upstream', 'upstream_error'),
  GW_ERR_UPSTREAM_CREDENTIALS: row('upstream', 'upstream_error'),
  GW_ERR_UPSTREAM_BUSY: row('upstream', 'upstream_error'),
  GW_ERR_UPSTREAM_SHUTDOWN: row('upstream', 'upstream_error'),

  GW_ERR_INTERNAL: row('internal', 'error')
}

/** The row of a code, or undefined for anything that is not one of the gateway's codes. */
export function meaningOf (code: string): ErrorMeaning | undefined {
  return Object.hasOwn(ERROR_CODES, code) ? ERROR_CODES[code as ErrorCode] : undefined
}
