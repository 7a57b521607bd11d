import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import {
  createLocalJWKSet, createRemoteJWKSet, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWTPayload,
  type JWTVerifyGetKey
} from 'jose'
import { LRUCache } from 'lru-cache'

/*
 * portcullis/verify: checks the assertion the gateway attaches to every request, inside the
 * function. Trust nothing, verify every call: the signature against the gateway's JWKS, iss, aud,
 * a short lifetime, that the assertion is for this very method, path and body, and that its jti has
 * not been seen before in this process.
 *
 *   import { createAssertionVerifier } from 'portcullis/verify'
 *   const verifier = createAssertionVerifier({ issuer: 'portcullis', audience: 'https://fn.example',
 *     jwks: 'https://gateway-admin.internal/.well-known/jwks.json' })
 *   const assertion = await verifier.verify(req, body)   // throws AssertionError
 */

export const ASSERTION_HEADER = 'x-portcullis-assertion'
const ASSERTION_TYP = 'portcullis-assertion+jwt'

export type AssertionFailure =
  | 'missing' | 'malformed' | 'invalid' | 'expired' | 'too_long_lived' | 'replayed'
  | 'method_mismatch' | 'path_mismatch' | 'body_mismatch' | 'body_required'

/** Why an assertion was refused; `reason` is stable, `message` is for logs. */
export class AssertionError extends Error {
  constructor (readonly reason: AssertionFailure, message: string) {
    super(message)
    this.name = 'AssertionError'
  }
}

export interface GatewayAssertion extends JWTPayload {
  sub?: string
  jti: string
  exp: number
  iat: number
  method: string
  path: string
  /** How the caller authenticated at the gateway: jwt, mtls or anonymous. */
  auth: string
  /** The caller's token issuer, when there was one. */
  idp?: string
  /** The gateway's request id. */
  rid: string
  body_sha256?: string
  /** Claims of the caller's token the gateway was configured to pass on. */
  claims?: Record<string, unknown>
}

export interface VerifierOptions {
  /** The gateway's `assertion.issuer`. */
  issuer: string
  /** This function's URL as the gateway's upstream (or its `credentials.assertion.audience`). */
  audience: string
  /** The gateway's JWKS: its URL (admin listener), the published file, or the key set itself. */
  jwks: string | URL | { file: string } | JSONWebKeySet
  /** Header the gateway puts the assertion in (`assertion.header`). */
  header?: string
  /** Longest lifetime (exp - iat) accepted, in seconds; default 300, the gateway's maximum TTL. */
  maxLifetimeSeconds?: number
  clockToleranceSeconds?: number
  /** How many jti to remember (each until its exp); beyond that the oldest are forgotten. */
  replayCacheSize?: number
}

/** What `verify` reads of a request; a Node IncomingMessage fits. */
export interface RequestLike {
  method?: string | undefined
  url?: string | undefined
  headers: Record<string, string | string[] | undefined>
}

export interface AssertionVerifier {
  /**
   * Verifies the request's assertion and returns its claims. Pass the raw body when the gateway binds
   * bodies: an assertion that carries a body hash is refused unless the body matches it.
   */
  verify: (request: RequestLike, body?: Uint8Array) => Promise<GatewayAssertion>
}

/** A JWKS file, read again (at most once a second) when a token names a key it does not hold. */
function fileKeys (file: string): JWTVerifyGetKey {
  let keys: JWTVerifyGetKey | null = null
  let loadedAt = 0
  const load = async (): Promise<JWTVerifyGetKey> => {
    keys = createLocalJWKSet(JSON.parse(await readFile(file, 'utf8')) as JSONWebKeySet)
    loadedAt = Date.now()
    return keys
  }
  return async (header, token) => {
    try {
      return await (keys ?? await load())(header, token)
    } catch (err) {
      if (!(err instanceof joseErrors.JWKSNoMatchingKey) || Date.now() - loadedAt < 1000) throw err
      return (await load())(header, token)
    }
  }
}

function keySource (jwks: VerifierOptions['jwks']): JWTVerifyGetKey {
  if (typeof jwks === 'string' || jwks instanceof URL) return createRemoteJWKSet(new URL(jwks))
  if ('file' in jwks) return fileKeys(jwks.file)
  return createLocalJWKSet(jwks)
}

function reasonOf (err: unknown): AssertionFailure {
  if (err instanceof joseErrors.JWTExpired) return 'expired'
  if (err instanceof joseErrors.JWSInvalid || err instanceof joseErrors.JWTInvalid) return 'malformed'
  return 'invalid'
}

export function createAssertionVerifier (opts: VerifierOptions): AssertionVerifier {
  const keys = keySource(opts.jwks)
  const header = (opts.header ?? ASSERTION_HEADER).toLowerCase()
  const maxLifetime = opts.maxLifetimeSeconds ?? 300
  const tolerance = opts.clockToleranceSeconds ?? 5
  const seen = new LRUCache<string, true>({ max: opts.replayCacheSize ?? 100_000, ttlAutopurge: false })

  return {
    async verify (request, body) {
      const value = request.headers[header]
      if (typeof value !== 'string' || value === '') throw new AssertionError('missing', `no ${header} header (or more than one)`)
      let payload: GatewayAssertion
      try {
        ({ payload } = await jwtVerify<GatewayAssertion>(value, keys, {
          issuer: opts.issuer,
          audience: opts.audience,
          typ: ASSERTION_TYP,
          algorithms: ['ES256', 'EdDSA'],
          requiredClaims: ['exp', 'iat', 'jti', 'method', 'path'],
          clockTolerance: tolerance
        }))
      } catch (err) {
        throw new AssertionError(reasonOf(err), `assertion refused: ${(err as Error).message}`)
      }
      if (payload.exp - payload.iat > maxLifetime) throw new AssertionError('too_long_lived', `assertion lives longer than ${maxLifetime}s`)
      if (payload.method !== request.method) throw new AssertionError('method_mismatch', 'assertion is for another method')
      if (payload.path !== request.url) throw new AssertionError('path_mismatch', 'assertion is for another path')
      if (payload.body_sha256 !== undefined) {
        if (body === undefined) throw new AssertionError('body_required', 'assertion binds the body; pass it to verify()')
        if (createHash('sha256').update(body).digest('base64url') !== payload.body_sha256) {
          throw new AssertionError('body_mismatch', 'body does not match the assertion')
        }
      }
      // Recorded last, so a request refused for another reason does not use up its jti.
      if (seen.has(payload.jti)) throw new AssertionError('replayed', 'assertion was already used')
      seen.set(payload.jti, true, { ttl: Math.max(1, (payload.exp + tolerance) * 1000 - Date.now()) })
      return payload
    }
  }
}
