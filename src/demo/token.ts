import { readFile } from 'node:fs/promises'
import { importJWK, SignJWT } from 'jose'
import { DEMO_AUDIENCE, type DemoPaths } from './state.js'

export const DEFAULT_DEMO_ISSUER = 'https://127.0.0.1:8444'

export interface DemoTokenOptions {
  sub: string
  roles: string[]
  /** Lifetime in seconds; negative makes an already expired token. */
  ttl: number
  claims: Record<string, unknown>
  /** Defaults to the demo gateway's audience. */
  audience?: string
}

// Registered claims a --claim may set, and the JSON type each must have: a token with `exp: "soon"`
// would only confuse whoever is trying out the gateway's checks.
const REGISTERED: Record<string, (v: unknown) => boolean> = {
  iss: v => typeof v === 'string' && v !== '',
  sub: v => typeof v === 'string' && v !== '',
  aud: v => (typeof v === 'string' && v !== '') || (Array.isArray(v) && v.length > 0 && v.every(a => typeof a === 'string' && a !== '')),
  jti: v => typeof v === 'string' && v !== '',
  exp: v => Number.isSafeInteger(v),
  nbf: v => Number.isSafeInteger(v),
  iat: v => Number.isSafeInteger(v)
}

/** Why a `--claim` cannot be used as given, or null. */
export function claimProblem (name: string, value: unknown): string | null {
  const check = REGISTERED[name]
  if (check !== undefined && !check(value)) {
    return `--claim ${name}=${JSON.stringify(value)}: ${name} must be ${name === 'aud' ? 'a string or an array of strings' : ['exp', 'nbf', 'iat'].includes(name) ? 'a NumericDate (whole seconds since 1970)' : 'a non-empty string'}`
  }
  return null
}

/**
 * Mints a token signed by the demo issuer's key, for the issuer recorded by the running demo. Claims
 * given explicitly (`--claim iss=...`, `aud`, `exp`...) are kept as given over the defaults, so that
 * issuer and audience checks can be tried with the demo; a registered claim of the wrong type throws.
 */
export async function mintDemoToken (paths: DemoPaths, opts: DemoTokenOptions): Promise<string> {
  for (const [name, value] of Object.entries(opts.claims)) {
    const problem = claimProblem(name, value)
    if (problem !== null) throw new Error(problem)
  }
  const jwk = JSON.parse(await readFile(paths.signingKey, 'utf8')) as { kid: string, alg: string }
  const issuer = await readFile(paths.issuerInfo, 'utf8')
    .then(text => (JSON.parse(text) as { issuer: string }).issuer, () => DEFAULT_DEMO_ISSUER)
  const now = Math.floor(Date.now() / 1000)
  const defaults = {
    iss: issuer,
    aud: opts.audience ?? DEMO_AUDIENCE,
    sub: opts.sub,
    roles: opts.roles,
    iat: opts.ttl < 0 ? now + opts.ttl - 60 : now,
    exp: now + opts.ttl,
    jti: crypto.randomUUID()
  }
  return new SignJWT({ ...defaults, ...opts.claims })
    .setProtectedHeader({ alg: 'ES256', kid: jwk.kid, typ: 'JWT' })
    .sign(await importJWK(jwk, 'ES256'))
}
