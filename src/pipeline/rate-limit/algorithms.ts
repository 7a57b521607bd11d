import { LRUCache } from 'lru-cache'

/*
 * The two limiting algorithms, as one shape for every store. Fixed window is what @fastify/rate-limit
 * does (cheap, but up to 2 × max can pass around a window edge). GCRA, the generic cell rate
 * algorithm, is the smooth one: a bucket is a single number, the theoretical arrival time (TAT) of the
 * next request; each request pushes it cost × interval ahead, and a request is refused while that
 * would put it more than burst × interval ahead of now. One value per key, so in Redis it is one
 * GET and one SET in a Lua script: atomic, hence exact across replicas, and read against Redis's own
 * clock (TIME), so replica clocks do not matter. A sliding log would be exact too but stores one
 * entry per request; a sliding-window counter is only an estimate.
 */

export interface LimitSpec {
  algorithm: 'fixed-window' | 'gcra'
  max: number
  windowMs: number
  /** gcra: requests allowed at once; defaults to max. */
  burst: number
}

export interface Verdict {
  allowed: boolean
  /** Requests (of cost 1) still allowed right now. */
  remaining: number
  /** Until the bucket is full again (fixed window: the window's end), in ms. */
  resetMs: number
  /** When refused: until a request of this cost could pass, in ms. */
  retryAfterMs: number
}

/** GCRA in integer microseconds: the interval is rounded up, so rounding never allows more. */
export function gcraParams (spec: LimitSpec): { intervalUs: number, toleranceUs: number } {
  const intervalUs = Math.ceil(spec.windowMs * 1000 / spec.max)
  return { intervalUs, toleranceUs: intervalUs * spec.burst }
}

/** Entries kept per process; the least recently used bucket is forgotten first. */
const MEMORY_BUCKETS = 100_000

/**
 * The in-process store: one process's view, used alone (store: memory) or when Redis fails. A bucket
 * remembers the definition it was counted under (the caller's string for the limit's settings): a
 * limit whose definition changed over a reload starts its buckets afresh instead of inheriting the old
 * counts. Kept beside the count, not in the key, so a request makes no key string of its own.
 */
export function createMemoryLimiter (now: () => number = () => performance.timeOrigin + performance.now()) {
  const windows = new LRUCache<string, { count: number, resetAt: number, definition: string }>({ max: MEMORY_BUCKETS })
  const tats = new LRUCache<string, { tat: number, definition: string }>({ max: MEMORY_BUCKETS })

  function fixedWindow (key: string, cost: number, spec: LimitSpec, definition: string): Verdict {
    const t = now()
    let w = windows.get(key)
    if (w === undefined || w.resetAt <= t || w.definition !== definition) {
      w = { count: 0, resetAt: t + spec.windowMs, definition }
      windows.set(key, w)
    }
    const resetMs = w.resetAt - t
    if (w.count + cost > spec.max) return { allowed: false, remaining: spec.max - w.count, resetMs, retryAfterMs: resetMs }
    w.count += cost
    return { allowed: true, remaining: spec.max - w.count, resetMs, retryAfterMs: 0 }
  }

  function gcra (key: string, cost: number, spec: LimitSpec, definition: string): Verdict {
    const { intervalUs, toleranceUs } = gcraParams(spec)
    const t = Math.floor(now() * 1000)
    const entry = tats.get(key)
    const tat = Math.max(entry !== undefined && entry.definition === definition ? entry.tat : t, t)
    const next = tat + cost * intervalUs
    const allowAt = next - toleranceUs
    if (t < allowAt) {
      return { allowed: false, remaining: Math.floor((toleranceUs - (tat - t)) / intervalUs), resetMs: (tat - t) / 1000, retryAfterMs: (allowAt - t) / 1000 }
    }
    // A TAT in the past means a full bucket, so stale entries need no expiry.
    if (entry !== undefined) {
      entry.tat = next
      entry.definition = definition
    } else {
      tats.set(key, { tat: next, definition })
    }
    return { allowed: true, remaining: Math.floor((toleranceUs - (next - t)) / intervalUs), resetMs: (next - t) / 1000, retryAfterMs: 0 }
  }

  return {
    /** `definition`: the limit's settings as a string; a bucket counted under another starts afresh. */
    consume (key: string, cost: number, spec: LimitSpec, definition = ''): Verdict {
      return spec.algorithm === 'gcra' ? gcra(key, cost, spec, definition) : fixedWindow(key, cost, spec, definition)
    },
    get size (): number { return windows.size + tats.size }
  }
}

export type MemoryLimiter = ReturnType<typeof createMemoryLimiter>
