import type { Config } from '../../config/schema.js'
import { stageOf, type Stage } from '../types.js'
import { guardPlugin } from './plugin.js'

/** Stage 1, edge guards, from the listener limits and the proxies trusted to name the client. */
export function createGuardStage (config: Pick<Config, 'limits' | 'listen' | 'rateLimit'>): Stage {
  const { limits } = config
  return stageOf(guardPlugin, {
    maxBodyBytes: limits.maxBodyBytes,
    maxUriBytes: limits.maxUriBytes,
    maxHeaders: limits.maxHeaders,
    pathParameters: limits.pathParameters === 'allow',
    trustedProxies: config.rateLimit.trustedProxies,
    doubleEncodedPath: limits.doubleEncodedPath === 'allow',
    lookalikePath: limits.lookalikePath === 'allow',
    ...(config.listen.hosts !== undefined ? { hosts: config.listen.hosts } : {})
  })
}
