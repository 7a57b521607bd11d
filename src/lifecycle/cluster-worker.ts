import { deepFreeze } from '../config/load.js'
import type { Config } from '../config/schema.js'
import { startGateway, type RunningGateway } from '../server.js'
import { isMessage, type Answer, type Ask, type Listening, type StartWith, type WantConfig } from './cluster-ipc.js'

/*
 * A cluster worker (`start --workers N`): runs one whole gateway on the config the primary hands it,
 * never on the file, which may have changed since (and been refused) while the primary kept its last
 * good config. The primary also drives reloads: it reads and validates the file and sends each worker
 * the result. The worker still watches its listener certificate and key (lifecycle.watch) and
 * rebuilds from its current config when they change.
 */

async function configFromPrimary (): Promise<Pick<StartWith, 'config' | 'keys'>> {
  return new Promise(resolve => {
    const onMessage = (m: unknown): void => {
      if (!isMessage<StartWith>(m, 'portcullis:config')) return
      process.off('message', onMessage)
      resolve({ config: deepFreeze(m.config), keys: m.keys })
    }
    process.on('message', onMessage)
    // Asked for once the listener is in place: a message sent before it would be lost.
    process.send?.({ type: 'portcullis:want-config' } satisfies WantConfig)
  })
}

/** Starts this worker's gateway with the primary's config and answers the primary's questions. */
export async function startWorker (): Promise<RunningGateway> {
  const { config, keys } = await configFromPrimary()
  const running = await startGateway(config, { admin: false, keySeeds: keys })
  const registry = running.gateway.metrics.registry // outlives reloads
  process.on('message', (m: unknown) => {
    if (!isMessage<Ask>(m, 'portcullis:ask')) return
    const answer = async (): Promise<unknown> => {
      switch (m.what) {
        case 'readiness': return running.gateway.health.readiness()
        case 'status': return running.gateway.health.status()
        case 'metrics': return registry.getMetricsAsJSON()
        case 'keys': return running.keySnapshots()
        case 'reload': return running.reload(deepFreeze(m.config))
      }
    }
    void answer().then(
      value => process.send?.({ type: 'portcullis:answer', id: m.id, value } satisfies Answer),
      (err: unknown) => running.gateway.app.log.error({ err: (err as Error).message, question: m.what }, 'could not answer the cluster primary')
    )
  })
  process.send?.({ type: 'portcullis:listening', url: running.url, configHash: running.configHash } satisfies Listening)
  return running
}
