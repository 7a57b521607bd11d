import { createHash, randomUUID, sign } from 'node:crypto'
import type { AssertionConfig } from '../../../config/schema.js'
import type { Principal } from '../../types.js'
import { credentialKind } from './kind.js'
import type { KeyRing, SigningKey } from './signing-keys.js'
import { createTurnBatch } from './turn-batch.js'

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

export type AssertionMinter = (req: AssertionRequest) => string

/** base64url SHA-256 of an empty body: what a bound request without a body (a GET) carries. */
const EMPTY_BODY_SHA256 = createHash('sha256').digest('base64url')

/**
 * Signs one assertion per request: who the caller is (as the gateway verified it), for which
 * function, and which request (method, path, body hash), valid for `ttlSeconds`, with a unique `jti`
 * so a function can refuse a replay.
 *
 * The compact JWS is put together here and signed with node:crypto's one-shot `sign`, not jose's
 * SignJWT: jose signs through WebCrypto (a promise and a thread-pool hop per signature), which made the
 * assertion the costliest step the gateway adds per request (`npm run bench:micro` has both side by
 * side). It is synchronous, like the signature; the kind below defers it to the end of the turn. The
 * protected header is the same for every assertion a key signs: encoded once per key. Verification
 * everywhere, in the tests too, stays with jose and `portcullis/verify`.
 */
export function createAssertionMinter (config: AssertionConfig, keys: KeyRing): AssertionMinter {
  const headers = new WeakMap<SigningKey, string>()
  return (req) => {
    const key = keys.current()
    let header = headers.get(key)
    if (header === undefined) {
      header = base64url(JSON.stringify({ alg: key.alg, kid: key.kid, typ: ASSERTION_TYP }))
      headers.set(key, header)
    }
    const iat = Math.floor(Date.now() / 1000)
    const claims: Record<string, unknown> = {
      method: req.method,
      path: req.path,
      auth: req.principal.type,
      rid: req.requestId
    }
    if (req.principal.type !== 'anonymous') claims.idp = req.principal.issuer
    if (req.bodySha256 !== undefined) claims.body_sha256 = req.bodySha256
    if (config.claims.length > 0) {
      const selected: Record<string, unknown> = {}
      for (const name of config.claims) if (req.principal.claims[name] !== undefined) selected[name] = req.principal.claims[name]
      claims.claims = selected
    }
    claims.iss = config.issuer
    claims.aud = req.audience
    claims.iat = iat
    claims.exp = iat + config.ttlSeconds
    claims.jti = randomUUID()
    // An anonymous caller (public route) has no subject; the assertion then says so by omitting it.
    if (req.principal.type !== 'anonymous') claims.sub = req.principal.subject
    return signCompact(header, claims, key)
  }
}

const base64url = (json: string): string => Buffer.from(json).toString('base64url')

/** RFC 7515 compact serialization: ES256 signatures in the JOSE (r || s) form, EdDSA as is. */
function signCompact (header: string, payload: Record<string, unknown>, key: SigningKey): string {
  const input = `${header}.${base64url(JSON.stringify(payload))}`
  // The signing input is base64url, ASCII: latin1 copies it byte for byte, without UTF-8 encoding.
  const bytes = Buffer.from(input, 'latin1')
  const signature = key.alg === 'ES256'
    ? sign('sha256', bytes, { key: key.privateKey, dsaEncoding: 'ieee-p1363' })
    : sign(null, bytes, key.privateKey)
  return `${input}.${signature.toString('base64url')}`
}

/** The gateway's signed assertion, in the configured header; with the body's hash where it was read whole. */
export const assertionKind = credentialKind({
  key: 'assertion',
  headers: config => [config.assertion.header],
  needsBody: settings => settings.bindBody,
  create: (settings, { upstream, config, keys }) => {
    const mint = createAssertionMinter(config.assertion, keys)
    const audience = settings.audience ?? upstream.url.replace(/\/$/, '')
    const header = config.assertion.header
    // Signed at the end of the turn with the turn's other assertions: turn-batch.ts says why.
    const atTurnEnd = createTurnBatch()
    return {
      attach: (input, body) => atTurnEnd(() => {
        input.headers[header] = mint({
          principal: input.principal,
          audience,
          method: input.method,
          path: input.path,
          requestId: input.requestId,
          bodySha256: Buffer.isBuffer(body)
            ? (body.length === 0 ? EMPTY_BODY_SHA256 : createHash('sha256').update(body).digest('base64url'))
            : settings.bindBody && body === null ? EMPTY_BODY_SHA256 : undefined
        })
      })
    }
  }
})
