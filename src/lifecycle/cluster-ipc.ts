import type { Worker } from 'node:cluster'
import { randomUUID } from 'node:crypto'
import type { Config } from '../config/schema.js'
import type { KeySnapshots } from './process-state.js'

/*
 * The messages between the cluster primary and its workers, over the IPC channel Node's cluster
 * module opens for each worker. The config travels here, never in the environment or argv: it may
 * hold secrets, and a worker's environment and command line are readable by other local users.
 */

/** Worker → primary, once it is ready to be told its config. */
export interface WantConfig { type: 'portcullis:want-config' }
/**
 * Primary → worker: the config to start with (the primary's last good one), and the issuer key sets a
 * sibling holds (public keys, nothing secret), so that a worker restarted during an IdP outage verifies
 * as its siblings do.
 */
export interface StartWith { type: 'portcullis:config', config: Config, keys: KeySnapshots }
/** Worker → primary, once its gateway listens. */
export interface Listening { type: 'portcullis:listening', url: string, configHash: string }

/** Primary → worker questions, each answered once with the same id. */
export type Question =
  | { what: 'readiness' }
  | { what: 'status' }
  | { what: 'metrics' }
  | { what: 'keys' }
  | { what: 'reload', config: Config }
export type Ask = Question & { type: 'portcullis:ask', id: string }
export interface Answer { type: 'portcullis:answer', id: string, value: unknown }

export function isMessage<T extends { type: string }> (m: unknown, type: T['type']): m is T {
  return typeof m === 'object' && m !== null && (m as { type?: unknown }).type === type
}

/**
 * Asks one worker; resolves with its answer, or undefined when it does not answer within `timeoutMs`
 * or cannot be reached (a worker that just died: sending to it must not throw in the primary).
 */
export async function ask (worker: Worker, question: Question, timeoutMs = 2000): Promise<unknown> {
  if (!worker.isConnected()) return undefined
  const id = randomUUID()
  return new Promise(resolve => {
    const done = (value: unknown): void => { clearTimeout(timer); worker.off('message', onMessage); resolve(value) }
    const timer = setTimeout(() => done(undefined), timeoutMs)
    const onMessage = (m: unknown): void => {
      if (isMessage<Answer>(m, 'portcullis:answer') && m.id === id) done(m.value)
    }
    worker.on('message', onMessage)
    worker.send({ ...question, type: 'portcullis:ask', id } satisfies Ask, err => { if (err !== null) done(undefined) })
  })
}
