import { createPublicKey } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { Config } from '../../config/schema.js'
import type { BundleVerification } from './bundle-signature.js'
import { createFileSource, createServerSource, type BundleSource } from './bundle-source.js'
import type { ParseOptions } from './bundle.js'

/**
 * The bundle source and the checks every bundle must pass, from the validated `policy` config. `from`
 * names the source: the active policy's, or the shadow's (policy.shadow), which passes the same checks.
 */
export async function bundleSettings (policy: Config['policy'], from: Pick<Config['policy'], 'bundle' | 'server'> = policy): Promise<{ source: BundleSource, parse: ParseOptions, intervalMs?: number }> {
  const parse: ParseOptions = { maxBytes: policy.maxBundleBytes }
  if (policy.verification !== undefined) parse.verification = verificationFrom(policy.verification)
  const server = from.server
  if (server === undefined) return { source: await createFileSource(from.bundle!, policy.maxBundleBytes), parse }
  const tls = server.tls
  return {
    source: createServerSource({
      url: server.url,
      timeoutMs: server.timeoutMs,
      maxBytes: policy.maxBundleBytes,
      ...(server.bearerToken !== undefined ? { bearerToken: server.bearerToken } : {}),
      ...(tls !== undefined
        ? {
            tls: {
              ...(tls.ca !== undefined ? { ca: readFileSync(tls.ca) } : {}),
              ...(tls.cert !== undefined ? { cert: readFileSync(tls.cert) } : {}),
              ...(tls.key !== undefined ? { key: readFileSync(tls.key) } : {}),
              ...(tls.servername !== undefined ? { servername: tls.servername } : {})
            }
          }
        : {})
    }),
    parse,
    intervalMs: server.pollIntervalSeconds * 1000
  }
}

function verificationFrom (v: NonNullable<Config['policy']['verification']>): BundleVerification {
  const keys = new Map(Object.entries(v.keys).map(([id, k]) => [id, {
    algorithm: k.algorithm,
    key: createPublicKey(readFileSync(k.key)),
    ...(k.scope !== undefined ? { scope: k.scope } : {})
  }]))
  return { keys, ...(v.keyId !== undefined ? { keyId: v.keyId } : {}), ...(v.scope !== undefined ? { scope: v.scope } : {}) }
}
