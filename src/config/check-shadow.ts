import { access } from 'node:fs/promises'
import { constants } from 'node:fs'
import { resolve } from 'node:path'
import type { ConfigProblem } from './load.js'
import type { Config } from './schema.js'

/**
 * `policy.shadow` (schema-bundle.ts): exactly one source, a bundle server reached over https (or
 * plaintext by choice), its files resolved against the config's folder and readable. The bundle
 * path is resolved, not checked: like the active one, it is a build output that may appear later.
 */
export async function checkShadow (config: Config, baseDir: string): Promise<ConfigProblem[]> {
  const shadow = config.policy?.shadow as Partial<NonNullable<Config['policy']['shadow']>> | undefined
  if (shadow === null || typeof shadow !== 'object') return []
  const problems: ConfigProblem[] = []
  if ([shadow.bundle, shadow.server].filter(s => s !== undefined).length !== 1) {
    problems.push({ path: '/policy/shadow', message: 'needs exactly one bundle source: bundle (a file or folder) or server' })
  }
  if (typeof shadow.bundle === 'string') shadow.bundle = resolve(baseDir, shadow.bundle)
  const server = shadow.server
  if (server === undefined || server === null || typeof server !== 'object') return problems
  if (typeof server.url === 'string' && !server.url.startsWith('https://') && server.plaintext !== true) {
    problems.push({ path: '/policy/shadow/server/url', message: 'must be an https URL (set plaintext: true only for local development)' })
  }
  const tls = server.tls as Record<string, unknown> | undefined
  if (tls === undefined || tls === null || typeof tls !== 'object') return problems
  if ((tls.cert === undefined) !== (tls.key === undefined)) problems.push({ path: '/policy/shadow/server/tls', message: 'cert and key go together' })
  for (const k of ['ca', 'cert', 'key']) {
    if (typeof tls[k] !== 'string') continue
    const abs = resolve(baseDir, tls[k])
    tls[k] = abs
    await access(abs, constants.R_OK).catch(() => problems.push({ path: `/policy/shadow/server/tls/${k}`, message: `file not readable: ${abs}` }))
  }
  return problems
}
