import { createHash, type KeyObject } from 'node:crypto'
import { compactVerify, decodeProtectedHeader } from 'jose'
import { isLosslessNumber, parse as parseLossless } from 'lossless-json'

/*
 * Signed bundles, verified the way OPA verifies them (bundle/verify.go, bundle/hash.go), so a bundle
 * made with `opa build --signing-key` or `opa sign` is accepted here exactly when OPA would accept it:
 *
 * - `/.signatures.json` is `{"signatures": [<one JWT>]}`. Its key is picked by the configured keyid,
 *   else the JWT's `kid`, else the payload's `keyid`; the JWT must verify with that key under the
 *   algorithm configured for it, and the payload's `scope` must equal the configured one.
 * - The payload lists every file (`name`, `hash`, `algorithm`). Each file of the bundle except the
 *   signatures file must be listed with a matching hash, and each listed file must be present.
 * - Structured files (data.json, data.yaml, .manifest) are hashed over OPA's canonical JSON: keys
 *   sorted, no whitespace, numbers as written, strings as Go's encoder writes them. Others are
 *   hashed as bytes.
 */

export const SIGNATURES_FILE = '.signatures.json'

export interface VerificationKey {
  algorithm: string
  key: KeyObject
  scope?: string
}

export interface BundleVerification {
  /** Keys by key id. */
  keys: ReadonlyMap<string, VerificationKey>
  /** Key id to use whatever the bundle says (OPA's `signing.keyid`). */
  keyId?: string
  scope?: string
}

interface FileInfo { name: string, hash: string, algorithm: string }

// OPA's SignatureHasher algorithms, by the names it writes into the payload.
const HASHES: Record<string, string> = {
  'MD5': 'md5',
  'SHA-1': 'sha1',
  'SHA-224': 'sha224',
  'SHA-256': 'sha256',
  'SHA-384': 'sha384',
  'SHA-512': 'sha512',
  'SHA-512-224': 'sha512-224',
  'SHA-512-256': 'sha512-256'
}

/**
 * Verifies a bundle's signatures against its files (names without a leading slash). Throws with the
 * reason on any mismatch; returns the verified key id.
 */
export async function verifyBundleSignatures (
  files: ReadonlyMap<string, Buffer>, config: BundleVerification
): Promise<string> {
  const raw = files.get(SIGNATURES_FILE)
  if (raw === undefined) throw new Error('bundle is not signed (no /.signatures.json)')
  const { keyId, payload } = await verifyToken(raw, config)

  const listed = new Map<string, FileInfo>()
  for (const f of payload.files) listed.set(f.name.replace(/^\//, ''), f)
  for (const [name, content] of files) {
    if (name === SIGNATURES_FILE) continue
    const info = listed.get(name)
    if (info === undefined) throw new Error(`file /${name} is not included in the bundle signature`)
    const algorithm = HASHES[info.algorithm]
    if (algorithm === undefined) throw new Error(`file /${name}: unsupported hashing algorithm "${info.algorithm}"`)
    const digest = createHash(algorithm).update(isStructured(name) ? canonicalJson(content, name) : content).digest('hex')
    if (digest !== info.hash.toLowerCase()) throw new Error(`file /${name}: digest mismatch`)
    listed.delete(name)
  }
  if (listed.size > 0) throw new Error(`file(s) ${[...listed.keys()].map(n => `/${n}`).join(', ')} specified in the bundle signature but not in the bundle`)
  return keyId
}

async function verifyToken (raw: Buffer, config: BundleVerification) {
  let doc: unknown
  try { doc = JSON.parse(raw.toString('utf8')) } catch { throw new Error('.signatures.json is not valid JSON') }
  const signatures = (doc as { signatures?: unknown } | null)?.signatures
  if (!Array.isArray(signatures) || signatures.length === 0) throw new Error('.signatures.json: missing JWT (expected exactly one)')
  if (signatures.length > 1) throw new Error('.signatures.json: multiple JWTs are not supported (expected exactly one)')
  const token = signatures[0]
  if (typeof token !== 'string') throw new Error('.signatures.json: the signature is not a string')

  let header: { kid?: unknown }
  let unverified: { keyid?: unknown }
  try {
    header = decodeProtectedHeader(token)
    unverified = JSON.parse(Buffer.from(token.split('.')[1] ?? '', 'base64url').toString('utf8')) as { keyid?: unknown }
  } catch {
    throw new Error('.signatures.json: the signature is not a JWT')
  }
  const keyId = config.keyId ??
    (typeof header.kid === 'string' && header.kid !== '' ? header.kid : undefined) ??
    (typeof unverified?.keyid === 'string' && unverified.keyid !== '' ? unverified.keyid : undefined)
  if (keyId === undefined) throw new Error('bundle signature names no key id')
  const key = config.keys.get(keyId)
  if (key === undefined) throw new Error(`bundle is signed with unknown key "${keyId}"`)

  let verified: Uint8Array
  try {
    verified = (await compactVerify(token, key.key, { algorithms: [key.algorithm] })).payload
  } catch (err) {
    throw new Error(`bundle signature does not verify with key "${keyId}": ${(err as Error).message}`)
  }
  let payload: { files?: unknown, scope?: unknown }
  try {
    payload = JSON.parse(Buffer.from(verified).toString('utf8')) as { files?: unknown, scope?: unknown }
  } catch {
    throw new Error('bundle signature payload is not JSON')
  }
  const scope = config.scope ?? key.scope ?? ''
  if ((payload.scope ?? '') !== scope) throw new Error('bundle signature scope mismatch')
  if (!Array.isArray(payload.files) || !payload.files.every(isFileInfo)) throw new Error('bundle signature payload has no valid file list')
  return { keyId, payload: { files: payload.files } }
}

function isFileInfo (f: unknown): f is FileInfo {
  const v = f as Record<string, unknown> | null
  return v !== null && typeof v === 'object' && typeof v.name === 'string' && typeof v.hash === 'string' && typeof v.algorithm === 'string'
}

function isStructured (name: string): boolean {
  const base = name.slice(name.lastIndexOf('/') + 1)
  return base === 'data.json' || base === 'data.yaml' || base === '.manifest' || base === SIGNATURES_FILE
}

/**
 * OPA's canonical form of a JSON document (bundle/hash.go `walk`). Written by hand because it must
 * match Go's encoder byte for byte; lossless-json keeps numbers exactly as written, as Go's
 * json.Number does.
 */
export function canonicalJson (content: Buffer, name = 'file'): string {
  let value: unknown
  try {
    value = parseLossless(content.toString('utf8'))
  } catch (err) {
    throw new Error(`bundle ${name} is not valid JSON: ${(err as Error).message}`)
  }
  return encode(value)
}

function encode (value: unknown): string {
  if (isLosslessNumber(value)) return value.value
  if (typeof value === 'string') return encodeString(value)
  if (Array.isArray(value)) return `[${value.map(encode).join(',')}]`
  if (value !== null && typeof value === 'object') {
    // Go sorts keys by their UTF-8 bytes.
    const keys = Object.keys(value).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)))
    return `{${keys.map(k => `${encodeString(k)}:${encode((value as Record<string, unknown>)[k])}`).join(',')}}`
  }
  return JSON.stringify(value)
}

// Go's encoder with HTML escaping off equals JSON.stringify, except that it also escapes U+2028/9.
function encodeString (s: string): string {
  return JSON.stringify(s).replace(/\u2028/g, '\\u2028').replace(/\u2029/g, '\\u2029')
}
