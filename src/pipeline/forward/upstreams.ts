import { readFile } from 'node:fs/promises'
import { Pool } from 'undici'
import type { UpstreamConfig } from '../../config/schema.js'

/*
 * One connection pool per upstream, built at start and closed with the gateway. TLS verification is
 * always on (undici's default, never relaxed here), SNI comes from config and never from the client,
 * and the gateway's client certificate is presented for mutual TLS. undici's request API does not
 * follow redirects.
 */

export interface Upstream {
  id: string
  /** Path of the upstream URL without a trailing slash ('' for the root). */
  basePath: string
  host: string
  pool: Pool
  headersTimeoutMs: number
  bodyTimeoutMs: number
}

export async function createUpstream (config: UpstreamConfig): Promise<Upstream> {
  const url = new URL(config.url)
  const tls = config.tls === undefined
    ? {}
    : {
        ca: await readFile(config.tls.ca, 'utf8'),
        cert: await readFile(config.tls.cert, 'utf8'),
        key: await readFile(config.tls.key, 'utf8'),
        ...(config.tls.servername !== undefined ? { servername: config.tls.servername } : {})
      }
  const pool = new Pool(url.origin, {
    connections: config.connections,
    connectTimeout: config.connectTimeoutMs,
    headersTimeout: config.headersTimeoutMs,
    bodyTimeout: config.bodyTimeoutMs,
    connect: { ...tls, rejectUnauthorized: true, minVersion: 'TLSv1.2' }
  })
  return {
    id: config.id,
    basePath: url.pathname.replace(/\/$/, ''),
    host: url.host,
    pool,
    headersTimeoutMs: config.headersTimeoutMs,
    bodyTimeoutMs: config.bodyTimeoutMs
  }
}

export async function createUpstreams (configs: readonly UpstreamConfig[]): Promise<Map<string, Upstream>> {
  const upstreams = new Map<string, Upstream>()
  try {
    for (const c of configs) upstreams.set(c.id, await createUpstream(c))
  } catch (err) {
    await Promise.all([...upstreams.values()].map(u => u.pool.close()))
    throw err
  }
  return upstreams
}
