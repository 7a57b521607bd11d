/*
 * The fault schedule of `npm run chaos`: made from a seed, so a run that finds something can be run
 * again with the same faults at the same moments (the traffic mix is drawn from the same seed; the
 * machine's timing is not reproducible, so the answers will differ a little).
 *
 * Faults come in lanes, one per dependency: within a lane episodes never overlap (an IdP cannot be
 * killed while it is paused), across lanes they do, which is where surprises live. The first
 * QUIET_HEAD_S seconds are a baseline and the last QUIET_TAIL_S show that everything came back.
 */

export type FaultKind =
  | 'idp-kill' | 'idp-pause' | 'idp-slow' | 'idp-rotate'
  | 'redis-kill' | 'redis-pause'
  | 'fn-kill' | 'fn-pause'
  | 'worker-kill'
  | 'reload'

export interface PlannedFault {
  kind: FaultKind
  /** Seconds after traffic starts. */
  at: number
  /** Seconds until the fault is undone (0: a single event). */
  seconds: number
  /** idp-slow: how long each IdP answer waits. */
  slowMs?: number
}

export const QUIET_HEAD_S = 10
export const QUIET_TAIL_S = 15

/** mulberry32: a small seeded generator; Math.random cannot be seeded. */
export function createRandom (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

interface Lane { kinds: FaultKind[], gap: [number, number], seconds: [number, number] }

const LANES: Lane[] = [
  { kinds: ['idp-kill', 'idp-pause', 'idp-slow', 'idp-rotate'], gap: [4, 12], seconds: [5, 14] },
  { kinds: ['redis-kill', 'redis-pause'], gap: [6, 18], seconds: [4, 12] },
  { kinds: ['fn-kill', 'fn-pause'], gap: [6, 18], seconds: [3, 10] },
  { kinds: ['worker-kill'], gap: [15, 35], seconds: [0, 0] },
  { kinds: ['reload'], gap: [8, 22], seconds: [0, 0] }
]

export function planFaults (seed: number, durationS: number, idpSlowMs: { fast: number, timeout: number }): PlannedFault[] {
  const random = createRandom(seed)
  const between = ([lo, hi]: [number, number]): number => Math.round(lo + random() * (hi - lo))
  const plan: PlannedFault[] = []
  const last = durationS - QUIET_TAIL_S
  for (const lane of LANES) {
    // Each lane goes through its kinds in a shuffled cycle, so every kind is exercised when there is room.
    let order: FaultKind[] = []
    let at = QUIET_HEAD_S + between([0, lane.gap[1]])
    for (;;) {
      if (order.length === 0) order = shuffle(lane.kinds, random)
      const kind = order.shift()!
      const seconds = between(lane.seconds)
      if (at + seconds > last) break
      plan.push({
        kind,
        at,
        seconds,
        // Slow but within the fetch timeout (keys still load, late), or slower than it (a fetch times out).
        ...(kind === 'idp-slow' ? { slowMs: random() < 0.5 ? idpSlowMs.fast : idpSlowMs.timeout } : {})
      })
      at += seconds + between(lane.gap)
    }
  }
  return plan.sort((a, b) => a.at - b.at)
}

function shuffle<T> (items: T[], random: () => number): T[] {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

export function describe (f: PlannedFault): string {
  const what = f.seconds > 0 ? `${f.kind} for ${f.seconds} s` : f.kind
  return `t=${String(f.at).padStart(3)} s  ${what}${f.slowMs !== undefined ? ` (${f.slowMs} ms per answer)` : ''}`
}
