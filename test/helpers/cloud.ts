import { createHash, createHmac, generateKeyPairSync } from 'node:crypto'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { SignJWT } from 'jose'
import type { Test } from 'tap'
import { headerFields, requestLine, type UpstreamRequest } from './recording-upstream.js'

/*
 * Stand-ins for what cannot run here, each behaving as its documentation says: Google's metadata
 * server, and an AWS SigV4 check written from the SigV4 documentation with node:crypto alone (not
 * with the signer the gateway uses), recomputing the signature from the bytes the function received.
 */

export interface MetadataServer {
  /** host:port, the value of GCE_METADATA_HOST. */
  host: string
  /** Audiences of the identity tokens handed out, in order. */
  issued: string[]
  /** Makes the identity endpoint fail with this status (0: answer normally). */
  failWith: number
}

/**
 * Google's metadata server as documented: every request must carry `Metadata-Flavor: Google` and
 * every answer carries it back; `instance/service-accounts/default/identity?audience=...&format=full`
 * returns a signed ID token for that audience.
 */
export async function startMetadataServer (t: Test): Promise<MetadataServer> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const state: MetadataServer = { host: '', issued: [], failWith: 0 }
  const server = createServer((req, res) => {
    res.setHeader('Metadata-Flavor', 'Google')
    if (req.headers['metadata-flavor'] !== 'Google') { res.writeHead(403).end('Missing Metadata-Flavor:Google header'); return }
    const url = new URL(req.url ?? '/', 'http://metadata')
    if (url.pathname === '/computeMetadata/v1/instance' || url.pathname === '/computeMetadata/v1/instance/') {
      res.writeHead(200, { 'content-type': 'application/text' }).end('attributes/\nid\nservice-accounts/\n')
      return
    }
    if (url.pathname === '/computeMetadata/v1/instance/service-accounts/default/identity') {
      const audience = url.searchParams.get('audience')
      if (state.failWith !== 0) { res.writeHead(state.failWith).end('unavailable'); return }
      if (audience === null || url.searchParams.get('format') !== 'full') { res.writeHead(400).end('audience required'); return }
      state.issued.push(audience)
      new SignJWT({ email: 'gateway@project.iam.gserviceaccount.com', email_verified: true })
        .setProtectedHeader({ alg: 'ES256', kid: 'metadata-test' })
        .setIssuer('https://accounts.google.com')
        .setAudience(audience)
        .setSubject('107517467455664443765')
        .setIssuedAt()
        .setExpirationTime('1h')
        .sign(privateKey)
        .then(token => res.writeHead(200, { 'content-type': 'application/text' }).end(token), () => res.writeHead(500).end())
      return
    }
    res.writeHead(404).end('not found')
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  state.host = `127.0.0.1:${(server.address() as AddressInfo).port}`
  t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  return state
}

// RFC 3986 unreserved characters stay; everything else is %XX, upper-case hex (the SigV4 rule).
function awsEncode (s: string): string {
  let out = ''
  for (const byte of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(byte)
    out += /[A-Za-z0-9\-._~]/.test(c) ? c : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

export interface SigV4Check { ok: boolean, problems: string[], accessKeyId: string, scope: string }

/**
 * Recomputes the SigV4 signature of a received request with the secret key and compares it with the
 * one in its Authorization header. Follows AWS's "Create a signed AWS API request" steps: canonical
 * request (URI encoded twice for non-S3 services, sorted query, signed headers, payload hash), string
 * to sign, derived key.
 */
export function checkSigV4 (request: UpstreamRequest, secretAccessKey: string): SigV4Check {
  const problems: string[] = []
  const { method, target } = requestLine(request.head)
  const fields = headerFields(request.head)
  const header = (name: string): string | undefined => fields.find(([n]) => n === name)?.[1]
  const auth = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/([^,]+), SignedHeaders=([^,]+), Signature=([0-9a-f]{64})$/.exec(header('authorization') ?? '')
  if (auth === null) return { ok: false, problems: ['no SigV4 Authorization header'], accessKeyId: '', scope: '' }
  const [, accessKeyId = '', scope = '', signedHeaders = '', signature = ''] = auth
  const amzDate = header('x-amz-date') ?? ''
  const bodyHash = createHash('sha256').update(request.body).digest('hex')
  if (header('x-amz-content-sha256') !== bodyHash) problems.push('x-amz-content-sha256 is not the hash of the body received')

  const [path = '', rawQuery = ''] = target.split('?', 2)
  const canonicalUri = path.split('/').map(segment => awsEncode(segment)).join('/')
  const canonicalQuery = rawQuery === ''
    ? ''
    : rawQuery.split('&').filter(p => p !== '').map(p => {
      const [k = '', v = ''] = p.split('=', 2)
      return [awsEncode(decodeURIComponent(k)), awsEncode(decodeURIComponent(v))] as const
    }).sort((a, b) => a[0] === b[0] ? (a[1] < b[1] ? -1 : 1) : (a[0] < b[0] ? -1 : 1)).map(([k, v]) => `${k}=${v}`).join('&')
  const names = signedHeaders.split(';')
  const canonicalHeaders = names.map(n => `${n}:${fields.filter(([f]) => f === n).map(([, v]) => v.trim().replace(/\s+/g, ' ')).join(',')}\n`).join('')
  const canonicalRequest = [method, canonicalUri, canonicalQuery, canonicalHeaders, signedHeaders, bodyHash].join('\n')
  const stringToSign = ['AWS4-HMAC-SHA256', amzDate, scope, createHash('sha256').update(canonicalRequest).digest('hex')].join('\n')
  const [date = '', region = '', service = '', terminator = ''] = scope.split('/')
  if (terminator !== 'aws4_request') problems.push('scope does not end in aws4_request')
  if (!amzDate.startsWith(date)) problems.push('x-amz-date is not on the scope date')
  let key: Buffer = createHmac('sha256', `AWS4${secretAccessKey}`).update(date).digest()
  for (const part of [region, service, 'aws4_request']) key = createHmac('sha256', key).update(part).digest()
  const expected = createHmac('sha256', key).update(stringToSign).digest('hex')
  if (expected !== signature) problems.push('signature does not match the request received')
  return { ok: problems.length === 0, problems, accessKeyId, scope }
}

export interface IdentityEndpoint {
  /** IDENTITY_ENDPOINT and IDENTITY_HEADER, as App Service sets them. */
  env: { IDENTITY_ENDPOINT: string, IDENTITY_HEADER: string }
  /** Resources tokens were issued for, in order. */
  issued: string[]
}

/**
 * App Service's managed identity endpoint as documented: `GET IDENTITY_ENDPOINT?resource=...&api-version=2019-08-01`
 * with the secret `X-IDENTITY-HEADER`, answering `{access_token, expires_on, resource, token_type}`.
 */
export async function startAppServiceIdentity (t: Test): Promise<IdentityEndpoint> {
  const secret = createHash('sha256').update(String(Math.random())).digest('hex')
  const state: IdentityEndpoint = { env: { IDENTITY_ENDPOINT: '', IDENTITY_HEADER: secret }, issued: [] }
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://identity')
    const resource = url.searchParams.get('resource')
    if (req.headers['x-identity-header'] !== secret) { res.writeHead(401).end(); return }
    if (url.pathname !== '/MSI/token/' || url.searchParams.get('api-version') !== '2019-08-01' || resource === null) {
      res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":"bad_request"}')
      return
    }
    state.issued.push(resource)
    const expiresOn = Math.floor(Date.now() / 1000) + 3600
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
      access_token: `entra-token-${state.issued.length}-for-${resource}`, expires_on: String(expiresOn), resource, token_type: 'Bearer', client_id: 'msi-client'
    }))
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  state.env.IDENTITY_ENDPOINT = `http://127.0.0.1:${(server.address() as AddressInfo).port}/MSI/token/`
  t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  return state
}
