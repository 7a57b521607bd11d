import { monitorEventLoopDelay } from 'node:perf_hooks'

/*
 * How late the event loop runs, from Node's own sampler (perf_hooks.monitorEventLoopDelay: a timer
 * every RESOLUTION_MS, recording how long each tick really took). Read in fixed windows of WINDOW_MS,
 * not per scrape, so that the value means the same whoever reads it (two Prometheus servers, /metrics
 * by hand, the Redis health check) and reading it resets nothing.
 *
 * Each value is the delay beyond the sampling interval: 0 on an idle loop.
 */

const RESOLUTION_MS = 10
export const WINDOW_MS = 5000

export interface LoopDelaySnapshot {
  p50: number
  p99: number
  max: number
}

export function createEventLoopDelay () {
  const histogram = monitorEventLoopDelay({ resolution: RESOLUTION_MS })
  histogram.enable()
  const beyond = (ns: number): number => Math.max(0, ns / 1e9 - RESOLUTION_MS / 1000)
  const take = (): LoopDelaySnapshot => histogram.count === 0
    ? { p50: 0, p99: 0, max: 0 }
    : { p50: beyond(histogram.percentile(50)), p99: beyond(histogram.percentile(99)), max: beyond(histogram.max) }
  let last: LoopDelaySnapshot = { p50: 0, p99: 0, max: 0 }
  // Ticks while the loop runs, so a stall lands in the window it ends in; unref'd: it never keeps
  // the process alive.
  const timer = setInterval(() => {
    last = take()
    histogram.reset()
  }, WINDOW_MS).unref()

  return {
    /** The last complete window, in seconds. */
    get last (): LoopDelaySnapshot { return last },
    /** The recent p99 in seconds (last complete window): cheap, read per Redis command. */
    recentSeconds: (): number => last.p99,
    close (): void {
      clearInterval(timer)
      histogram.disable()
    }
  }
}

export type EventLoopDelay = ReturnType<typeof createEventLoopDelay>
