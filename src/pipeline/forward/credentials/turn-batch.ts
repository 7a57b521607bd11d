import { createTurnQueue } from '../../../util/turn-queue.js'

/*
 * Work deferred to the end of the event-loop turn and run there together. What the gateway assertion's
 * ECDSA signature reads (OpenSSL's code and P-256 tables, whole windows of them for constant time) has
 * left the CPU's caches after a whole request's work between two signatures, and one signature costs
 * 2.5 times what it costs warm (bench/MICRO.md: 93 against 37 µs). Signed one after another, all but
 * the first find them there: eight in a row cost 42 µs each. Under load a turn reads many requests
 * (16 on average at saturation in bench scenario 5a); alone, a request waits for nothing but the end of
 * its own turn.
 */

export type TurnBatch = <T>(work: () => T) => Promise<T>

export function createTurnBatch (): TurnBatch {
  const queue = createTurnQueue<() => void>(jobs => {
    for (let i = 0; i < jobs.length; i++) jobs[i]!()
  })
  return work => new Promise((resolve, reject) => {
    queue(() => {
      try {
        resolve(work())
      } catch (err) {
        reject(err)
      }
    })
  })
}
