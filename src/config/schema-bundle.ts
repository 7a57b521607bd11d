import { Type } from '@sinclair/typebox'
import { FilePath, FilePathOf, HttpUrl } from './schema-common.js'

/*
 * Where policy bundles come from (schema.ts, `policy`): the bundle server both the active policy and
 * the shadow policy may use, and the shadow policy (pipeline/authorize/shadow.ts).
 */

export const BundleServer = Type.Object({
  url: HttpUrl,
  pollIntervalSeconds: Type.Integer({ minimum: 1, maximum: 3600, default: 30, description: 'how often to ask for a new bundle (If-None-Match with the last ETag)' }),
  timeoutMs: Type.Integer({ minimum: 100, maximum: 60_000, default: 10_000 }),
  bearerToken: Type.Optional(Type.String({ minLength: 1, description: 'sent as Authorization: Bearer (use ${ENV})' })),
  tls: Type.Optional(Type.Object({
    ca: Type.Optional(FilePath),
    cert: Type.Optional(FilePath),
    key: Type.Optional(FilePath),
    servername: Type.Optional(Type.String({ minLength: 1, description: 'SNI and the name the server certificate must match; the URL host when absent' }))
  }, { additionalProperties: false, description: 'CA to trust for the server, and a client certificate for mTLS to it' })),
  plaintext: Type.Boolean({ default: false, description: 'allow an http:// URL (local development only)' })
}, { additionalProperties: false, description: 'an OPA-compatible bundle server, polled' })

export const PolicyShadow = Type.Object({
  bundle: Type.Optional(FilePathOf('watched', { description: 'the shadow bundle file (.tar.gz) or folder, watched for changes; or use server' })),
  server: Type.Optional(BundleServer),
  sample: Type.Number({
    minimum: 0,
    maximum: 1,
    default: 1,
    description: 'share of decided requests the shadow also judges (1: every one, 0.1: one in ten, chosen at random)'
  }),
  maxQueued: Type.Integer({
    minimum: 1,
    maximum: 100_000,
    default: 1024,
    description: 'requests waiting for the shadow at most; beyond it they are dropped and counted (portcullis_policy_shadow_evaluations_total{outcome="dropped"})'
  })
}, {
  additionalProperties: false,
  description: 'a second bundle that judges live traffic after each answer is decided, off the request path, and never changes an answer; ' +
    'differences are counted, logged and shown on /status (docs/policy-change.md). Verified like the active bundle (policy.verification, maxBundleBytes) and evaluated under the same timeout'
})
