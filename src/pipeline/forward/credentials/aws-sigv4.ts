import { createHash } from 'node:crypto'
import { createRequire } from 'node:module'
import type { fromNodeProviderChain } from '@aws-sdk/credential-providers'
import type * as SmithyHash from '@smithy/hash-node'
import type * as SmithySigner from '@smithy/signature-v4'
import { credentialKind } from './kind.js'

// The AWS SDK's signer and credential chain (~15 MiB of RSS) are loaded only by a gateway that signs.
const load = createRequire(import.meta.url)

/*
 * SigV4 for Lambda function URLs with AWS_IAM auth, with AWS's own signer and the standard credential
 * provider chain (environment, web identity, ECS, instance metadata). The chain is memoized by the
 * SDK: credentials are cached and refreshed five minutes before they expire.
 */

export interface AwsSignRequest {
  method: string
  /** The upstream's host (with port, if any), as sent in Host. */
  host: string
  /** The request target as sent: path and raw query. */
  target: string
  body: Buffer
}

export type AwsSigner = (req: AwsSignRequest) => Promise<Record<string, string>>

export interface AwsSignerOptions {
  region: string
  service: string
  /** The standard chain when absent. */
  credentials?: ReturnType<typeof fromNodeProviderChain>
}

/** Parses a raw query into the decoded multimap the signer canonicalises (it re-encodes each part). */
function queryOf (raw: string): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  if (raw === '') return out
  for (const pair of raw.split('&')) {
    if (pair === '') continue
    const i = pair.indexOf('=')
    const name = decodeURIComponent(i === -1 ? pair : pair.slice(0, i))
    const value = i === -1 ? '' : decodeURIComponent(pair.slice(i + 1))
    const prev = out[name]
    out[name] = prev === undefined ? value : [...(Array.isArray(prev) ? prev : [prev]), value]
  }
  return out
}

/**
 * Returns the headers that authenticate one request: Authorization, X-Amz-Date, X-Amz-Content-Sha256
 * (the body is always hashed: function URLs refuse unsigned payloads) and, for temporary
 * credentials, X-Amz-Security-Token. Only Host and the x-amz-* headers are signed, so the other
 * headers the gateway sends can be rebuilt without breaking the signature.
 */
export function createAwsSigner (opts: AwsSignerOptions): AwsSigner {
  const { SignatureV4 } = load('@smithy/signature-v4') as typeof SmithySigner
  const { Hash } = load('@smithy/hash-node') as typeof SmithyHash
  const signer = new SignatureV4({
    service: opts.service,
    region: opts.region,
    sha256: Hash.bind(null, 'sha256'),
    credentials: opts.credentials ?? providerChain(),
    uriEscapePath: true
  })
  return async ({ method, host, target, body }) => {
    const q = target.indexOf('?')
    const [hostname = host, port] = host.startsWith('[') ? [host] : host.split(':')
    const signed = await signer.sign({
      method,
      protocol: 'https:',
      hostname,
      ...(port !== undefined ? { port: Number(port) } : {}),
      path: q === -1 ? target : target.slice(0, q),
      query: q === -1 ? {} : queryOf(target.slice(q + 1)),
      headers: { host, 'x-amz-content-sha256': createHash('sha256').update(body).digest('hex') },
      body
    })
    const out: Record<string, string> = {}
    for (const [name, value] of Object.entries(signed.headers)) if (name.toLowerCase() !== 'host') out[name.toLowerCase()] = String(value)
    return out
  }
}

/** What to do when the gateway has no AWS identity; in the readiness check and the 502's log line. */
export const AWS_SIGV4_FIX = 'give the gateway an AWS identity allowed lambda:InvokeFunctionUrl: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, web identity (EKS), the ECS task role or an instance profile (docs/functions/aws-lambda.md)'

/**
 * Readiness: whether the standard chain finds credentials (a fresh chain, so the signer's own cache
 * and its metrics are untouched). Null, or what is missing and how to provide it.
 */
export async function awsSigV4Problem (): Promise<string | null> {
  try {
    await providerChain()()
    return null
  } catch (err) {
    return `no AWS credentials (${(err as Error).message.split('\n')[0]}); ${AWS_SIGV4_FIX}`
  }
}

/** The SDK's standard credential chain (environment, web identity, ECS, instance metadata). */
function providerChain (): ReturnType<typeof fromNodeProviderChain> {
  return (load('@aws-sdk/credential-providers') as { fromNodeProviderChain: typeof fromNodeProviderChain }).fromNodeProviderChain()
}

/** SigV4 over Host and the x-amz-* headers, with the body's hash: the body is read whole. */
export const awsSigV4Kind = credentialKind({
  key: 'awsSigV4',
  headerPrefix: 'x-amz-',
  needsBody: () => true,
  create: (settings, ctx) => {
    const sign = createAwsSigner({ ...settings, ...(ctx.awsCredentials !== undefined ? { credentials: ctx.awsCredentials as AwsSignerOptions['credentials'] } : {}) })
    return {
      attach: async (input, body) => {
        Object.assign(input.headers, await sign({ method: input.method, host: input.host, target: input.path, body: Buffer.isBuffer(body) ? body : Buffer.alloc(0) }))
      }
    }
  }
})
