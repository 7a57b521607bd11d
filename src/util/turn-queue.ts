/**
 * Collects what is queued during one event-loop turn and hands it all over at the turn's end
 * (setImmediate: after the poll phase has read every socket that was ready, so under load a turn holds
 * the work of many requests). The first job queued in a turn schedules the flush; a job queued during
 * the flush waits for the next turn. The gateway assertion's signatures
 * (forward/credentials/turn-batch.ts) and the rate-limit store's Redis commands
 * (rate-limit/redis-store.ts) are queued this way, each for a reason of its own, given there.
 */
export function createTurnQueue<J> (flush: (jobs: J[]) => void): (job: J) => void {
  let queue: J[] = []
  const run = (): void => {
    const jobs = queue
    queue = []
    flush(jobs)
  }
  return job => {
    if (queue.length === 0) setImmediate(run)
    queue.push(job)
  }
}
