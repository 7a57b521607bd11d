import { Type, type Static, type TObject, type TOptional, type TSchema } from '@sinclair/typebox'
import type { ConfigProblem } from '../errors.js'
import { FilePath, FilePathOf, StringEnum } from './schema-common.js'

/*
 * Credentials the gateway attaches for a function (pipeline/forward/credentials/), their settings and
 * the rules about them the schema cannot state. One entry per kind, under its key in
 * upstreams[].credentials; a new kind is an entry here plus its file in credentials/. Which ones a
 * route sends is the route's choice (routes[].credentials); by default, all of its upstream's.
 */

interface KindRule<S extends TSchema> {
  /** Its name in routes[].credentials (and the metrics' kind label). */
  name: string
  schema: S
  /**
   * Whether it sends the Authorization header: always, only where the client's own is not forwarded
   * (it has another header for that case), or never. Two that send it cannot share an upstream.
   */
  authorization: 'always' | 'unless-forwarded' | 'never'
  /** Problems with its settings the schema cannot see; `at` is the JSON pointer of its settings. */
  check?: (settings: Static<S>, at: string, env: NodeJS.ProcessEnv) => ConfigProblem[]
}

const kind = <S extends TSchema>(rule: KindRule<S>): KindRule<S> => rule

/** Every kind, under its key in upstreams[].credentials, in the order they are attached. */
export const CREDENTIAL_KINDS = {
  assertion: kind({
    name: 'assertion',
    authorization: 'never',
    schema: Type.Object({
      audience: Type.Optional(Type.String({ minLength: 1, description: 'aud of the assertion; the upstream URL when absent' })),
      bindBody: Type.Boolean({ default: false, description: 'buffer request bodies (up to the route cap) and put their SHA-256 in the assertion' })
    }, { additionalProperties: false })
  }),
  awsSigV4: kind({
    name: 'aws-sigv4',
    authorization: 'always',
    schema: Type.Object({
      region: Type.String({ pattern: '^[a-z]{2}(-[a-z]+)+-\\d+$', description: 'AWS region, e.g. eu-west-1' }),
      service: Type.String({ default: 'lambda', minLength: 1 })
    }, { additionalProperties: false, description: 'SigV4 for Lambda function URLs with AWS_IAM auth; credentials from the standard provider chain' })
  }),
  googleIdToken: kind({
    name: 'google-id-token',
    authorization: 'unless-forwarded',
    schema: Type.Object({
      audience: Type.Optional(Type.String({ minLength: 1, description: 'aud of the ID token; the upstream URL when absent' }))
    }, { additionalProperties: false, description: 'Google-signed ID token (Cloud Run / Functions) from the metadata server or workload identity federation' })
  }),
  azureFunctionKey: kind({
    name: 'azure-function-key',
    authorization: 'never',
    schema: Type.Union([
      Type.Object({ file: FilePath }, { additionalProperties: false }),
      Type.Object({ env: Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }) }, { additionalProperties: false })
    ], { description: 'Azure Functions key sent as x-functions-key: from a secret file or an environment variable' }),
    check: (key, at, env) => 'env' in key && (env[key.env] ?? '') === ''
      ? [{ path: `${at}/env`, message: `environment variable ${key.env} is not set` }]
      : []
  }),
  azureManagedIdentity: kind({
    name: 'azure-managed-identity',
    authorization: 'always',
    schema: Type.Object({
      scope: Type.String({ minLength: 1, description: 'scope of the token, e.g. api://<app id>/.default' }),
      clientId: Type.Optional(Type.String({ minLength: 1, description: 'a user-assigned identity; the system-assigned one when absent' }))
    }, { additionalProperties: false, description: 'Microsoft Entra token of the gateway\'s managed identity (App Service authentication), from @azure/identity' })
  })
}

type Kinds = typeof CREDENTIAL_KINDS
export type CredentialKey = keyof Kinds
export type CredentialKindName = Kinds[CredentialKey]['name']
const KEYS = Object.keys(CREDENTIAL_KINDS) as CredentialKey[]

export const CredentialKind = StringEnum(KEYS.map(k => CREDENTIAL_KINDS[k].name) as CredentialKindName[])

export const UpstreamCredentials: TObject<{ [K in CredentialKey]: TOptional<Kinds[K]['schema']> }> = Type.Object(
  Object.fromEntries(KEYS.map(k => [k, Type.Optional(CREDENTIAL_KINDS[k].schema)])) as { [K in CredentialKey]: TOptional<Kinds[K]['schema']> },
  { additionalProperties: false, default: {} })

export type UpstreamCredentialsConfig = Static<typeof UpstreamCredentials>

export const Assertion = Type.Object({
  issuer: Type.String({ minLength: 1, default: 'portcullis', description: 'iss of the assertions this gateway signs' }),
  algorithm: StringEnum(['ES256', 'EdDSA'], { default: 'ES256' }),
  header: Type.String({ pattern: '^[a-z0-9-]+$', default: 'x-portcullis-assertion', description: 'lower-case header name' }),
  ttlSeconds: Type.Integer({ minimum: 1, maximum: 300, default: 60 }),
  claims: Type.Array(Type.String({ minLength: 1 }), { default: [], uniqueItems: true, description: 'claims of the caller\'s token copied into the assertion (under "claims")' }),
  keysFile: Type.Optional(FilePathOf('written', { description: 'where the private signing keys are kept (created, mode 0600); generated in memory when absent' })),
  jwksFile: Type.Optional(FilePathOf('written', { description: 'where the public JWKS is written on every change' })),
  rotateAfterSeconds: Type.Integer({ minimum: 60, default: 86_400, description: 'age at which a new signing key is made' }),
  publishAheadSeconds: Type.Integer({ minimum: 0, default: 300, description: 'a new key is in the JWKS this long before it signs' })
}, { additionalProperties: false, default: {} })

// Headers with a meaning of their own, which the assertion must not take over.
const RESERVED_HEADERS = ['host', 'authorization', 'content-length', 'content-type', 'transfer-encoding', 'connection',
  'forwarded', 'x-functions-key', 'x-serverless-authorization']

interface CredentialsSections {
  upstreams?: unknown
  routes?: unknown
  assertion?: { header?: unknown } | undefined
}

type UpstreamShape = { id?: string, credentials?: Record<string, unknown> } | null | undefined
type RouteShape = { upstream?: string, credentials?: string[], forwardAuthorization?: boolean } | null | undefined

/**
 * Which credentials a route may attach: only those its upstream configures, and never two that both
 * need the Authorization header (with the client's own, or SigV4 with a Google ID token). Reads a
 * config that may have failed the schema: only what has the right shape.
 */
export function checkCredentials (config: CredentialsSections, env: NodeJS.ProcessEnv): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const upstreams = new Map((Array.isArray(config.upstreams) ? config.upstreams as UpstreamShape[] : []).map((u, i) => [u?.id, { u, i }]))
  for (const { u, i } of upstreams.values()) {
    const c = u?.credentials
    const bearers = KEYS.filter(k => CREDENTIAL_KINDS[k].authorization !== 'never' && c?.[k] !== undefined)
    if (bearers.length > 1) {
      problems.push({ path: `/upstreams/${i}/credentials`, message: `${bearers.join(' and ')} all need the Authorization header; choose one` })
    }
    for (const k of KEYS) {
      const settings = c?.[k]
      const check = CREDENTIAL_KINDS[k].check as KindRule<TSchema>['check']
      if (settings !== undefined && check !== undefined) problems.push(...check(settings, `/upstreams/${i}/credentials/${k}`, env))
    }
  }
  const header = config.assertion?.header
  if (typeof header === 'string' && (RESERVED_HEADERS.includes(header) || /^(x-forwarded-|x-amz-)/.test(header))) {
    problems.push({ path: '/assertion/header', message: `"${header}" is a header with its own meaning; choose another name` })
  }
  const byName = new Map(KEYS.map(k => [CREDENTIAL_KINDS[k].name as string, k]))
  ;(Array.isArray(config.routes) ? config.routes as RouteShape[] : []).forEach((route, i) => {
    const upstream = upstreams.get(route?.upstream)?.u
    if (upstream == null || route == null) return
    const kinds = route.credentials ?? KEYS.filter(k => upstream.credentials?.[k] !== undefined).map(k => CREDENTIAL_KINDS[k].name)
    kinds.forEach((name, j) => {
      const key = byName.get(name)
      if (key !== undefined && upstream.credentials?.[key] === undefined) {
        problems.push({ path: `/routes/${i}/credentials/${j}`, message: `upstream "${upstream.id ?? ''}" has no ${key} credentials configured` })
      }
    })
    for (const k of KEYS) {
      const { name, authorization } = CREDENTIAL_KINDS[k]
      if (route.forwardAuthorization === true && authorization === 'always' && kinds.includes(name)) {
        problems.push({ path: `/routes/${i}/forwardAuthorization`, message: `cannot be combined with ${name}, which uses the Authorization header` })
      }
    }
  })
  return problems
}
