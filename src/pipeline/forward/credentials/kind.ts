import type { Readable } from 'node:stream'
import type { Config, UpstreamConfig } from '../../../config/schema.js'
import type { CredentialKey, UpstreamCredentialsConfig } from '../../../config/schema-credentials.js'
import type { Principal } from '../../types.js'
import type { KeyRing } from './signing-keys.js'

/*
 * What one credential kind is to the forwarder: the headers it owns, whether it reads the body whole,
 * and how it attaches to a request. One file per kind declares it (its settings, their schema and the
 * config rules about them are in config/schema-credentials.ts); index.ts lists the kinds.
 */

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

/** What a kind needs to know of the route it attaches for. */
export interface RouteFacts {
  /** The client's own Authorization goes to the function (routes[].forwardAuthorization). */
  forwardAuthorization: boolean
}

/** Adds the kind's credential to `input.headers`; `body` is the whole body where some kind needed it. */
export type Attach = (input: AttachInput, body: Readable | Buffer | null, route: RouteFacts) => Promise<void> | void

export interface Attacher {
  attach: Attach
}

/** What making a kind's attacher for one upstream may use: the config, the keys, the test seams. */
export interface KindContext {
  upstream: UpstreamConfig
  config: Pick<Config, 'assertion'>
  keys: KeyRing
  env: NodeJS.ProcessEnv
  /** Test seams (credentials/index.ts CredentialsOptions). */
  awsCredentials?: unknown
  googleAuth?: unknown
  azureCredential?: unknown
}

export interface CredentialKind<K extends CredentialKey = CredentialKey> {
  key: K
  /** Header names it sets that no client may send: removed from every request, wherever it is attached or not. */
  headers?: (config: Pick<Config, 'assertion'>) => readonly string[]
  /** A family of headers its signature covers: removed from the client's where it is attached. */
  headerPrefix?: string
  /** Whether it reads the request body whole (to sign or hash it), with these settings. */
  needsBody: (settings: NonNullable<UpstreamCredentialsConfig[K]>) => boolean
  /** Made once per upstream at start. */
  create: (settings: NonNullable<UpstreamCredentialsConfig[K]>, ctx: KindContext) => Attacher | Promise<Attacher>
}

/** Declares a kind (the type ties its settings to its key). */
export const credentialKind = <K extends CredentialKey>(kind: CredentialKind<K>): CredentialKind<K> => kind
