import type { FastifyError } from 'fastify'
import { LRUCache } from 'lru-cache'
import { createDecoder } from 'fast-jwt'
import { decodeJwt, errors as joseErrors } from 'jose'
import type { IssuerConfig } from '../../config/schema.js'
import {
  GW_ERR_AUTHN_EXPIRED, GW_ERR_AUTHN_INVALID, GW_ERR_AUTHN_KEYS_UNAVAILABLE, GW_ERR_AUTHN_MALFORMED,
  GW_ERR_AUTHN_UNKNOWN_ISSUER
} from '../../errors.js'
import type { AuthnResult, JwtPrincipal, RouteContext } from '../types.js'
import { KeysUnavailableError, type KeySource } from './key-source.js'
import { createTokenVerifier, TokenRejected, type TokenVerifier } from './token-verifier.js'

// C0 controls and DEL (RFC 9110 §5.5 forbids them in field values).
const CONTROL = /[\u0000-\u001f\u007f]/
// A lone surrogate: with the u flag, only an unpaired half matches (a pair is one code point).
const LONE_SURROGATE = /\p{Cs}/u

/** Every string in the claims, names included, is valid Unicode (a policy, a log and a header can hold it). */
function wellFormed (value: unknown): boolean {
  if (typeof value === 'string') return !LONE_SURROGATE.test(value)
  if (value === null || typeof value !== 'object') return true
  if (Array.isArray(value)) return value.every(wellFormed)
  return Object.entries(value).every(([k, v]) => !LONE_SURROGATE.test(k) && wellFormed(v))
}

/*
 * Bearer JWT authentication. The unverified `iss` only selects which issuer's rules and keys to try;
 * the token is then verified against exactly that issuer (signature, pinned algorithms, exact iss,
 * audience, exp/nbf with leeway). Nothing from the token is used before that succeeds.
 */

const VERIFIED_CACHE_ENTRIES = 4096
const MAX_CACHED_TOKEN_BYTES = 4096 // bounds the cache at ~16 MiB of keys
// The scheme is case-insensitive (RFC 7235 §2.1, RFC 6750 §2.1): `bearer`, `BEARER` are the same scheme.
const BEARER = /^[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+) *$/

export interface Authenticator {
  readonly id: string
  /** Synchronous where no key is needed (a remembered token, a refusal on sight): no promise per request then. */
  authenticate: (headers: Readonly<Record<string, string | string[] | undefined>>, route: RouteContext) => AuthnResult | Promise<AuthnResult>
}

interface TrustedIssuer { config: IssuerConfig, keys: KeySource }

/** Tokens verified before, by the whole token, with the key set (and its version) that vouched for them. */
type VerifiedCache = LRUCache<string, { principal: JwtPrincipal, keys: KeySource, version: number }>

// The unverified header only picks the issuer's key; nothing else is read from it.
const decodeHeader = createDecoder({ complete: true }) as (token: string) => { header: Record<string, unknown> }

export function createJwtAuthenticator (issuers: ReadonlyArray<TrustedIssuer>): Authenticator {
  const byIssuer = new Map(issuers.map(i => [i.config.issuer, { ...i, verifier: createTokenVerifier(i.config) }]))
  // The shape check runs before the issuer is known, so it uses the largest limit; each issuer's own
  // limit applies once its token is identified.
  const maxTokenBytes = Math.max(...issuers.map(i => i.config.maxTokenBytes))
  // Clients send the same token for its whole lifetime, and a signature check costs 100-300 us. A
  // token verified once is remembered (keyed by the whole token, so any change to it misses) for
  // verifiedTokenCacheSeconds, never past its exp plus leeway, so it still stops working on time.
  // Only successes are cached.
  // Each entry remembers the key set it was verified under: when the IdP withdraws a key, tokens
  // signed with it are checked again rather than served from here.
  const verified: VerifiedCache = new LRUCache({ max: VERIFIED_CACHE_ENTRIES })
  const allowedOn = (principal: JwtPrincipal, route: RouteContext): boolean =>
    route.issuers === undefined || route.issuers.includes(principal.issuerId)


  return {
    id: 'jwt',
    authenticate (headers, route) {
      const header = headers.authorization
      if (header === undefined) return { kind: 'not-applicable' }
      if (typeof header !== 'string') return failure(new GW_ERR_AUTHN_MALFORMED('more than one Authorization header'), 'malformed')
      if (header.length > maxTokenBytes + 7) return failure(new GW_ERR_AUTHN_MALFORMED('token too large'), 'too_large')
      const token = BEARER.exec(header)?.[1]
      if (token === undefined) return failure(new GW_ERR_AUTHN_MALFORMED('expected "Authorization: Bearer <jwt>"'), 'malformed')
      const known = verified.get(token)
      // Served from here only while its key set is unchanged and still usable (not past maxStaleSeconds).
      if (known !== undefined && known.version === known.keys.version && known.keys.ready) {
        return allowedOn(known.principal, route) ? { kind: 'principal', principal: known.principal } : failure(new GW_ERR_AUTHN_UNKNOWN_ISSUER(), 'unknown_issuer')
      }

      let claimedIssuer: unknown
      try {
        claimedIssuer = decodeJwt(token).iss
      } catch {
        return failure(new GW_ERR_AUTHN_MALFORMED('token is not a JWT'), 'malformed')
      }
      const trusted = typeof claimedIssuer === 'string' ? byIssuer.get(claimedIssuer) : undefined
      if (trusted === undefined || (route.issuers !== undefined && !route.issuers.includes(trusted.config.id))) {
        return failure(new GW_ERR_AUTHN_UNKNOWN_ISSUER(), 'unknown_issuer')
      }

      if (token.length > trusted.config.maxTokenBytes) return failure(new GW_ERR_AUTHN_MALFORMED('token too large'), 'too_large')
      return verifyToken(token, trusted, verified)
    }
  }
}

/** The signature and claims of a token from a trusted issuer, with that issuer's keys. */
async function verifyToken (token: string, trusted: TrustedIssuer & { verifier: TokenVerifier }, verified: VerifiedCache): Promise<AuthnResult> {
  const { config, keys, verifier } = trusted
  // Read before verifying: a refresh during verification must not vouch for the older set.
  const version = keys.version
  try {
    let header: Record<string, unknown>
    try {
      header = decodeHeader(token).header
    } catch {
      return failure(new GW_ERR_AUTHN_INVALID('header is not a JSON object'), 'invalid')
    }
    if (typeof header.alg !== 'string') return failure(new GW_ERR_AUTHN_INVALID('header "alg" missing'), 'invalid')
    const alg = header.alg
    // The algorithm is pinned before any key is looked for (an unknown kid with a forbidden alg
    // must not make the gateway ask the IdP).
    if (!config.algorithms.includes(alg as never)) return failure(new GW_ERR_AUTHN_INVALID('algorithm not allowed'), 'bad_algorithm')
    const key = await keys.getKey(header as never, { payload: '', signature: '' })
    const payload = verifier.verify(token, alg, key)
    if (typeof payload.sub !== 'string' || payload.sub === '') return failure(new GW_ERR_AUTHN_INVALID('claim "sub" must be a non-empty string'), 'invalid_claims')
    // The subject is forwarded as a header and logged: control characters could only be an attack.
    if (CONTROL.test(payload.sub)) return failure(new GW_ERR_AUTHN_INVALID('claim "sub" contains control characters'), 'invalid_claims')
    // JSON escapes can carry half a UTF-16 pair; such a claim cannot be passed on faithfully.
    if (!wellFormed(payload)) return failure(new GW_ERR_AUTHN_INVALID('a claim is not valid Unicode (lone surrogate)'), 'invalid_claims')
    if (config.maxTokenLifetimeSeconds !== undefined && (payload.exp as number) - Date.now() / 1000 > config.maxTokenLifetimeSeconds + config.clockToleranceSeconds) {
      return failure(new GW_ERR_AUTHN_INVALID('claim "exp" is too far in the future'), 'invalid_claims')
    }
    const principal: JwtPrincipal = {
      type: 'jwt', issuerId: config.id, issuer: config.issuer, subject: payload.sub, claims: payload, certificate: null
    }
    const ttl = Math.min(config.verifiedTokenCacheSeconds * 1000, ((payload.exp as number) + config.clockToleranceSeconds) * 1000 - Date.now())
    if (ttl > 0 && token.length <= MAX_CACHED_TOKEN_BYTES) verified.set(token, { principal, keys, version }, { ttl })
    return { kind: 'principal', principal }
  } catch (err) {
    return classify(err)
  }
}

/** A refusal with its enumerated reason (metrics label, access line, challenge). */
export function failure (error: FastifyError, reason: string): AuthnResult {
  return { kind: 'failure', error, reason }
}

function classify (err: unknown): AuthnResult {
  if (err instanceof TokenRejected) {
    return failure(err.reason === 'expired' ? new GW_ERR_AUTHN_EXPIRED() : new GW_ERR_AUTHN_INVALID(err.detail), err.reason)
  }
  if (err instanceof KeysUnavailableError) return failure(new GW_ERR_AUTHN_KEYS_UNAVAILABLE(), 'keys_unavailable')
  // From the key source (jose's key selection): no key for the header's kid and alg, or a bad header.
  if (err instanceof joseErrors.JWKSNoMatchingKey) return failure(new GW_ERR_AUTHN_INVALID('no matching key'), 'unknown_key')
  if (err instanceof joseErrors.JOSEError) return failure(new GW_ERR_AUTHN_INVALID(err.code), 'invalid')
  return failure(new GW_ERR_AUTHN_KEYS_UNAVAILABLE(), 'keys_unavailable')
}
