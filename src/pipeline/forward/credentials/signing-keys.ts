import { createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto'
import { chmod, readFile, rename, writeFile } from 'node:fs/promises'
import type { JWK } from 'jose'
import type { AssertionConfig } from '../../../config/schema.js'

/*
 * The gateway's assertion signing keys. Rotation overlaps both ways: a new key is published in the
 * JWKS `publishAheadSeconds` before it signs anything (so verifiers that cached the old JWKS find it on
 * their next refresh), and a key that stopped signing stays published for the assertion TTL plus a
 * minute, so assertions it signed still verify until they expire anyway.
 */

export interface SigningKey {
  kid: string
  alg: 'ES256' | 'EdDSA'
  privateKey: KeyObject
  publicJwk: JWK
  /** When it was made and when it starts signing (ms since the epoch). */
  createdAt: number
  activeFrom: number
}

interface StoredKey { kid: string, alg: SigningKey['alg'], jwk: JWK, createdAt: number, activeFrom: number }

export interface KeyRing {
  /** The key that signs now: the newest one whose activeFrom has passed. */
  current: () => SigningKey
  /** Every published public key, the signing one and those before and after it. */
  jwks: () => { keys: JWK[] }
  /** Makes a new key if the signing one is old enough, drops keys no assertion needs any more. */
  maintain: () => Promise<void>
  /** Makes a new key now (it signs after publishAheadSeconds). */
  rotate: () => Promise<void>
  close: () => void
}

export interface KeyRingOptions {
  config: AssertionConfig
  now?: () => number
  /** Called after each rotation, e.g. to count it. */
  onRotate?: () => void
  /** Called with the number of published keys whenever the set changes. */
  onChange?: (published: number) => void
  /** Called when a timed check fails (e.g. the keys file cannot be written); the current keys stay. */
  onError?: (err: unknown) => void
  /** Whether to check for rotation on a timer (tests drive maintain() themselves). */
  timer?: boolean
}

function generate (alg: SigningKey['alg'], activeFrom: number, now: number): SigningKey {
  const { privateKey } = alg === 'ES256'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : generateKeyPairSync('ed25519')
  return fromPrivate(privateKey, randomUUID(), alg, now, activeFrom)
}

function fromPrivate (privateKey: KeyObject, kid: string, alg: SigningKey['alg'], createdAt: number, activeFrom: number): SigningKey {
  const publicJwk = { ...createPublicKey(privateKey).export({ format: 'jwk' }), kid, alg, use: 'sig' } as JWK
  return { kid, alg, privateKey, publicJwk, createdAt, activeFrom }
}

async function load (file: string): Promise<SigningKey[] | null> {
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
    throw err
  }
  const stored = JSON.parse(text) as { keys: StoredKey[] }
  return stored.keys.map(k => fromPrivate(createPrivateKey({ key: k.jwk as any, format: 'jwk' }), k.kid, k.alg, k.createdAt, k.activeFrom))
}

/** Writes a file whole or not at all (another process may read it at any moment). */
async function writeAtomic (file: string, content: string, mode: number): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`
  await writeFile(tmp, content, { mode })
  await chmod(tmp, mode)
  await rename(tmp, file)
}

/** Loads the keys from `keysFile` (or makes the first one) and publishes the JWKS file. */
export async function createKeyRing ({ config, now = Date.now, onRotate, onChange, onError, timer = true }: KeyRingOptions): Promise<KeyRing> {
  let keys = (config.keysFile !== undefined ? await load(config.keysFile) : null) ?? []
  // A key file made for another algorithm is not used: a new key of the configured one is made.
  if (!keys.some(k => k.alg === config.algorithm)) keys = [...keys, generate(config.algorithm, now(), now())]

  const current = (): SigningKey => {
    const t = now()
    let best: SigningKey | undefined
    for (const k of keys) if (k.alg === config.algorithm && k.activeFrom <= t && (best === undefined || k.activeFrom > best.activeFrom)) best = k
    // Only possible if every key is still waiting to be published; the oldest one then signs.
    return best ?? keys.reduce((a, b) => a.activeFrom <= b.activeFrom ? a : b)
  }

  const persist = async (): Promise<void> => {
    onChange?.(keys.length)
    if (config.keysFile !== undefined) {
      const stored: StoredKey[] = keys.map(k => ({ kid: k.kid, alg: k.alg, jwk: k.privateKey.export({ format: 'jwk' }) as JWK, createdAt: k.createdAt, activeFrom: k.activeFrom }))
      await writeAtomic(config.keysFile, JSON.stringify({ keys: stored }) + '\n', 0o600)
    }
    if (config.jwksFile !== undefined) await writeAtomic(config.jwksFile, JSON.stringify(ring.jwks(), null, 2) + '\n', 0o644)
  }

  const ring: KeyRing = {
    current,
    jwks: () => ({ keys: keys.map(k => k.publicJwk) }),
    async rotate () {
      keys = [...keys, generate(config.algorithm, now() + config.publishAheadSeconds * 1000, now())]
      onRotate?.()
      await persist()
    },
    async maintain () {
      const t = now()
      const signing = current()
      const pending = keys.some(k => k.activeFrom > t)
      const before = keys.length
      // A superseded key is kept until every assertion it signed has expired (plus a minute of clock skew).
      const keepUntil = signing.activeFrom + (config.ttlSeconds + 60) * 1000
      keys = keys.filter(k => k === signing || k.activeFrom > signing.activeFrom || t < keepUntil)
      if (!pending && t - signing.createdAt >= config.rotateAfterSeconds * 1000) await ring.rotate()
      else if (keys.length !== before) await persist()
    },
    close () { if (interval !== undefined) clearInterval(interval) }
  }
  await persist()
  const interval = timer ? setInterval(() => { ring.maintain().catch((err: unknown) => onError?.(err)) }, 30_000).unref() : undefined
  return ring
}
