import { readFile } from 'node:fs/promises'
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { TLSSocket } from 'node:tls'
import { AssertionError, createAssertionVerifier, type AssertionVerifier } from '../verify/index.js'

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
  /** Verify the gateway's assertion on every request (portcullis/verify) against this JWKS file. */
  assertion?: { issuer: string, jwksFile: string }
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
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => { chunks.push(c) })
    req.on('end', () => {
      const body = Buffer.concat(chunks)
      const answer = (status: number, doc: unknown): void => {
        res.writeHead(status, { 'content-type': 'application/json' })
        res.end(JSON.stringify(doc, null, 2) + '\n')
      }
      if (!caller.uri_sans.includes(opts.allowedClient)) return answer(403, { error: 'caller is not the gateway', caller })
      const seen = { method: req.method, path: req.url, headers: req.headers, body_bytes: body.length, gateway: { verified: true, ...caller } }
      if (verifier === null) return answer(req.method === 'POST' ? 201 : 200, seen)
      // Trust nothing: even over the gateway's mTLS, the per-request assertion must verify.
      verifier.verify(req, body).then(
        claims => answer(req.method === 'POST' ? 201 : 200, { ...seen, assertion: { verified: true, claims } }),
        (err: unknown) => err instanceof AssertionError
          ? answer(401, { error: 'assertion refused', assertion: { verified: false, reason: err.reason, message: err.message } })
          : answer(500, { error: 'assertion check failed' })
      )
    })
  })
  let verifier: AssertionVerifier | null = null
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(opts.port, opts.host, resolve))
  const url = `https://${opts.host}:${(server.address() as AddressInfo).port}`
  // The audience is this function's own URL, as the gateway's upstream names it.
  if (opts.assertion !== undefined) verifier = createAssertionVerifier({ issuer: opts.assertion.issuer, audience: url, jwks: { file: opts.assertion.jwksFile } })
  return {
    url,
    close: async () => new Promise(resolve => { server.closeAllConnections(); server.close(() => resolve()) })
  }
}
