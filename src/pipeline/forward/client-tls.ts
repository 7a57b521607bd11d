import { isIP } from 'node:net'
import { readFile, stat } from 'node:fs/promises'
import { X509Certificate } from 'node:crypto'
import { createSecureContext, type SecureContext } from 'node:tls'
import type { FastifyBaseLogger } from 'fastify'
import type { Socket } from 'node:net'
import { buildConnector, errors as undiciErrors } from 'undici'
import type { UpstreamConfig } from '../../config/schema.js'
import type { Metrics } from '../../observability/metrics.js'
import { earliestExpiry } from '../../tls/expiry.js'

/*
 * The TLS side of one upstream: a single SecureContext (CA, client certificate, TLS 1.2+) shared by
 * every connection, and an undici connector that uses whichever context is current. The CA,
 * certificate and key files are checked for changes on an interval; files that load become the
 * context for new connections (open ones finish on the old pair), files that do not are logged and
 * counted and the old context stays. Polling rather than fs.watch: secrets mounted by Kubernetes and
 * the like change by swapping a symlink, which fs.watch on the file misses.
 */

export interface ClientTls {
  connect: buildConnector.connector
  close: () => void
}

export interface ClientTlsOptions {
  log: FastifyBaseLogger
  metrics: Metrics
}

interface Pair { context: SecureContext, fingerprint: string | null, notAfter: number | null, caNotAfter: number | null, stamp: string }

async function fileStamp (files: string[]): Promise<string> {
  const stats = await Promise.all(files.map(async f => stat(f)))
  return stats.map(s => `${s.ino}:${s.size}:${s.mtimeMs}`).join('|')
}

/** Builds the context from the files as they are now; throws if they do not make a usable pair. */
async function loadPair (tls: NonNullable<UpstreamConfig['tls']>, files: string[]): Promise<Pair> {
  const stamp = files.length > 0 ? await fileStamp(files) : ''
  const [ca, cert, key] = await Promise.all([tls.ca, tls.cert, tls.key].map(async f => f === undefined ? undefined : readFile(f, 'utf8')))
  let fingerprint: string | null = null
  let notAfter: number | null = null
  if (cert !== undefined && key !== undefined) {
    const x509 = new X509Certificate(cert)
    notAfter = Date.parse(x509.validTo)
    if (!(notAfter > Date.now())) throw new Error(`client certificate expired at ${x509.validTo}`)
    fingerprint = x509.fingerprint256
  }
  // createSecureContext refuses a key that does not belong to the certificate ("key values mismatch").
  const context = createSecureContext({
    ...(ca !== undefined ? { ca } : {}),
    ...(cert !== undefined ? { cert, key } : {}),
    minVersion: 'TLSv1.2'
  })
  return { context, fingerprint, notAfter, caNotAfter: ca === undefined ? null : earliestExpiry(ca), stamp }
}

// long: one closure over a client pair's files, watcher and expiry.
export async function createClientTls (config: UpstreamConfig, { log, metrics }: ClientTlsOptions): Promise<ClientTls> {
  const url = new URL(config.url)
  const tls = config.tls ?? { reloadIntervalMs: 0 }
  const files = [tls.ca, tls.cert, tls.key].filter((f): f is string => f !== undefined)
  // SNI and the name checked against the certificate: from config, else the URL's host (never an IP
  // literal, which SNI does not allow). Never the client's Host: undici would otherwise take it from
  // the request's host header.
  const servername = tls.servername ?? (isIP(url.hostname.replace(/^\[|\]$/g, '')) === 0 ? url.hostname : undefined)
  const certificate = `upstream/${config.id}`

  let pair = await loadPair(tls, files)
  const build = (p: Pair): buildConnector.connector => buildConnector({
    timeout: 0, // armed in connect() below
    allowH2: config.http2,
    secureContext: p.context,
    rejectUnauthorized: true,
    ...(servername !== undefined ? { servername } : {})
  } as buildConnector.BuildOptions)
  // A fresh connector per pair also drops the old pair's TLS session cache: a resumed session would
  // keep the identity of the certificate it was made with.
  let connector = build(pair)
  // The client pair and the CA the function's certificate must chain to: either running out stops traffic.
  const exportExpiry = (p: Pair): void => {
    if (p.notAfter !== null) metrics.certificateNotAfter.set(certificate, p.notAfter)
    if (p.caNotAfter !== null) metrics.certificateNotAfter.set(`${certificate}/ca`, p.caNotAfter)
  }
  exportExpiry(pair)

  let reloading = false
  const reload = async (): Promise<void> => {
    if (reloading) return
    reloading = true
    try {
      if (await fileStamp(files) === pair.stamp) return
      const next = await loadPair(tls, files)
      pair = next
      connector = build(next)
      exportExpiry(next)
      metrics.certificateReloads.inc({ certificate, result: 'loaded' })
      log.info({ upstream: config.id, fingerprint: next.fingerprint }, 'upstream client certificate reloaded')
    } catch (err) {
      // Remember the failed files so the same broken pair is reported once, not on every check.
      pair.stamp = await fileStamp(files).catch(() => pair.stamp)
      metrics.certificateReloads.inc({ certificate, result: 'failed' })
      log.error({ upstream: config.id, err: (err as Error).message }, 'upstream client certificate not reloaded; keeping the current one')
    } finally {
      reloading = false
    }
  }
  const timer = files.length > 0 ? setInterval(() => { void reload() }, tls.reloadIntervalMs) : undefined
  timer?.unref()

  return {
    connect: (opts, callback) => {
      // The connect timeout on a native timer: undici's own runs on its coarse timers, which fire
      // 0.5–1 s late (see exact-timeouts.ts). Destroying the socket with undici's error is what
      // undici does itself when its timer fires.
      let settled = false
      let socket: Socket | undefined
      const timer = setTimeout(() => {
        if (!settled) socket?.destroy(new undiciErrors.ConnectTimeoutError(`connect timeout after ${config.connectTimeoutMs} ms`))
      }, config.connectTimeoutMs)
      try {
        // '' when none is configured: undici then takes the name from the pool's origin, not a request.
        // (The connector returns the socket, which its type does not say.)
        socket = (connector as (o: typeof opts, cb: typeof callback) => Socket)({ ...opts, servername: servername ?? '' }, (...args) => {
          settled = true
          clearTimeout(timer)
          callback(...args)
        })
      } catch (err) {
        clearTimeout(timer)
        throw err
      }
      return socket
    },
    close () {
      if (timer !== undefined) clearInterval(timer)
      metrics.certificateNotAfter.delete(certificate)
    }
  }
}
