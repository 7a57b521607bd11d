import createError from '@fastify/error'

/*
 * Every error a client can receive, in one table. Codes are GW_ERR_<STAGE>_<WHAT>, the export name is
 * the code, and docs/errors.md documents each one (a test keeps the two in step). Released codes are
 * never renamed or reused. Messages are safe to show a client: no tokens, paths of files or stacks.
 */

// Edge guards
export const GW_ERR_GUARD_BAD_PATH = createError('GW_ERR_GUARD_BAD_PATH', 'request path is not canonical: %s', 400)
export const GW_ERR_GUARD_METHOD = createError('GW_ERR_GUARD_METHOD', 'method %s is not supported', 405)
export const GW_ERR_GUARD_BAD_REQUEST = createError('GW_ERR_GUARD_BAD_REQUEST', 'bad request', 400)
export const GW_ERR_GUARD_HEADERS_TOO_LARGE = createError('GW_ERR_GUARD_HEADERS_TOO_LARGE', 'request headers exceed the limit', 431)
export const GW_ERR_GUARD_TIMEOUT = createError('GW_ERR_GUARD_TIMEOUT', 'request was not received in time', 408)
export const GW_ERR_GUARD_URI_TOO_LONG = createError('GW_ERR_GUARD_URI_TOO_LONG', 'request target exceeds the limit', 414)
export const GW_ERR_GUARD_UPGRADE = createError('GW_ERR_GUARD_UPGRADE', 'protocol upgrades are not supported here', 501)
export const GW_ERR_GUARD_BODY_TOO_LARGE = createError('GW_ERR_GUARD_BODY_TOO_LARGE', 'request body exceeds the limit', 413)
export const GW_ERR_GUARD_HTTP_VERSION = createError('GW_ERR_GUARD_HTTP_VERSION', 'only HTTP/1.1 and HTTP/1.0 requests are served here', 505)
export const GW_ERR_GUARD_EXPECTATION = createError('GW_ERR_GUARD_EXPECTATION', 'the only expectation supported is 100-continue', 417)
export const GW_ERR_GUARD_AMBIGUOUS_PATH = createError('GW_ERR_GUARD_AMBIGUOUS_PATH', 'request path is one decoding away from another path: %s', 400)
// HTTP/2 (issue #21): the :authority pseudo-header and a Host header that name different hosts.
export const GW_ERR_GUARD_AUTHORITY_MISMATCH = createError('GW_ERR_GUARD_AUTHORITY_MISMATCH', 'the :authority and Host of the request disagree', 400)

// Route match
export const GW_ERR_ROUTE_NOT_FOUND = createError('GW_ERR_ROUTE_NOT_FOUND', 'no route for %s %s', 404)
export const GW_ERR_ROUTE_UNKNOWN_HOST = createError('GW_ERR_ROUTE_UNKNOWN_HOST', 'this gateway does not serve that host', 404)

// Admin listener
export const GW_ERR_ADMIN_UNKNOWN_HOST = createError('GW_ERR_ADMIN_UNKNOWN_HOST', 'the admin listener does not answer for that host', 421)

// Authenticate
export const GW_ERR_AUTHN_MISSING = createError('GW_ERR_AUTHN_MISSING', 'authentication required', 401)
export const GW_ERR_AUTHN_MALFORMED = createError('GW_ERR_AUTHN_MALFORMED', 'malformed credentials: %s', 401)
export const GW_ERR_AUTHN_UNKNOWN_ISSUER = createError('GW_ERR_AUTHN_UNKNOWN_ISSUER', 'token issuer is not trusted for this route', 401)
export const GW_ERR_AUTHN_EXPIRED = createError('GW_ERR_AUTHN_EXPIRED', 'token has expired', 401)
export const GW_ERR_AUTHN_INVALID = createError('GW_ERR_AUTHN_INVALID', 'token is not valid: %s', 401)
export const GW_ERR_AUTHN_CERTIFICATE = createError('GW_ERR_AUTHN_CERTIFICATE', 'client certificate refused: %s', 401)
export const GW_ERR_AUTHN_KEYS_UNAVAILABLE = createError('GW_ERR_AUTHN_KEYS_UNAVAILABLE', 'issuer keys are unavailable', 503)
export const GW_ERR_AUTHN_REVOKED = createError('GW_ERR_AUTHN_REVOKED', 'credentials have been revoked', 401)
export const GW_ERR_AUTHN_REVOCATION_UNAVAILABLE = createError('GW_ERR_AUTHN_REVOCATION_UNAVAILABLE', 'revocations cannot be checked right now', 503)

// Authorize
export const GW_ERR_AUTHZ_DENIED = createError('GW_ERR_AUTHZ_DENIED', 'access denied by policy', 403)
export const GW_ERR_AUTHZ_NOT_READY = createError('GW_ERR_AUTHZ_NOT_READY', 'no policy is loaded', 503)
export const GW_ERR_AUTHZ_POLICY_ERROR = createError('GW_ERR_AUTHZ_POLICY_ERROR', 'policy evaluation failed', 500)
export const GW_ERR_AUTHZ_BAD_DECISION = createError('GW_ERR_AUTHZ_BAD_DECISION', 'policy returned no usable decision', 500)
export const GW_ERR_AUTHZ_POLICY_ABORTED = createError('GW_ERR_AUTHZ_POLICY_ABORTED', 'policy evaluation was aborted', 503)
export const GW_ERR_AUTHZ_POLICY_TIMEOUT = createError('GW_ERR_AUTHZ_POLICY_TIMEOUT', 'policy evaluation took longer than allowed', 503)

// Rate limit
export const GW_ERR_RATE_LIMITED = createError('GW_ERR_RATE_LIMITED', 'rate limit exceeded, retry in %s seconds', 429)
export const GW_ERR_RATE_CONCURRENCY = createError('GW_ERR_RATE_CONCURRENCY', 'too many requests in flight for this caller', 429)
export const GW_ERR_RATE_LIMIT_STORE = createError('GW_ERR_RATE_LIMIT_STORE', 'rate limit cannot be checked right now', 503)
export const GW_ERR_RATE_LIMIT_TIER = createError('GW_ERR_RATE_LIMIT_TIER', 'policy selected an unknown rate-limit tier', 500)
export const GW_ERR_RATE_BANNED = createError('GW_ERR_RATE_BANNED', 'too many failed requests, retry in %s seconds', 429)

// Upstream
export const GW_ERR_UPSTREAM_CONNECT = createError('GW_ERR_UPSTREAM_CONNECT', 'upstream is unreachable', 502)
export const GW_ERR_UPSTREAM_TLS = createError('GW_ERR_UPSTREAM_TLS', 'upstream TLS handshake failed', 502)
export const GW_ERR_UPSTREAM_TIMEOUT = createError('GW_ERR_UPSTREAM_TIMEOUT', 'upstream did not answer in time', 504)
export const GW_ERR_UPSTREAM_FAILED = createError('GW_ERR_UPSTREAM_FAILED', 'upstream request failed', 502)
export const GW_ERR_UPSTREAM_CONNECT_TIMEOUT = createError('GW_ERR_UPSTREAM_CONNECT_TIMEOUT', 'upstream did not accept a connection in time', 504)
export const GW_ERR_UPSTREAM_BODY_TIMEOUT = createError('GW_ERR_UPSTREAM_BODY_TIMEOUT', 'upstream response body stalled', 504)
export const GW_ERR_UPSTREAM_TOTAL_TIMEOUT = createError('GW_ERR_UPSTREAM_TOTAL_TIMEOUT', 'upstream exchange took longer than allowed', 504)
export const GW_ERR_UPSTREAM_UNAVAILABLE = createError('GW_ERR_UPSTREAM_UNAVAILABLE', 'upstream is failing; request not sent', 503)
export const GW_ERR_UPSTREAM_RESPONSE_TOO_LARGE = createError('GW_ERR_UPSTREAM_RESPONSE_TOO_LARGE', 'upstream response exceeds the limit', 502)
export const GW_ERR_UPSTREAM_CREDENTIALS = createError('GW_ERR_UPSTREAM_CREDENTIALS', 'credentials for the upstream could not be obtained', 502)
export const GW_ERR_UPSTREAM_BUSY = createError('GW_ERR_UPSTREAM_BUSY', 'upstream is at capacity; retry later', 503)
export const GW_ERR_UPSTREAM_SHUTDOWN = createError('GW_ERR_UPSTREAM_SHUTDOWN', 'gateway is shutting down; the request did not complete', 503)

// Internal
export const GW_ERR_INTERNAL = createError('GW_ERR_INTERNAL', 'internal error', 500)

// Configuration: never a client's answer. A config that cannot run is refused at start or reload
// with every problem found, each with its JSON pointer (config/load.ts and the section checks).
export interface ConfigProblem { path: string, message: string }

/** A config that cannot run. `problems` lists every issue found, each with its JSON pointer. */
export class ConfigError extends Error {
  readonly code = 'GW_ERR_CONFIG_INVALID'
  constructor (readonly source: string, readonly problems: ConfigProblem[], hint?: string) {
    super(`invalid configuration in ${source}:\n` + problems.map(p => `- ${p.path || '/'}: ${p.message}`).join('\n') + (hint !== undefined ? `\n${hint}` : ''))
    this.name = 'ConfigError'
  }
}
