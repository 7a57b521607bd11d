import type { RouteHandlerMethod } from 'fastify'
import type { Config } from '../../config/schema.js'
import { stageOf, type Stage, type StageServices } from '../types.js'
import { watchCredentials } from './credentials/availability.js'
import { createCredentials } from './credentials/index.js'
import { createKeyRing } from './credentials/signing-keys.js'
import { createForwarder } from './forwarder.js'
import { createHeaderRules } from './headers.js'
import { forwardPlugin } from './plugin.js'
import { createUpstreams } from './upstreams.js'

export interface ForwardStage extends Stage {
  /** The route handler of every allowed request (route/stage.ts). */
  handler: RouteHandlerMethod
  /** Drain timeout reached: exchanges still waiting on a function end with a coded 503 now. */
  cutOff: () => Promise<void>
  /** The gateway's public assertion keys (served on the admin listener). */
  jwks: () => { keys: unknown[] }
}

/** Stage 6, forward: assertion keys, credentials, upstream pools and the forwarder over them. */
export async function createForwardStage (config: Config, services: StageServices, opts: { checkCredentials?: boolean } = {}): Promise<ForwardStage> {
  const { log, metrics, health, closer } = services
  // The gateway's assertion keys: loaded or made at start, rotated with overlap, published as a JWKS.
  const assertionKeys = await createKeyRing({
    config: config.assertion,
    onRotate: () => metrics.assertionKeyRotations.inc(),
    onChange: (published) => metrics.assertionKeys.set(published),
    onError: (err) => log.error({ err: (err as Error).message }, 'assertion key rotation failed; keeping the current keys')
  })
  closer.add('assertion keys', () => assertionKeys.close())
  const credentials = await createCredentials({ config, keys: assertionKeys, metrics })
  const upstreams = await createUpstreams(config.upstreams, { log, metrics })
  const forwarder = createForwarder({ upstreams, routes: config.routes, metrics, credentials, headerRules: createHeaderRules(config) })
  // Closed by the plugin when the app closes, or here when the build fails before it is registered.
  let closed: Promise<void> | undefined
  const close = async (): Promise<void> => { closed ??= forwarder.close(); await closed }
  closer.add('upstreams', close)
  // credentials:<upstream> readiness, for AWS, Google, Azure (`portcullis eval` forwards nothing and needs none).
  if (opts.checkCredentials !== false) closer.add('credential checks', watchCredentials(config.upstreams, health))
  health.addStatus('upstreams', () => config.upstreams.map(u => ({ id: u.id, url: u.url, mtls: u.tls !== undefined })))
  return {
    ...stageOf(forwardPlugin, { forwarder: { ...forwarder, close } }),
    handler: forwarder.handle,
    cutOff: async () => forwarder.cutOff(),
    jwks: () => assertionKeys.jwks()
  }
}
