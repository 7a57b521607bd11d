import { KeyObject, type webcrypto } from 'node:crypto'
import { createVerifier, TokenError } from 'fast-jwt'
import type { IssuerConfig } from '../../config/schema.js'

/*
 * Signature and claims checks of one issuer's tokens, by fast-jwt (the verifier @fastify/jwt uses):
 * node:crypto's synchronous verify costs 25-70 us per token here, against 160-270 us for jose's
 * WebCrypto path. jose still selects the key (kid, kty and alg matching, key-set refresh in
 * key-source.ts); this file only checks the token against the key it chose.
 *
 * fast-jwt checks a claim's allowed values only when the claim is present, so every claim whose
 * value is pinned (iss, aud) is also required here: a token without an audience is refused, as jose
 * refused it. It does not look at `iat`; a non-numeric `iat` is refused below, as jose did.
 */

export type VerifyFailure =
  | 'expired' | 'not_yet_valid' | 'bad_type' | 'invalid_claims' | 'bad_signature' | 'bad_algorithm' | 'invalid'

/** A token that failed a check: `reason` is the enumerated label, `detail` says which check. */
export class TokenRejected extends Error {
  override readonly name = 'TokenRejected'
  constructor (readonly reason: VerifyFailure, readonly detail: string) { super(detail) }
}

export interface TokenVerifier {
  /**
   * Checks `token` with `key` (what the issuer's key source chose for its header); the claims on success.
   * `alg` is already one of the issuer's pinned algorithms: jwt.ts checks it before any key is looked up.
   */
  verify: (token: string, alg: string, key: unknown) => Record<string, unknown>
}

type Verify = (token: string) => Record<string, unknown>

export function createTokenVerifier (config: IssuerConfig): TokenVerifier {
  // One fast-jwt verifier per key and algorithm, built when the key is first used. The key objects
  // come from the key source's cache, so a key set that is replaced lets its verifiers go with it.
  const byKey = new WeakMap<object, Map<string, Verify>>()
  const requiredClaims = [...new Set(['exp', 'sub', 'iss', 'aud', ...config.requiredClaims])]

  const verifierFor = (alg: string, key: unknown): Verify => {
    if (key === null || typeof key !== 'object') throw new TokenRejected('invalid', 'unusable key')
    let perAlg = byKey.get(key)
    if (perAlg === undefined) byKey.set(key, perAlg = new Map())
    let verify = perAlg.get(alg)
    if (verify === undefined) {
      verify = createVerifier({
        key: material(key),
        algorithms: [alg as never],
        allowedIss: config.issuer,
        allowedAud: config.audiences,
        clockTolerance: config.clockToleranceSeconds * 1000,
        requiredClaims,
        cache: false,
        ...(config.typ !== undefined ? { checkTyp: config.typ } : {})
      }) as Verify
      perAlg.set(alg, verify)
    }
    return verify
  }

  return {
    verify (token, alg, key) {
      let payload: Record<string, unknown>
      try {
        payload = verifierFor(alg, key)(token)
      } catch (err) {
        throw err instanceof TokenError ? rejection(err) : err
      }
      if (payload.iat !== undefined && typeof payload.iat !== 'number') throw new TokenRejected('invalid_claims', 'claim "iat" must be a number')
      return payload
    }
  }
}

/** What fast-jwt takes as a key: SPKI PEM for a public key, the bytes of a secret. */
function material (key: object): string | Buffer {
  const object = key instanceof KeyObject ? key : KeyObject.from(key as webcrypto.CryptoKey)
  if (object.type === 'secret') return object.export()
  if (object.type !== 'public') throw new TokenRejected('invalid', 'not a public key')
  return object.export({ type: 'spki', format: 'pem' }) as string
}

const CODES = TokenError.codes

function rejection (err: TokenError): TokenRejected {
  switch (err.code) {
    case CODES.expired: return new TokenRejected('expired', 'claim "exp" check_failed')
    case CODES.inactive: return new TokenRejected('not_yet_valid', 'claim "nbf" check_failed')
    case CODES.invalidType: return new TokenRejected('bad_type', 'header "typ" check_failed')
    // verifyError: a signature node:crypto cannot even read (truncated, DER instead of raw r||s).
    case CODES.invalidSignature:
    case CODES.verifyError:
      return new TokenRejected('bad_signature', 'bad signature')
    case CODES.invalidAlgorithm: return new TokenRejected('bad_algorithm', 'algorithm not allowed')
    case CODES.missingRequiredClaim:
    case CODES.invalidClaimType:
    case CODES.invalidClaimValue:
      return new TokenRejected('invalid_claims', err.message)
    default: return new TokenRejected('invalid', err.code)
  }
}
