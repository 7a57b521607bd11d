import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { promisify } from 'node:util'
import { gunzip } from 'node:zlib'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { Parser, type ReadEntry } from 'tar'
import { verifyBundleSignatures, type BundleVerification } from './bundle-signature.js'

/*
 * Reads a standard OPA bundle (`opa build -t wasm` output): /policy.wasm, data.json documents and
 * /.manifest. Everything happens in memory; nothing is extracted to disk. A bundle is refused as a
 * whole when it expands beyond the size cap (a gzip bomb), when an entry is anything but a plain
 * file or folder, when an entry's name could step outside the bundle, or (with verification on) when
 * its signature does not cover exactly its files.
 */

export const DEFAULT_MAX_BUNDLE_BYTES = 64 * 1024 * 1024
const MAX_FILES = 10_000
const gunzipAsync = promisify(gunzip)

export interface Bundle {
  wasm: Buffer
  data: Record<string, unknown>
  revision: string
  /** SHA-256 of the archive, to tell bundles apart when the manifest carries no revision. */
  digest: string
  /** The archive as received, so the last good one can be kept on disk. */
  archive: Buffer
  /** Key id that signed it, when verification is on. */
  signedBy: string | null
}

export interface ParseOptions {
  /** Cap on the archive and on its uncompressed size. */
  maxBytes?: number
  /** When set, the bundle must carry a valid signature from one of these keys. */
  verification?: BundleVerification
}

export async function readBundleFile (file: string, opts: ParseOptions = {}): Promise<Bundle> {
  return parseBundle(await readFile(file), opts)
}

export async function parseBundle (archive: Buffer, opts: ParseOptions = {}): Promise<Bundle> {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BUNDLE_BYTES
  if (archive.length > maxBytes) throw new Error(`bundle is larger than ${maxBytes} bytes`)
  let tarball: Buffer
  try {
    // zlib stops at maxOutputLength, so a small archive cannot inflate into gigabytes.
    tarball = await gunzipAsync(archive, { maxOutputLength: maxBytes })
  } catch (err) {
    if (err instanceof RangeError) throw new Error(`bundle expands beyond ${maxBytes} bytes`)
    throw new Error(`bundle is not a gzipped tar: ${(err as Error).message}`)
  }
  const files = await readEntries(tarball)
  const signedBy = opts.verification !== undefined ? await verifyBundleSignatures(files, opts.verification) : null

  const wasm = files.get('policy.wasm')
  if (wasm === undefined) throw new Error('bundle has no /policy.wasm (build it with `opa build -t wasm`)')
  const data = mergeData(files)
  const manifest = parseJsonObject(files.get('.manifest'), '.manifest') ?? {}
  const digest = createHash('sha256').update(archive).digest('hex')
  const revision = typeof manifest.revision === 'string' && manifest.revision !== '' ? manifest.revision : `sha256:${digest.slice(0, 12)}`
  return { wasm, data, revision, digest, archive, signedBy }
}

/** Every file of the tarball by its name inside the bundle (no leading slash). */
async function readEntries (tarball: Buffer): Promise<Map<string, Buffer>> {
  const files = new Map<string, Buffer>()
  let problem: string | undefined
  const parser = new Parser({
    strict: true,
    onReadEntry: (entry: ReadEntry) => {
      const name = bundlePath(entry.path)
      if (problem !== undefined || entry.type === 'Directory') {
        entry.resume()
        return
      }
      if (name === null) problem = `entry "${entry.path}" escapes the bundle`
      else if (entry.type !== 'File' && entry.type !== 'OldFile') problem = `entry /${name} is a ${entry.type}, not a file`
      else if (files.has(name)) problem = `entry /${name} appears twice`
      else if (files.size >= MAX_FILES) problem = `bundle has more than ${MAX_FILES} files`
      if (problem !== undefined || name === null) {
        entry.resume()
        return
      }
      const chunks: Buffer[] = []
      entry.on('data', (c: Buffer) => chunks.push(c))
      entry.on('end', () => files.set(name, Buffer.concat(chunks)))
    }
  })
  try {
    await pipeline(Readable.from([tarball]), parser)
  } catch (err) {
    throw new Error(`bundle is not a valid tar archive: ${(err as Error).message}`)
  }
  if (problem !== undefined) throw new Error(`bundle refused: ${problem}`)
  return files
}

/**
 * The entry's name inside the bundle, or null when it could mean a place outside it: `..` or empty
 * segments, backslashes, NUL. `opa build` writes names with a leading `/`; `./` is accepted too.
 */
function bundlePath (raw: string): string | null {
  const name = raw.replace(/^\.?\//, '').replace(/\/$/, '')
  if (name === '' || /[\\\0]/.test(name)) return null
  if (name.split('/').some(s => s === '' || s === '.' || s === '..')) return null
  return name
}

/** data.json at the root is the data document; one at `a/b/data.json` becomes `data.a.b`, as in OPA. */
function mergeData (files: ReadonlyMap<string, Buffer>): Record<string, unknown> {
  const data: Record<string, unknown> = {}
  const docs = [...files.keys()].filter(n => n === 'data.json' || n.endsWith('/data.json'))
  for (const name of docs.sort((a, b) => a.split('/').length - b.split('/').length)) {
    const doc = parseJsonObject(files.get(name), name)!
    const path = name.split('/').slice(0, -1)
    let node = data
    for (const key of path) {
      if (key === '__proto__') throw new Error(`bundle ${name} has a forbidden path`)
      const next = node[key]
      if (next === undefined) node = (node[key] = {}) as Record<string, unknown>
      else if (next !== null && typeof next === 'object' && !Array.isArray(next)) node = next as Record<string, unknown>
      else throw new Error(`bundle ${name} conflicts with data at ${path.join('.')}`)
    }
    for (const [k, v] of Object.entries(doc)) {
      if (Object.hasOwn(node, k) || k === '__proto__') throw new Error(`bundle ${name} conflicts with data at ${[...path, k].join('.')}`)
      node[k] = v
    }
  }
  return data
}

function parseJsonObject (buf: Buffer | undefined, name: string): Record<string, unknown> | undefined {
  if (buf === undefined) return undefined
  let value: unknown
  try {
    value = JSON.parse(buf.toString('utf8'))
  } catch (err) {
    throw new Error(`bundle ${name} is not valid JSON: ${(err as Error).message}`)
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new Error(`bundle ${name} is not a JSON object`)
  return value as Record<string, unknown>
}

