import { createSecretKey } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { Agent, request, type Dispatcher } from 'undici'
import { createLocalJWKSet, createRemoteJWKSet, customFetch, errors, type FetchImplementation, type JWTVerifyGetKey } from 'jose'
import type { IssuerConfig } from '../../config/schema.js'

/*
 * Where an issuer's verification keys come from. jose's remote JWK set does the caching, the
 * refresh-on-unknown-kid with a cooldown and the single-flight fetch; this file only decides the URL
 * (static, or from OIDC discovery), pins the TLS trust for that issuer and caps what a fetch may read.
 * Keys are per issuer: a key source is never shared, so a kid of issuer A cannot verify issuer B.
 */

const MAX_DOCUMENT_BYTES = 256 * 1024
const REFRESH_COOLDOWN_MS = 30_000

export interface KeySource {
  /** Resolves the key for a token's protected header; rejects when no key matches or none can be fetched. */
  getKey: JWTVerifyGetKey
  /** Loads the keys once (discovery, then JWKS). Safe to call repeatedly; concurrent calls share one fetch. */
  warm: () => Promise<void>
  readonly ready: boolean
  close: () => Promise<void>
}

/** Thrown when the issuer's keys cannot be loaded at all (discovery or JWKS fetch failed). */
export class KeysUnavailableError extends Error {
  override readonly name = 'KeysUnavailableError'
}

/** Called after each fetch of the JWKS document (start, refresh on unknown kid, cache expiry). */
export type JwksFetchObserver = (result: 'success' | 'failure') => void

export async function createKeySource (issuer: IssuerConfig, onJwksFetch: JwksFetchObserver = () => {}): Promise<KeySource> {
  if (issuer.jwks === undefined) {
    // HS* issuers: config validation guarantees a secret of at least 32 bytes and no public-key algorithm.
    const key = createSecretKey(Buffer.from(issuer.secret ?? '', 'utf8'))
    return { getKey: async () => key, warm: async () => {}, ready: true, close: async () => {} }
  }
  if ('file' in issuer.jwks) {
    const getKey = createLocalJWKSet(JSON.parse(await readFile(issuer.jwks.file, 'utf8')))
    return { getKey, warm: async () => {}, ready: true, close: async () => {} }
  }

  const dispatcher = new Agent({
    connect: { ...(issuer.ca !== undefined ? { ca: await readFile(issuer.ca, 'utf8') } : {}), minVersion: 'TLSv1.2' },
    connectTimeout: issuer.fetchTimeoutMs
  })
  const fetcher = createCappedFetch(dispatcher, issuer.fetchTimeoutMs)
  const jwksUrl = 'url' in issuer.jwks ? issuer.jwks.url : undefined
  let remote: ReturnType<typeof createRemoteJWKSet> | undefined
  let loading: Promise<void> | undefined
  let lastFailure = 0
  let ready = false

  const load = async (): Promise<void> => {
    const url = jwksUrl ?? await discoverJwksUri(issuer, fetcher)
    remote ??= createRemoteJWKSet(new URL(url), {
      timeoutDuration: issuer.fetchTimeoutMs,
      cooldownDuration: REFRESH_COOLDOWN_MS,
      cacheMaxAge: issuer.jwksCacheSeconds * 1000,
      [customFetch]: async (...args: Parameters<typeof fetcher>) => {
        try {
          const res = await fetcher(...args)
          onJwksFetch(res.ok ? 'success' : 'failure')
          return res
        } catch (err) {
          onJwksFetch('failure')
          throw err
        }
      }
    })
    await remote.reload()
    ready = true
  }

  const warm = async (): Promise<void> => {
    if (ready) return
    // A failing IdP is retried at most once per cooldown, however many requests arrive meanwhile.
    if (loading === undefined && Date.now() - lastFailure < REFRESH_COOLDOWN_MS) {
      throw new KeysUnavailableError(`keys of issuer ${issuer.id} are unavailable (retrying later)`)
    }
    loading ??= load().catch((err: unknown) => {
      lastFailure = Date.now()
      throw new KeysUnavailableError(`cannot load keys of issuer ${issuer.id}: ${(err as Error).message}`)
    }).finally(() => { loading = undefined })
    return loading
  }

  const getKey: JWTVerifyGetKey = async (header, token) => {
    await warm()
    try {
      return await remote!(header, token)
    } catch (err) {
      // No such key in a set we could load is the token's problem; a set we could not (re)load is
      // ours (the IdP is down or answers garbage), and must not be reported as a bad token.
      if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys || err instanceof errors.JOSENotSupported) throw err
      throw new KeysUnavailableError(`cannot refresh keys of issuer ${issuer.id}: ${(err as Error).message}`)
    }
  }

  return {
    getKey,
    warm,
    get ready () { return ready },
    close: async () => dispatcher.close()
  }
}

async function discoverJwksUri (issuer: IssuerConfig, fetcher: FetchImplementation): Promise<string> {
  const url = issuer.issuer.replace(/\/$/, '') + '/.well-known/openid-configuration'
  const res = await fetcher(url, { method: 'GET', redirect: 'manual', headers: new Headers(), signal: AbortSignal.timeout(issuer.fetchTimeoutMs) })
  if (res.status !== 200) throw new Error(`discovery answered ${res.status}`)
  const doc = await res.json() as { issuer?: unknown, jwks_uri?: unknown }
  // OIDC Discovery 1.0 §4.3: the document must name exactly the issuer we asked about.
  if (doc.issuer !== issuer.issuer) throw new Error(`discovery names issuer ${JSON.stringify(doc.issuer)}, expected ${issuer.issuer}`)
  if (typeof doc.jwks_uri !== 'string' || !doc.jwks_uri.startsWith('https://')) throw new Error('discovery has no https jwks_uri')
  return doc.jwks_uri
}

/** A fetch for jose built on the issuer's own dispatcher: no redirects, bounded time and size. */
function createCappedFetch (dispatcher: Dispatcher, timeoutMs: number): FetchImplementation {
  return async (url, init) => {
    const res = await request(url, {
      dispatcher,
      method: 'GET',
      headers: { accept: 'application/json' },
      signal: init.signal ?? AbortSignal.timeout(timeoutMs),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs
    })
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length
      if (size > MAX_DOCUMENT_BYTES) {
        res.body.destroy()
        throw new Error(`document from ${url} exceeds ${MAX_DOCUMENT_BYTES} bytes`)
      }
      chunks.push(chunk as Buffer)
    }
    return new Response(Buffer.concat(chunks), { status: res.statusCode })
  }
}
