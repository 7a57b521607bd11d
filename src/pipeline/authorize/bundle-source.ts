import { readFile, readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import * as tar from 'tar'
import { Agent, request } from 'undici'

/*
 * Where bundles come from: a file, a folder holding an unpacked bundle, or an OPA-compatible bundle
 * server. A source only delivers archive bytes; the store verifies, instantiates and swaps them, so
 * every source gets the same checks.
 */

export interface BundleSource {
  /** Where bundles come from, for logs and /status (never a credential). */
  readonly location: string
  /** The archive, or null when it has not changed since the last fetch. */
  fetch: () => Promise<Buffer | null>
  /** Calls `onChange` whenever a new bundle may be there; returns a function that stops watching. */
  watch: (onChange: () => void, intervalMs: number) => () => void
  close: () => Promise<void>
}

export async function createFileSource (path: string, maxBytes: number): Promise<BundleSource> {
  const isDir = await stat(path).then(s => s.isDirectory(), () => false)
  return isDir ? createFolderSource(path) : createArchiveFileSource(path, maxBytes)
}

function createArchiveFileSource (file: string, maxBytes: number): BundleSource {
  return {
    location: file,
    async fetch () {
      const s = await stat(file).catch((err: NodeJS.ErrnoException) => {
        throw new Error(err.code === 'ENOENT' ? `bundle file not found: ${file}` : err.message)
      })
      if (s.size > maxBytes) throw new Error(`bundle is larger than ${maxBytes} bytes`)
      return readFile(file)
    },
    watch: (onChange, intervalMs) => pollFingerprint(() => fingerprint([file]), onChange, intervalMs),
    close: async () => {}
  }
}

/**
 * An unpacked bundle (policy.wasm, data.json, .manifest, .signatures.json ... in a folder), packed
 * in memory so it is read exactly like an archive. Links are packed as links and then refused.
 */
function createFolderSource (dir: string): BundleSource {
  return {
    location: dir,
    async fetch () {
      const names = await readdir(dir)
      const chunks: Buffer[] = []
      for await (const chunk of tar.c({ gzip: true, cwd: dir, portable: true }, names)) chunks.push(chunk as Buffer)
      return Buffer.concat(chunks)
    },
    watch: (onChange, intervalMs) => pollFingerprint(async () => {
      const entries = await readdir(dir, { recursive: true })
      return fingerprint([dir, ...entries.map(e => join(dir, e))])
    }, onChange, intervalMs),
    close: async () => {}
  }
}

async function fingerprint (paths: string[]): Promise<string> {
  const parts = await Promise.all(paths.map(async p => stat(p).then(s => `${p}:${s.mtimeMs}:${s.size}`, () => `${p}:-`)))
  return parts.sort().join('\n')
}

function pollFingerprint (read: () => Promise<string>, onChange: () => void, intervalMs: number): () => void {
  let last: Promise<string> = read().catch(() => '')
  const timer = setInterval(() => {
    last = last.then(async before => {
      const now = await read().catch(() => '')
      if (now !== before) onChange()
      return now
    })
  }, intervalMs)
  timer.unref()
  return () => clearInterval(timer)
}

export interface ServerSourceOptions {
  url: string
  timeoutMs: number
  maxBytes: number
  bearerToken?: string
  tls?: { ca?: Buffer, cert?: Buffer, key?: Buffer, servername?: string }
}

/**
 * An OPA-compatible bundle server (the protocol of OPA's bundle plugin): GET with
 * `If-None-Match: <last ETag>`, 304 means unchanged, 200 carries a gzipped bundle. Redirects are not
 * followed and the body is capped while it streams in.
 */
export function createServerSource (opts: ServerSourceOptions): BundleSource {
  const agent = new Agent({
    connect: { ...(opts.tls ?? {}), rejectUnauthorized: true },
    headersTimeout: opts.timeoutMs,
    bodyTimeout: opts.timeoutMs,
    connections: 1
  })
  let etag: string | undefined
  return {
    location: opts.url,
    async fetch () {
      const headers: Record<string, string> = { accept: 'application/gzip, application/octet-stream' }
      if (etag !== undefined) headers['if-none-match'] = etag
      if (opts.bearerToken !== undefined) headers.authorization = `Bearer ${opts.bearerToken}`
      const res = await request(opts.url, { dispatcher: agent, headers, signal: AbortSignal.timeout(opts.timeoutMs) })
      if (res.statusCode === 304) {
        await res.body.dump()
        return null
      }
      if (res.statusCode !== 200) {
        await res.body.dump()
        throw new Error(`bundle server answered ${res.statusCode}`)
      }
      const chunks: Buffer[] = []
      let size = 0
      for await (const chunk of res.body) {
        size += (chunk as Buffer).length
        if (size > opts.maxBytes) {
          res.body.destroy()
          throw new Error(`bundle from the server is larger than ${opts.maxBytes} bytes`)
        }
        chunks.push(chunk as Buffer)
      }
      const tag = res.headers.etag
      etag = typeof tag === 'string' && tag !== '' ? tag : undefined
      return Buffer.concat(chunks)
    },
    watch (onChange, intervalMs) {
      const timer = setInterval(onChange, intervalMs)
      timer.unref()
      return () => clearInterval(timer)
    },
    close: async () => agent.close()
  }
}
