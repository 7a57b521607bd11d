import { readFile } from 'node:fs/promises'
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'

export interface DemoFunction { url: string, close: () => Promise<void> }

export interface DemoFunctionOptions {
  host: string
  port: number
  cert: string
  key: string
  /** CA that must have signed the caller's client certificate. */
  clientCa: string
  /** The only client identity (URI SAN) allowed to call; anything else gets 403. */
  allowedClient: string
}

/**
 * The demo function: reachable only over mutual TLS, it answers with JSON describing exactly what it
 * received (method, path with query, headers, body size) and the verified identity of its caller.
 */
export async function startDemoFunction (opts: DemoFunctionOptions): Promise<DemoFunction> {
  const server = createServer({
    cert: await readFile(opts.cert),
    key: await readFile(opts.key),
    ca: await readFile(opts.clientCa),
    requestCert: true,
    rejectUnauthorized: true,
    minVersion: 'TLSv1.2'
  }, (req, res) => {
    const peer = (req.socket as TLSSocket).getPeerCertificate()
    const caller = {
      subject: peer.subject?.CN ?? null,
      uri_sans: (peer.subjectaltname ?? '').split(', ').filter(s => s.startsWith('URI:')).map(s => s.slice(4)),
      fingerprint256: peer.fingerprint256 ?? null
    }
    let bytes = 0
    req.on('data', (c: Buffer) => { bytes += c.length })
    req.on('end', () => {
      const allowed = caller.uri_sans.includes(opts.allowedClient)
      res.writeHead(allowed ? (req.method === 'POST' ? 201 : 200) : 403, { 'content-type': 'application/json' })
      res.end(JSON.stringify(allowed
        ? { method: req.method, path: req.url, headers: req.headers, body_bytes: bytes, gateway: { verified: true, ...caller } }
        : { error: 'caller is not the gateway', caller }, null, 2) + '\n')
    })
  })
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(opts.port, opts.host, resolve))
  return {
    url: `https://${opts.host}:${(server.address() as AddressInfo).port}`,
    close: async () => new Promise(resolve => { server.closeAllConnections(); server.close(() => resolve()) })
  }
}
