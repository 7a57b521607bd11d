import type { Readable } from 'node:stream'
import type { Config } from '../../../config/schema.js'
import { CREDENTIAL_KINDS } from '../../../config/schema-credentials.js'
import { GW_ERR_GUARD_BAD_REQUEST, GW_ERR_GUARD_BODY_TOO_LARGE, GW_ERR_UPSTREAM_CREDENTIALS } from '../../../errors.js'
import type { Metrics } from '../../../observability/metrics.js'
import { assertionKind } from './assertion.js'
import { awsSigV4Kind, type AwsSignerOptions } from './aws-sigv4.js'
import { azureFunctionKeyKind } from './azure-function-key.js'
import { azureManagedIdentityKind, createAzureManagedIdentityTokens } from './azure-managed-identity.js'
import { createGoogleIdTokens, googleIdTokenKind } from './google-id-token.js'
import type { Attach, Attacher, AttachInput, CredentialKind, RouteFacts } from './kind.js'
import type { KeyRing } from './signing-keys.js'
import { AWS_SIGV4_FIX } from './aws-sigv4.js'
import { GOOGLE_ID_TOKEN_FIX } from './google-id-token.js'
import { AZURE_MANAGED_IDENTITY_FIX } from './azure-managed-identity.js'

// The 502's log line says how to make the failing kind work (the readiness check says the same, availability.ts).
const FIXES: Record<string, string> = { 'aws-sigv4': AWS_SIGV4_FIX, 'google-id-token': GOOGLE_ID_TOKEN_FIX, 'azure-managed-identity': AZURE_MANAGED_IDENTITY_FIX }

/*
 * Per-request credentials for the function, decided per route at start from the registry of kinds
 * below (each kind's file says what it owns, whether it reads the body, how it attaches). Whatever a
 * client sent under their headers is removed first, and the client's own Authorization reaches the
 * function only on a route that opts in (forwardAuthorization). A new kind: its settings in
 * config/schema-credentials.ts, its file here, and its line in KINDS.
 */

/** Every kind, in the order they attach (the order of config/schema-credentials.ts). */
const KINDS: readonly CredentialKind[] = [assertionKind, awsSigV4Kind, googleIdTokenKind, azureFunctionKeyKind, azureManagedIdentityKind] as CredentialKind[]

interface RoutePlan {
  upstreamId: string
  kinds: ReadonlyArray<{ name: string, attach: Attach }>
  route: RouteFacts
  /** Families of client headers removed because a kind attached here signs them. */
  prefixes: readonly string[]
  /** The body must be read whole before sending: it is hashed into a signature. */
  buffer: boolean
}

export type { AttachInput } from './kind.js'

export interface Credentials {
  /**
   * Adds the route's credentials to `headers`; returns the body to send (buffered where it was
   * signed). A promise only where a kind or the body makes it wait: a route whose credentials are at
   * hand (none, a key from a file) is done before this returns, and a failure then is thrown.
   */
  attach: (input: AttachInput) => Readable | Buffer | null | Promise<Readable | Buffer | null>
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

// A header name as a server that maps "_" and "." onto "-" reads it.
const ALIAS_CHAR = /[_.]/
const ALIAS_CHARS = /[_.]/g

function startsWithAny (name: string, prefixes: readonly string[]): boolean {
  for (let i = 0; i < prefixes.length; i++) if (name.startsWith(prefixes[i]!)) return true
  return false
}

const nameOf = (kind: CredentialKind): string => CREDENTIAL_KINDS[kind.key].name

export async function createCredentials (opts: CredentialsOptions): Promise<Credentials> {
  const { config, metrics } = opts
  const env = opts.env ?? process.env
  // One attacher per kind and upstream, shared by its routes.
  const perUpstream = new Map<string, Array<{ kind: CredentialKind, attacher: Attacher }>>()
  for (const u of config.upstreams) {
    const made: Array<{ kind: CredentialKind, attacher: Attacher }> = []
    for (const kind of KINDS) {
      const settings = u.credentials[kind.key]
      if (settings === undefined) continue
      made.push({ kind, attacher: await kind.create(settings as never, { ...opts, upstream: u, env }) })
    }
    perUpstream.set(u.id, made)
  }
  const plans = new Map<string, RoutePlan>()
  for (const route of config.routes) {
    const u = config.upstreams.find(x => x.id === route.upstream)!
    const wanted = perUpstream.get(u.id)!.filter(({ kind }) => route.credentials === undefined || route.credentials.includes(nameOf(kind) as never))
    plans.set(route.id, {
      upstreamId: u.id,
      kinds: wanted.map(({ kind, attacher }) => ({ name: nameOf(kind), attach: attacher.attach })),
      route: { forwardAuthorization: route.forwardAuthorization },
      prefixes: wanted.flatMap(({ kind }) => kind.headerPrefix ?? []),
      buffer: wanted.some(({ kind }) => kind.needsBody(u.credentials[kind.key] as never))
    })
  }
  // Headers only the gateway sets, whichever kinds are configured: a client never gets to send them.
  const owned = new Set(KINDS.flatMap(kind => kind.headers?.(config) ?? []))

  const failed = (input: AttachInput, upstream: string, kind: string, err: unknown): Error => {
    metrics.credentialFailures.inc({ upstream, kind })
    input.log.warn({ upstream, kind, err: (err as Error).message, fix: FIXES[kind] }, 'upstream credentials failed')
    return Object.assign(new GW_ERR_UPSTREAM_CREDENTIALS(), { cause: err })
  }

  // From the kind at index `from` on; continues after the first one that waits (plain calls otherwise).
  const attachKinds = (input: AttachInput, plan: RoutePlan, body: Readable | Buffer | null, from: number): Readable | Buffer | null | Promise<Readable | Buffer | null> => {
    // Indexed loops here and in startsWithAny: no iterator or closure per request.
    for (let i = from; i < plan.kinds.length; i++) {
      const kind = plan.kinds[i]!
      let pending: Promise<void> | void
      try {
        pending = kind.attach(input, body, plan.route)
      } catch (err) { throw failed(input, plan.upstreamId, kind.name, err) }
      if (pending !== undefined) {
        return pending.then(async () => attachKinds(input, plan, body, i + 1), (err: unknown) => { throw failed(input, plan.upstreamId, kind.name, err) })
      }
    }
    return body
  }

  return {
    attach (input) {
      const plan = plans.get(input.routeId)
      if (plan === undefined) throw new GW_ERR_UPSTREAM_CREDENTIALS()
      const h = input.headers
      for (const name of Object.keys(h)) {
        // Tested first: replace() with a global pattern costs several times more even where nothing matches.
        const dashed = ALIAS_CHAR.test(name) ? name.replace(ALIAS_CHARS, '-') : name
        if (owned.has(dashed) || startsWithAny(dashed, plan.prefixes)) delete h[name]
      }
      if (plan.route.forwardAuthorization && input.clientAuthorization !== undefined) h.authorization = input.clientAuthorization

      if (plan.buffer && input.body !== null && !Buffer.isBuffer(input.body)) {
        return readWhole(input.body).then(async body => attachKinds(input, plan, body, 0))
      }
      return attachKinds(input, plan, input.body, 0)
    }
  }
}
