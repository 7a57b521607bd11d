import type { Config } from '../../config/schema.js'
import { stageOf, type Stage, type StageServices } from '../types.js'
import type { Ban } from './bans.js'
import type { DenyListWriters } from './deny-list.js'
import { clientBanPlugin, revocationPlugin } from './plugin.js'

export interface DenyListStages {
  /** Stage 1: banned client IPs (and counting failures towards bans). */
  clientBan: Stage
  /** Stage 3: revoked credentials and banned subjects, right after authentication. */
  revocation: Stage
  /** What the admin API writes through (app.ts). */
  writers: DenyListWriters
}

/**
 * Both deny-list stages on the process's deny list, shared through the rate-limit store's Redis when
 * it is redis. Serves with the shared sets already read; if Redis is away, requests fail closed until
 * it is (bans: each replica's own meanwhile). A sync this process already holds has been read.
 */
export async function createDenyListStages (config: Config, services: StageServices): Promise<DenyListStages> {
  const { log, metrics, health, closer, process: { denyList } } = services
  const { revocations, bans } = denyList
  const shared = closer.hold(await services.process.denyListSync(config, log), 'deny-list sync')
  const revocationSync = shared?.revocations ?? null
  await shared?.ready(5000)
  metrics.denyListCounts.revocations = kind => revocations.count(kind)
  metrics.denyListCounts.bans = scope => bans.count(scope)

  if (revocationSync !== null) {
    health.addCheck('revocations', () => revocationSync.synced
      ? { ok: true, detail: `redis ${revocationSync.up ? 'up' : 'down'}` }
      : { ok: false, detail: 'shared revocation set not read yet' })
  }
  health.addStatus('revocations', () => ({
    store: revocationSync === null ? 'memory' : 'redis',
    ...(revocationSync !== null ? { synced: revocationSync.synced, up: revocationSync.up } : {}),
    in_force: revocations.list().length
  }))
  health.addStatus('bans', () => bans.list().map(b => ({ scope: b.scope, value: b.value, until: new Date(b.until).toISOString(), strikes: b.strikes })))

  const options = {
    config,
    metrics,
    revocations,
    bans,
    revocationsReady: () => revocationSync?.synced ?? true,
    // Shared in the background: a ban this replica holds works whether or not Redis takes it.
    shareBan: (ban: Ban) => { shared?.bans.put(ban).catch(() => {}) }
  }
  return { clientBan: stageOf(clientBanPlugin, options), revocation: stageOf(revocationPlugin, options), writers: denyList.writers(shared) }
}
