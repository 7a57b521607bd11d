import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { Parser, type ReadEntry } from 'tar'

/*
 * Reads a standard OPA bundle (`opa build -t wasm` output): /policy.wasm, /data.json and /.manifest.
 * Only these files are read, from memory; nothing is extracted to disk, so a hostile archive cannot
 * write anywhere.
 */

const MAX_BUNDLE_BYTES = 64 * 1024 * 1024

export interface Bundle {
  wasm: Buffer
  data: Record<string, unknown>
  revision: string
  /** SHA-256 of the archive, to tell bundles apart when the manifest carries no revision. */
  digest: string
}

export async function readBundleFile (file: string): Promise<Bundle> {
  const archive = await readFile(file)
  if (archive.length > MAX_BUNDLE_BYTES) throw new Error(`bundle is larger than ${MAX_BUNDLE_BYTES} bytes`)
  return parseBundle(archive)
}

export async function parseBundle (archive: Buffer): Promise<Bundle> {
  const files = new Map<string, Buffer>()
  const parser = new Parser({
    onReadEntry: (entry: ReadEntry) => {
      const name = entry.path.replace(/^\.?\//, '')
      if (entry.type !== 'File' || !['policy.wasm', 'data.json', '.manifest'].includes(name)) {
        entry.resume()
        return
      }
      const chunks: Buffer[] = []
      entry.on('data', (c: Buffer) => chunks.push(c))
      entry.on('end', () => files.set(name, Buffer.concat(chunks)))
    }
  })
  await pipeline(Readable.from([archive]), parser)

  const wasm = files.get('policy.wasm')
  if (wasm === undefined) throw new Error('bundle has no /policy.wasm (build it with `opa build -t wasm`)')
  const data = parseJsonObject(files.get('data.json'), 'data.json') ?? {}
  const manifest = parseJsonObject(files.get('.manifest'), '.manifest') ?? {}
  const digest = createHash('sha256').update(archive).digest('hex')
  const revision = typeof manifest.revision === 'string' && manifest.revision !== '' ? manifest.revision : `sha256:${digest.slice(0, 12)}`
  return { wasm, data, revision, digest }
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
