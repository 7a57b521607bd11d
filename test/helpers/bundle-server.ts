import { createHash } from 'node:crypto'
import { createServer, type Server } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import type { Test } from 'tap'
import { createCa, type PemPair } from '../../src/tls/pki.js'

export interface BundleServerRequest { ifNoneMatch?: string, authorization?: string, clientCertCn?: string }

export interface BundleServer {
  url: string
  ca: string
  /** A client certificate this server accepts (mutual TLS). */
  client: PemPair
  requests: BundleServerRequest[]
  /** What GET /bundles/authz.tar.gz serves from now on; its ETag is its SHA-256. */
  serve: (archive: Buffer) => void
  close: () => Promise<void>
}

/**
 * An OPA-compatible bundle server on loopback: HTTPS with a CA made for the test, a client
 * certificate required (mutual TLS) and a bearer token, ETag / If-None-Match as OPA's bundle plugin
 * expects (304 when unchanged).
 */
export async function startBundleServer (t: Test, token: string): Promise<BundleServer> {
  const ca = await createCa('bundle-server-test-ca', 1)
  const server = await ca.issue({ commonName: 'bundles', ipAddresses: ['127.0.0.1'], dnsNames: ['localhost'], usage: 'server', days: 1 })
  const client = await ca.issue({ commonName: 'portcullis-gateway', usage: 'client', days: 1 })
  const requests: BundleServerRequest[] = []
  let current: { archive: Buffer, etag: string } | null = null
  const https: Server = createServer({ cert: server.cert, key: server.key, ca: ca.cert, requestCert: true, rejectUnauthorized: true }, (req, res) => {
    const peer = (req.socket as TLSSocket).getPeerCertificate()
    const seen: BundleServerRequest = { ...(peer?.subject?.CN !== undefined ? { clientCertCn: String(peer.subject.CN) } : {}) }
    if (typeof req.headers['if-none-match'] === 'string') seen.ifNoneMatch = req.headers['if-none-match']
    if (typeof req.headers.authorization === 'string') seen.authorization = req.headers.authorization
    requests.push(seen)
    if (req.url !== '/bundles/authz.tar.gz' || current === null) return res.writeHead(404).end()
    if (req.headers.authorization !== `Bearer ${token}`) return res.writeHead(401).end()
    if (req.headers['if-none-match'] === current.etag) return res.writeHead(304, { etag: current.etag }).end()
    res.writeHead(200, { 'content-type': 'application/gzip', etag: current.etag }).end(current.archive)
  })
  await new Promise<void>(resolve => https.listen(0, '127.0.0.1', resolve))
  let closed = false
  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    https.closeAllConnections()
    await new Promise<void>(resolve => https.close(() => resolve()))
  }
  t.teardown(close)
  return {
    url: `https://127.0.0.1:${(https.address() as AddressInfo).port}/bundles/authz.tar.gz`,
    ca: ca.cert,
    client,
    requests,
    serve (archive) {
      current = { archive, etag: `"${createHash('sha256').update(archive).digest('hex')}"` }
    },
    close
  }
}
