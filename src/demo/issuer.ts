import { createPublicKey } from 'node:crypto'
import { readFile, writeFile } from 'node:fs/promises'
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import type { DemoPaths } from './state.js'

export interface DemoIssuer { url: string, close: () => Promise<void> }

/**
 * A small identity provider for the demo: OIDC discovery and a JWKS over HTTPS, the two documents a
 * gateway reads from a real IdP. Tokens are minted offline by `portcullis demo token` with the key in
 * the demo folder; the issuer URL is recorded there so those tokens carry the right `iss`.
 */
export async function startDemoIssuer (paths: DemoPaths, host: string, port: number): Promise<DemoIssuer> {
  const { d: _private, ...publicJwk } = JSON.parse(await readFile(paths.signingKey, 'utf8')) as Record<string, string>
  createPublicKey({ key: publicJwk, format: 'jwk' }) // refuse to serve a key that does not parse
  let issuer = ''
  const server = createServer({ cert: await readFile(paths.issuerCert), key: await readFile(paths.issuerKey) }, (req, res) => {
    const send = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'max-age=300' })
      res.end(JSON.stringify(body))
    }
    if (req.method !== 'GET') return send(405, { error: 'method not allowed' })
    if (req.url === '/.well-known/openid-configuration') {
      return send(200, {
        issuer,
        jwks_uri: `${issuer}/jwks.json`,
        id_token_signing_alg_values_supported: ['ES256'],
        response_types_supported: ['token'],
        subject_types_supported: ['public']
      })
    }
    if (req.url === '/jwks.json') return send(200, { keys: [publicJwk] })
    send(404, { error: 'not found' })
  })
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(port, host, resolve))
  issuer = `https://${host}:${(server.address() as AddressInfo).port}`
  await writeFile(paths.issuerInfo, JSON.stringify({ issuer }, null, 2) + '\n')
  return {
    url: issuer,
    close: async () => new Promise(resolve => { server.closeAllConnections(); server.close(() => resolve()) })
  }
}
