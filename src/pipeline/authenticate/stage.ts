import type { Config } from '../../config/schema.js'
import { stageOf, type Stage, type StageServices } from '../types.js'
import { createJwtAuthenticator } from './jwt.js'
import type { KeySource } from './key-source.js'
import { authenticatePlugin } from './plugin.js'

export interface AuthenticateStage extends Stage {
  keySources: ReadonlyMap<string, KeySource>
  /** When this generation starts serving: the issuer key-age gauges follow its key sources. */
  activate: () => void
}

/**
 * Stage 3, authenticate: each issuer's key source from the process (kept across reloads that leave
 * its key settings alone), warmed before serving; ready while the keys verify.
 */
export async function createAuthenticateStage (config: Pick<Config, 'issuers'>, services: StageServices): Promise<AuthenticateStage> {
  const { log, metrics, health, closer, certificates, process } = services
  const keySources = new Map<string, KeySource>()
  for (const issuer of config.issuers) keySources.set(issuer.id, closer.hold(await process.keySource(issuer, log), `issuer keys ${issuer.id}`))
  // Keys the process already holds are used as they are; others are fetched once now, and retried
  // in the background (with back-off) if the IdP does not answer.
  await Promise.all([...keySources.values()].map(async k => k.warm().catch((err: unknown) => {
    log.warn({ err: (err as Error).message }, 'issuer keys not loaded yet; retrying in the background')
  })))
  const jwt = createJwtAuthenticator(config.issuers.map(c => ({ config: c, keys: keySources.get(c.id)! })))

  // Ready while the keys verify: fresh, or stale within maxStaleSeconds (the outage shows in /status
  // and portcullis_issuer_keys_age_seconds, and alerts, without taking the replica out of service).
  for (const [id, k] of keySources) {
    health.addCheck(`issuer:${id}`, () => {
      const s = k.status()
      return { ok: k.ready, detail: s.state === 'none' ? 'issuer keys not loaded' : `keys ${s.state}${s.age_seconds !== null ? `, ${s.age_seconds} s old` : ''}` }
    })
  }
  health.addStatus('issuers', () => config.issuers.map(i => {
    const k = keySources.get(i.id)!
    return { id: i.id, issuer: i.issuer, keys_loaded: k.ready, keys: k.status() }
  }))
  for (const i of config.issuers) certificates.file(`issuer/${i.id}/ca`, i.ca)

  return {
    ...stageOf(authenticatePlugin, { jwt, metrics }, 'closed'),
    keySources,
    activate () {
      metrics.issuerKeyAges.clear()
      for (const [id, k] of keySources) metrics.issuerKeyAges.set(id, () => k.ageSeconds())
    }
  }
}
