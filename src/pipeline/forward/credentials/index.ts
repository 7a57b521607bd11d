import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import type { Readable } from 'node:stream'
import type { Config, CredentialKindName } from '../../../config/schema.js'
import { GW_ERR_GUARD_BAD_REQUEST, GW_ERR_GUARD_BODY_TOO_LARGE, GW_ERR_UPSTREAM_CREDENTIALS } from '../../../errors.js'
import type { Metrics } from '../../../observability/metrics.js'
import type { Principal } from '../../types.js'
import { createAssertionMinter, type AssertionMinter } from './assertion.js'
import { createAwsSigner, type AwsSigner, type AwsSignerOptions } from './aws-sigv4.js'
import { createGoogleIdTokens, type GoogleIdTokens } from './google-id-token.js'
import { createAzureManagedIdentityTokens, type AzureTokens } from './azure-managed-identity.js'
import type { KeyRing } from './signing-keys.js'

/*
 * Per-request credentials for the function, decided per route at start: the gateway's signed
 * assertion, SigV4, a Google ID token, an Azure function key or managed identity token. Whatever a client sent under those
 * headers is removed first, and the client's own Authorization reaches the function only on a route
 * that opts in (forwardAuthorization).
 */

// Headers that carry a credential to a serverless platform; a client never gets to set them.
const PLATFORM_CREDENTIAL_HEADERS = ['x-functions-key', 'x-serverless-authorization']

interface RoutePlan {
  upstreamId: string
  audience: string
  assertion: { audience: string, bindBody: boolean } | null
  aws: AwsSigner | null
  google: GoogleIdTokens | null
  /** Cloud Run also reads X-Serverless-Authorization, which leaves Authorization to the client's token. */
  googleHeader: 'authorization' | 'x-serverless-authorization'
  azureKey: string | null
  azureToken: AzureTokens | null
  forwardAuthorization: boolean
  /** The body must be read whole before sending: it is hashed into a signature. */
  buffer: boolean
}

export interface AttachInput {
  routeId: string
  method: string
  /** The upstream's Host value. */
  host: string
  /** The request target as the function will receive it (path and query). */
  path: string
  principal: Principal
  requestId: string
  /** The client's Authorization header, if any (already removed from `headers`). */
  clientAuthorization: string | undefined
  /** The headers about to be sent; credentials are added here. */
  headers: Record<string, string | string[]>
  body: Readable | Buffer | null
  log: { warn: (obj: object, msg: string) => void }
}

export interface Credentials {
  /** Adds the route's credentials to `headers`; returns the body to send (buffered where it was signed). */
  attach: (input: AttachInput) => Promise<Readable | Buffer | null>
}

export interface CredentialsOptions {
  config: Pick<Config, 'routes' | 'upstreams' | 'assertion'>
  keys: KeyRing
  metrics: Metrics
  env?: NodeJS.ProcessEnv
  /** Test seams: the AWS credential provider, Google's auth object, an Azure token credential. */
  awsCredentials?: AwsSignerOptions['credentials']
  googleAuth?: Parameters<typeof createGoogleIdTokens>[1]
  azureCredential?: Parameters<typeof createAzureManagedIdentityTokens>[1]
}

async function readWhole (body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = []
  try {
    for await (const chunk of body) chunks.push(chunk as Buffer)
  } catch (err) {
    if (err instanceof GW_ERR_GUARD_BODY_TOO_LARGE) throw err
    throw new GW_ERR_GUARD_BAD_REQUEST() // the client broke off its body
  }
  return Buffer.concat(chunks)
}

export async function createCredentials (opts: CredentialsOptions): Promise<Credentials> {
  const { config, metrics } = opts
  const mint: AssertionMinter = createAssertionMinter(config.assertion, opts.keys)
  const plans = new Map<string, RoutePlan>()
  // One signer, token source and key per upstream, shared by its routes.
  const perUpstream = new Map<string, { aws: AwsSigner | null, google: GoogleIdTokens | null, azureKey: string | null, azureToken: AzureTokens | null }>()
  for (const u of config.upstreams) {
    const c = u.credentials
    const key = c.azureFunctionKey
    perUpstream.set(u.id, {
      aws: c.awsSigV4 === undefined ? null : createAwsSigner({ ...c.awsSigV4, ...(opts.awsCredentials !== undefined ? { credentials: opts.awsCredentials } : {}) }),
      google: c.googleIdToken === undefined ? null : createGoogleIdTokens(c.googleIdToken.audience ?? u.url.replace(/\/$/, ''), opts.googleAuth),
      azureKey: key === undefined ? null : 'file' in key ? (await readFile(key.file, 'utf8')).trim() : (opts.env ?? process.env)[key.env] ?? null,
      azureToken: c.azureManagedIdentity === undefined ? null : createAzureManagedIdentityTokens(c.azureManagedIdentity, opts.azureCredential)
    })
  }
  for (const route of config.routes) {
    const u = config.upstreams.find(x => x.id === route.upstream)!
    const shared = perUpstream.get(u.id)!
    const wants = (kind: CredentialKindName): boolean => route.credentials === undefined || route.credentials.includes(kind)
    const assertion = u.credentials.assertion !== undefined && wants('assertion')
      ? { audience: u.credentials.assertion.audience ?? u.url.replace(/\/$/, ''), bindBody: u.credentials.assertion.bindBody }
      : null
    const aws = wants('aws-sigv4') ? shared.aws : null
    plans.set(route.id, {
      upstreamId: u.id,
      audience: u.url,
      assertion,
      aws,
      google: wants('google-id-token') ? shared.google : null,
      googleHeader: route.forwardAuthorization ? 'x-serverless-authorization' : 'authorization',
      azureKey: wants('azure-function-key') ? shared.azureKey : null,
      azureToken: wants('azure-managed-identity') ? shared.azureToken : null,
      forwardAuthorization: route.forwardAuthorization,
      buffer: aws !== null || (assertion?.bindBody ?? false)
    })
  }
  const assertionHeader = config.assertion.header

  const failed = (input: AttachInput, upstream: string, kind: string, err: unknown): Error => {
    metrics.credentialFailures.inc({ upstream, kind })
    input.log.warn({ upstream, kind, err: (err as Error).message }, 'upstream credentials failed')
    return Object.assign(new GW_ERR_UPSTREAM_CREDENTIALS(), { cause: err })
  }

  return {
    async attach (input) {
      const plan = plans.get(input.routeId)
      if (plan === undefined) throw new GW_ERR_UPSTREAM_CREDENTIALS()
      const h = input.headers
      for (const name of Object.keys(h)) {
        const dashed = name.replace(/[_.]/g, '-')
        if (dashed === assertionHeader || PLATFORM_CREDENTIAL_HEADERS.includes(dashed) || (plan.aws !== null && dashed.startsWith('x-amz-'))) delete h[name]
      }
      if (plan.forwardAuthorization && input.clientAuthorization !== undefined) h.authorization = input.clientAuthorization

      const body = plan.buffer && input.body !== null && !Buffer.isBuffer(input.body) ? await readWhole(input.body) : input.body
      if (plan.assertion !== null) {
        try {
          h[assertionHeader] = await mint({
            principal: input.principal,
            audience: plan.assertion.audience,
            method: input.method,
            path: input.path,
            requestId: input.requestId,
            ...(Buffer.isBuffer(body) || (plan.assertion.bindBody && body === null)
              ? { bodySha256: createHash('sha256').update(body ?? Buffer.alloc(0)).digest('base64url') }
              : {})
          })
        } catch (err) { throw failed(input, plan.upstreamId, 'assertion', err) }
      }
      if (plan.aws !== null) {
        try {
          Object.assign(h, await plan.aws({ method: input.method, host: input.host, target: input.path, body: (body as Buffer | null) ?? Buffer.alloc(0) }))
        } catch (err) { throw failed(input, plan.upstreamId, 'aws-sigv4', err) }
      }
      if (plan.google !== null) {
        try {
          h[plan.googleHeader] = await plan.google()
        } catch (err) { throw failed(input, plan.upstreamId, 'google-id-token', err) }
      }
      if (plan.azureKey !== null) h['x-functions-key'] = plan.azureKey
      if (plan.azureToken !== null) {
        try {
          h.authorization = await plan.azureToken()
        } catch (err) { throw failed(input, plan.upstreamId, 'azure-managed-identity', err) }
      }
      return body
    }
  }
}
