import { createHash, createSecretKey } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { Agent, request, type Dispatcher } from 'undici'
import { createLocalJWKSet, errors, type JSONWebKeySet, type JWTVerifyGetKey } from 'jose'
import type { IssuerConfig } from '../../config/schema.js'

/*
 * Where an issuer's verification keys come from: a secret, a JWKS file, or a remote JWKS (a URL, or
 * OIDC discovery at the issuer). A remote set is held here rather than in jose's remote JWK set,
 * because a gateway must keep verifying through an IdP outage (stale-if-error) and must never make
 * a request wait on a fetch while it holds a usable set; jose's set refetches on expiry in the
 * request path and forgets the keys when that fails.
 *
 * - The last good set is used until `maxStaleSeconds` after it was fetched; refreshes run in the
 *   background every jwksCacheSeconds, with back-off after failures.
 * - A token whose kid the set lacks triggers one single-flight refresh per issuer, at most once per
 *   `unknownKidCooldownMs`; the request waits for it at most `unknownKidWaitMs`. If the IdP could
 *   not be asked, the answer is the retryable KeysUnavailableError (503), not a bad-token 401.
 * - Keys are per issuer: a key source is never shared, so a kid of issuer A cannot verify issuer B.
 */

const MAX_DOCUMENT_BYTES = 256 * 1024
const MAX_BACKOFF_MS = 60_000

/** Defaults of the remote-JWKS settings (the schema cannot default inside the jwks union). */
export const JWKS_DEFAULTS = { maxStaleSeconds: 86_400, unknownKidCooldownMs: 1000, unknownKidWaitMs: 1500 } as const

export type KeySetState = 'fresh' | 'stale' | 'expired' | 'none'

export interface KeySourceStatus {
  state: KeySetState
  keys: number
  fetched_at: string | null
  age_seconds: number | null
  max_stale_seconds: number | null
  last_error: string | null
}

export interface KeySource {
  /** Resolves the key for a token's protected header; rejects when no key matches or none is usable. */
  getKey: JWTVerifyGetKey
  /** Loads the keys if none are held yet. Safe to call repeatedly; concurrent calls share one fetch. */
  warm: () => Promise<void>
  /** A usable key set is held (fresh, or stale within maxStaleSeconds). */
  readonly ready: boolean
  /** Changes whenever the key set changes: a token verified under another version is checked again. */
  readonly version: number
  /** Seconds since the held set was fetched; null when none was (or the keys are local). */
  ageSeconds: () => number | null
  status: () => KeySourceStatus
  /** The held remote set as fetched, to seed another process's source (null: none, or the keys are local). */
  snapshot: () => KeySnapshot | null
  close: () => Promise<void>
}

/** A remote key set as this process fetched it: the JWKS document and when (ms since the epoch). */
export interface KeySnapshot { text: string, fetchedAt: number }

/** Thrown when the issuer's keys cannot be used or fetched: the IdP's fault, not the token's (503). */
export class KeysUnavailableError extends Error {
  override readonly name = 'KeysUnavailableError'
}

/** Called after each fetch of the JWKS document (start, refresh on unknown kid, periodic refresh). */
export type JwksFetchObserver = (result: 'success' | 'failure') => void

export interface KeySourceOptions {
  /**
   * A set another process of this gateway fetched (a cluster worker started by the primary gets its
   * sibling's): held as of when it was fetched, so it is fresh, stale or expired exactly as there, and
   * refreshed when due. A worker restarted during an IdP outage then verifies with the last good keys
   * instead of refusing every caller until the IdP is back.
   */
  seed?: KeySnapshot
  onFetch?: JwksFetchObserver
  /** Told once per change of the held set's state, e.g. to log an outage and its end. */
  onState?: (state: KeySetState, detail: string | null) => void
  now?: () => number
}

function localSource (getKey: JWTVerifyGetKey, keys: number): KeySource {
  return {
    getKey,
    warm: async () => {},
    ready: true,
    version: 0,
    ageSeconds: () => null,
    status: () => ({ state: 'fresh', keys, fetched_at: null, age_seconds: null, max_stale_seconds: null, last_error: null }),
    snapshot: () => null,
    close: async () => {}
  }
}

export async function createKeySource (issuer: IssuerConfig, opts: KeySourceOptions = {}): Promise<KeySource> {
  if (issuer.jwks === undefined) {
    // HS* issuers: config validation guarantees a secret of at least 32 bytes and no public-key algorithm.
    const key = createSecretKey(Buffer.from(issuer.secret ?? '', 'utf8'))
    return localSource(async () => key, 1)
  }
  if ('file' in issuer.jwks) {
    const set = JSON.parse(await readFile(issuer.jwks.file, 'utf8')) as JSONWebKeySet
    return localSource(createLocalJWKSet(set), set.keys.length)
  }
  return createRemoteKeySource(issuer, issuer.jwks, opts, issuer.ca !== undefined ? await readFile(issuer.ca, 'utf8') : undefined)
}

type RemoteJwks = Exclude<NonNullable<IssuerConfig['jwks']>, { file: string }>

/**
 * What makes a remote key source what it is: a reload whose issuer has the same fingerprint keeps
 * the process's key source (and its keys) instead of fetching again.
 */
export async function keySourceFingerprint (issuer: IssuerConfig): Promise<string | null> {
  if (issuer.jwks === undefined || 'file' in issuer.jwks) return null
  const ca = issuer.ca !== undefined ? await readFile(issuer.ca, 'utf8') : ''
  return createHash('sha256').update(JSON.stringify([issuer.id, issuer.issuer, issuer.jwks, issuer.jwksCacheSeconds, issuer.fetchTimeoutMs, ca])).digest('hex')
}

// long: one closure over the key set's state (fetch, back-off, cooldown, single flight), which its parts share.
function createRemoteKeySource (issuer: IssuerConfig, jwks: RemoteJwks, opts: KeySourceOptions, ca: string | undefined): KeySource {
  const now = opts.now ?? Date.now
  const maxStaleMs = (jwks.maxStaleSeconds ?? JWKS_DEFAULTS.maxStaleSeconds) * 1000
  const cooldownMs = jwks.unknownKidCooldownMs ?? JWKS_DEFAULTS.unknownKidCooldownMs
  const waitMs = jwks.unknownKidWaitMs ?? JWKS_DEFAULTS.unknownKidWaitMs
  const refreshMs = issuer.jwksCacheSeconds * 1000
  const dispatcher = new Agent({ connect: { ...(ca !== undefined ? { ca } : {}), minVersion: 'TLSv1.2' }, connectTimeout: issuer.fetchTimeoutMs })

  let held: { getKey: JWTVerifyGetKey, text: string, count: number, fetchedAt: number } | null = null
  let version = 0
  let jwksUrl = 'url' in jwks ? jwks.url : null
  let inFlight: Promise<void> | null = null
  let lastAttempt = -Infinity
  let lastOk = true
  let lastError: string | null = null
  let failures = 0
  let timer: NodeJS.Timeout | undefined
  let closed = false
  let reported: KeySetState | null = null

  const state = (): KeySetState => held === null ? 'none' : now() - held.fetchedAt < refreshMs ? 'fresh' : now() - held.fetchedAt < maxStaleMs ? 'stale' : 'expired'
  const usable = (): boolean => held !== null && now() - held.fetchedAt < maxStaleMs
  const report = (): void => {
    const s = state()
    if (s !== reported) { reported = s; opts.onState?.(s, lastError) }
  }

  const hold = (text: string, fetchedAt: number): void => {
    const set = JSON.parse(text) as JSONWebKeySet
    if (set === null || typeof set !== 'object' || !Array.isArray(set.keys)) throw new Error('JWKS document has no "keys" array')
    if (held === null || held.text !== text) {
      held = { getKey: createLocalJWKSet(set), text, count: set.keys.length, fetchedAt }
      version++
    } else {
      held.fetchedAt = fetchedAt
    }
  }
  const fetchSet = async (): Promise<void> => {
    jwksUrl ??= await discoverJwksUri(issuer, dispatcher)
    hold(await fetchDocument(jwksUrl, dispatcher, issuer.fetchTimeoutMs), now())
  }

  // After n failures in a row: 1 s, 2 s, 4 s ... up to a minute (and never beyond the refresh period).
  const backoffMs = (): number => Math.min(1000 * 2 ** Math.max(0, failures - 1), MAX_BACKOFF_MS, refreshMs)
  const schedule = (ms: number): void => {
    clearTimeout(timer)
    if (!closed) timer = setTimeout(() => { void refresh().catch(() => {}) }, ms).unref()
  }

  /** One fetch at a time; every caller shares it. */
  const refresh = async (): Promise<void> => {
    inFlight ??= (async () => {
      lastAttempt = now()
      try {
        await fetchSet()
        lastOk = true
        lastError = null
        failures = 0
        opts.onFetch?.('success')
        // A little jitter, so replicas started together do not refresh together.
        schedule(refreshMs * (0.9 + Math.random() * 0.1))
      } catch (err) {
        lastOk = false
        lastError = (err as Error).message
        failures++
        // Discovery may have moved the JWKS: ask again next time.
        if (!('url' in jwks)) jwksUrl = null
        opts.onFetch?.('failure')
        schedule(backoffMs())
        throw new KeysUnavailableError(`cannot load keys of issuer ${issuer.id}: ${lastError}`)
      } finally {
        inFlight = null
        report()
      }
    })()
    return inFlight
  }

  const warm = async (): Promise<void> => {
    if (usable()) return
    if (inFlight !== null) return inFlight
    // A failing IdP is asked again only after its back-off, however many requests arrive meanwhile.
    if (!lastOk && now() - lastAttempt < backoffMs()) {
      throw new KeysUnavailableError(`keys of issuer ${issuer.id} are unavailable (${lastError ?? 'retrying later'})`)
    }
    return refresh()
  }

  /** Waits at most `budgetMs` for a refresh; a refresh still running after that goes on in the background. */
  const refreshWithin = async (budgetMs: number): Promise<void> => {
    let timeout: NodeJS.Timeout | undefined
    const expired = new Promise<never>((_resolve, reject) => {
      timeout = setTimeout(() => reject(new KeysUnavailableError(`keys of issuer ${issuer.id}: no refresh within ${waitMs} ms`)), budgetMs)
    })
    try {
      await Promise.race([inFlight ?? refresh(), expired])
    } finally {
      clearTimeout(timeout)
    }
  }

  const getKey: JWTVerifyGetKey = async (header, token) => {
    if (!usable()) {
      await warm()
      report()
    }
    if (!usable()) throw new KeysUnavailableError(`keys of issuer ${issuer.id} are older than ${maxStaleMs / 1000} s`)
    try {
      return await held!.getKey(header, token)
    } catch (err) {
      if (!(err instanceof errors.JWKSNoMatchingKey)) throw err
    }
    // An unknown kid: the IdP may have rotated. Ask it once (single flight, at most once per
    // cooldown); if it cannot be asked, the request is retryable, not a bad token.
    if (inFlight === null && now() - lastAttempt < cooldownMs) {
      if (!lastOk) throw new KeysUnavailableError(`keys of issuer ${issuer.id} could not be refreshed: ${lastError ?? 'unknown error'}`)
      // Asked moments ago: a key published since (and used at once) is worth waiting out the rest of
      // the cooldown for, when that is within the request's wait; a kid the IdP never had is then
      // refused after one refresh per cooldown, however many arrive.
      const asked = lastAttempt
      const rest = cooldownMs - (now() - asked)
      if (rest >= waitMs) throw new errors.JWKSNoMatchingKey()
      await new Promise(resolve => setTimeout(resolve, rest))
      // A request that arrived later waited less and may have refreshed already: its answer is this
      // one's too (a second fetch in the same cooldown is what the cooldown is there to prevent).
      if (inFlight !== null || lastAttempt === asked) await refreshWithin(waitMs - rest)
    } else {
      // Not held back by the background back-off: the cooldown already bounds these fetches to one
      // per issuer per cooldown, and an unknown kid is how a recovered IdP's new key is learnt at once
      // rather than at the next background retry (up to a minute away after a long outage).
      await refreshWithin(waitMs)
    }
    return held!.getKey(header, token)
  }

  if (opts.seed !== undefined) {
    try {
      hold(opts.seed.text, Math.min(opts.seed.fetchedAt, now()))
      // Refreshed when it would have been where it was fetched; at once when that time has passed.
      schedule(Math.max(0, refreshMs - (now() - held!.fetchedAt)))
      report()
    } catch {} // not a key set: fetched as if there were no seed
  }

  return {
    getKey,
    warm,
    get ready () { return usable() },
    get version () { return version },
    ageSeconds: () => held === null ? null : (now() - held.fetchedAt) / 1000,
    status () {
      const s = state()
      return {
        state: s,
        keys: held?.count ?? 0,
        fetched_at: held === null ? null : new Date(held.fetchedAt).toISOString(),
        age_seconds: held === null ? null : Math.round((now() - held.fetchedAt) / 1000),
        max_stale_seconds: maxStaleMs / 1000,
        last_error: lastError
      }
    },
    snapshot: () => held === null ? null : { text: held.text, fetchedAt: held.fetchedAt },
    async close () {
      closed = true
      clearTimeout(timer)
      await dispatcher.close()
    }
  }
}

async function discoverJwksUri (issuer: IssuerConfig, dispatcher: Dispatcher): Promise<string> {
  const url = issuer.issuer.replace(/\/$/, '') + '/.well-known/openid-configuration'
  const doc = JSON.parse(await fetchDocument(url, dispatcher, issuer.fetchTimeoutMs)) as { issuer?: unknown, jwks_uri?: unknown }
  // OIDC Discovery 1.0 §4.3: the document must name exactly the issuer we asked about.
  if (doc.issuer !== issuer.issuer) throw new Error(`discovery names issuer ${JSON.stringify(doc.issuer)}, expected ${issuer.issuer}`)
  if (typeof doc.jwks_uri !== 'string' || !doc.jwks_uri.startsWith('https://')) throw new Error('discovery has no https jwks_uri')
  return doc.jwks_uri
}

/** GET on the issuer's own dispatcher: no redirects, bounded time and size, 200 only. */
async function fetchDocument (url: string, dispatcher: Dispatcher, timeoutMs: number): Promise<string> {
  const res = await request(url, {
    dispatcher,
    method: 'GET',
    headers: { accept: 'application/json' },
    signal: AbortSignal.timeout(timeoutMs),
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs
  })
  if (res.statusCode !== 200) {
    await res.body.dump()
    throw new Error(`${url} answered ${res.statusCode}`)
  }
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
  return Buffer.concat(chunks).toString('utf8')
}
