import type { BanRuleConfig } from '../../config/schema.js'

/*
 * Automatic bans: a client IP or a subject that fails too often within a window is refused for a
 * while. Each further ban of the same client doubles the time, up to the rule's cap; the count of
 * earlier bans is forgotten once a client has stayed out of trouble for twice the cap. Held in this
 * process (the list outlives config reloads); with Redis, every ban a replica imposes is shared with
 * the others (ban-sync.ts), each still counting failures on its own. An operator lifts a ban
 * through the admin API, on every replica at once when they share Redis.
 *
 * Memory is bounded: failure records are dropped when their window has passed (swept every few
 * seconds) and at most MAX_TRACKED clients are tracked; beyond that new clients are not tracked
 * until the sweep frees room, which is logged as a count, never silently.
 */

export type BanScope = 'ip' | 'sub'

export interface Ban { scope: BanScope, value: string, until: number, strikes: number }

interface Tracked {
  /** Failure times within the current window, oldest first. */
  failures: number[]
  bannedUntil: number
  strikes: number
  /** When the last ban ended or failure was seen: strikes are forgotten 2 × cap after it. */
  quietSince: number
  capMs: number
  /** The ban in force is known to be in the shared store (Redis): it goes when the store drops it. */
  shared: boolean
}

const MAX_TRACKED = 100_000

export interface BanList {
  /** Records a failure under `rule`; returns the new ban if this failure caused one. */
  fail: (scope: BanScope, value: string, rule: BanRuleConfig) => Ban | null
  /** Applies a ban another replica imposed (shared through Redis): the longer of the two wins. */
  impose: (ban: Ban) => void
  /**
   * After a full read of the shared bans: lifts the bans that came from the store and are no longer
   * in it. Bans this replica imposed and could not share are kept.
   */
  keepShared: (inStore: (ban: Ban) => boolean) => void
  /** The ban in force on this client, or null. */
  banned: (scope: BanScope, value: string) => Ban | null
  lift: (scope: BanScope, value: string) => boolean
  list: () => Ban[]
  count: (scope: BanScope) => number
  /** Clients not tracked because the table was full. */
  readonly untracked: number
  close: () => void
}

// long: one closure over the tracked table; each method is short.
export function createBanList (now: () => number = Date.now): BanList {
  const tracked = new Map<string, Tracked>()
  let untracked = 0
  const keyOf = (scope: BanScope, value: string): string => `${scope}\0${value}`
  const banOf = (key: string, t: Tracked): Ban => {
    const sep = key.indexOf('\0')
    return { scope: key.slice(0, sep) as BanScope, value: key.slice(sep + 1), until: t.bannedUntil, strikes: t.strikes }
  }

  const sweep = (): void => {
    const t0 = now()
    for (const [key, t] of tracked) {
      if (t.bannedUntil > t0) continue
      if (t.failures.length > 0 && t.failures[t.failures.length - 1]! > t0 - 86_400_000) continue
      if (t.strikes > 0 && t0 - t.quietSince < 2 * t.capMs) continue
      tracked.delete(key)
    }
  }
  const timer = setInterval(sweep, 5000).unref()

  return {
    fail (scope, value, rule) {
      const t0 = now()
      const key = keyOf(scope, value)
      let t = tracked.get(key)
      if (t === undefined) {
        if (tracked.size >= MAX_TRACKED) { untracked++; return null }
        t = { failures: [], bannedUntil: 0, strikes: 0, quietSince: t0, capMs: rule.maxBanSeconds * 1000, shared: false }
        tracked.set(key, t)
      }
      if (t.bannedUntil > t0) return null // already banned; failures while banned do not lengthen it
      if (t.strikes > 0 && t0 - t.quietSince >= 2 * t.capMs) t.strikes = 0
      t.quietSince = t0
      const windowStart = t0 - rule.windowSeconds * 1000
      t.failures = t.failures.filter(f => f > windowStart)
      t.failures.push(t0)
      if (t.failures.length < rule.failures) return null
      t.failures = []
      t.strikes++
      t.capMs = rule.maxBanSeconds * 1000
      const seconds = Math.min(rule.banSeconds * 2 ** (t.strikes - 1), rule.maxBanSeconds)
      t.bannedUntil = t0 + seconds * 1000
      t.quietSince = t.bannedUntil
      t.shared = false
      return banOf(key, t)
    },
    impose (ban) {
      const t0 = now()
      if (ban.until <= t0) return
      const key = keyOf(ban.scope, ban.value)
      let t = tracked.get(key)
      if (t === undefined) {
        if (tracked.size >= MAX_TRACKED) { untracked++; return }
        // The rule is the other replica's: its strikes are forgotten after twice this ban's length.
        t = { failures: [], bannedUntil: 0, strikes: 0, quietSince: t0, capMs: ban.until - t0, shared: false }
        tracked.set(key, t)
      }
      if (ban.until > t.bannedUntil) {
        t.bannedUntil = ban.until
        t.quietSince = ban.until
        t.failures = []
      }
      if (ban.until >= t.bannedUntil) t.shared = true
      t.strikes = Math.max(t.strikes, ban.strikes)
    },
    keepShared (inStore) {
      const t0 = now()
      for (const [key, t] of tracked) {
        if (t.shared && t.bannedUntil > t0 && !inStore(banOf(key, t))) tracked.delete(key)
      }
    },
    banned (scope, value) {
      const t = tracked.get(keyOf(scope, value))
      return t !== undefined && t.bannedUntil > now() ? banOf(keyOf(scope, value), t) : null
    },
    lift (scope, value) {
      const t = tracked.get(keyOf(scope, value))
      if (t === undefined || t.bannedUntil <= now()) return false
      // Lifted by an operator: a clean slate, the next ban starts again from banSeconds.
      tracked.delete(keyOf(scope, value))
      return true
    },
    list () {
      const t0 = now()
      return [...tracked].filter(([, t]) => t.bannedUntil > t0).map(([k, t]) => banOf(k, t))
    },
    count (scope) {
      const t0 = now()
      let n = 0
      for (const [k, t] of tracked) if (t.bannedUntil > t0 && k.startsWith(`${scope}\0`)) n++
      return n
    },
    get untracked () { return untracked },
    close () { clearInterval(timer) }
  }
}
