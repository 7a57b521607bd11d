import { randomUUID } from 'node:crypto'
import { SignJWT } from 'jose'
import type { AssertionConfig } from '../../../config/schema.js'
import type { Principal } from '../../types.js'
import type { KeyRing } from './signing-keys.js'

/** The JWT `typ` of a gateway assertion, so no other JWT can stand in for one. */
export const ASSERTION_TYP = 'portcullis-assertion+jwt'

export interface AssertionRequest {
  principal: Principal
  /** The upstream the assertion is for: its `aud`. */
  audience: string
  method: string
  /** The request target exactly as the function receives it: path and query. */
  path: string
  requestId: string
  /** base64url SHA-256 of the body, when the body was buffered. */
  bodySha256?: string
}

export type AssertionMinter = (req: AssertionRequest) => Promise<string>

/**
 * Signs one assertion per request: who the caller is (as the gateway verified it), for which
 * function, and which request (method, path, body hash), valid for `ttlSeconds`, with a unique `jti`
 * so a function can refuse a replay.
 */
export function createAssertionMinter (config: AssertionConfig, keys: KeyRing): AssertionMinter {
  return async (req) => {
    const key = keys.current()
    const claims: Record<string, unknown> = {
      method: req.method,
      path: req.path,
      auth: req.principal.type,
      rid: req.requestId
    }
    if (req.principal.type !== 'anonymous') claims.idp = req.principal.issuer
    if (req.bodySha256 !== undefined) claims.body_sha256 = req.bodySha256
    const selected: Record<string, unknown> = {}
    for (const name of config.claims) if (req.principal.claims[name] !== undefined) selected[name] = req.principal.claims[name]
    if (config.claims.length > 0) claims.claims = selected
    const jwt = new SignJWT(claims)
      .setProtectedHeader({ alg: key.alg, kid: key.kid, typ: ASSERTION_TYP })
      .setIssuer(config.issuer)
      .setAudience(req.audience)
      .setIssuedAt()
      .setExpirationTime(`${config.ttlSeconds}s`)
      .setJti(randomUUID())
    // An anonymous caller (public route) has no subject; the assertion then says so by omitting it.
    if (req.principal.type !== 'anonymous') jwt.setSubject(req.principal.subject)
    return jwt.sign(key.privateKey)
  }
}
