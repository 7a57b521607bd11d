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

/** Mints a token signed by the demo issuer's key, for the issuer recorded by the running demo. */
export async function mintDemoToken (paths: DemoPaths, opts: DemoTokenOptions): Promise<string> {
  const jwk = JSON.parse(await readFile(paths.signingKey, 'utf8')) as { kid: string, alg: string }
  const issuer = await readFile(paths.issuerInfo, 'utf8')
    .then(text => (JSON.parse(text) as { issuer: string }).issuer, () => DEFAULT_DEMO_ISSUER)
  const now = Math.floor(Date.now() / 1000)
  return new SignJWT({ ...opts.claims, roles: opts.roles })
    .setProtectedHeader({ alg: 'ES256', kid: jwk.kid, typ: 'JWT' })
    .setIssuer(issuer)
    .setAudience(opts.audience ?? DEMO_AUDIENCE)
    .setSubject(opts.sub)
    .setIssuedAt(opts.ttl < 0 ? now + opts.ttl - 60 : now)
    .setExpirationTime(now + opts.ttl)
    .setJti(crypto.randomUUID())
    .sign(await importJWK(jwk, 'ES256'))
}
