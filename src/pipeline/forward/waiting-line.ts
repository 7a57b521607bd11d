/*
 * The requests waiting for a connection of one upstream, one line per caller, served in turn: the
 * next to leave is the oldest of the caller whose turn it is, then that caller goes to the back of the
 * rotation. With every request under one caller ('') it is a plain first-come-first-served queue.
 * Callers are keyed by caller-cap.ts's callerOf; a caller's entry goes when its line is empty, so the
 * map never holds more callers than requests waiting (at most the upstream's maxQueue).
 */

export interface WaitingLine<T> {
  /** Requests waiting, all callers. */
  readonly size: number
  add: (who: string, item: T) => void
  /** Takes the next request out, in turn by caller; undefined when none waits. */
  next: () => T | undefined
  /** Takes a waiting request out (it timed out or its client left); false when it was not waiting. */
  remove: (who: string, item: T) => boolean
  /** How many requests `who` has waiting. */
  count: (who: string) => number
  /** The caller with the most requests waiting (the first such in turn), or undefined when none waits. */
  longest: () => { who: string, count: number } | undefined
  /** Takes out the newest request of `who` (to make room for a caller with fewer). */
  newest: (who: string) => T | undefined
  /** Every waiting request, callers in turn. */
  all: () => T[]
}

export function createWaitingLine<T> (): WaitingLine<T> {
  const lines = new Map<string, T[]>()
  let size = 0

  const drop = (who: string, line: T[]): void => { if (line.length === 0) lines.delete(who) }

  return {
    get size () { return size },
    add (who, item) {
      const line = lines.get(who)
      if (line === undefined) lines.set(who, [item])
      else line.push(item)
      size++
    },
    next () {
      for (const [who, line] of lines) {
        const item = line.shift()!
        size--
        // To the back of the rotation (a Map keeps insertion order).
        lines.delete(who)
        if (line.length > 0) lines.set(who, line)
        return item
      }
      return undefined
    },
    remove (who, item) {
      const line = lines.get(who)
      const i = line?.indexOf(item) ?? -1
      if (i === -1) return false
      line!.splice(i, 1)
      size--
      drop(who, line!)
      return true
    },
    count: who => lines.get(who)?.length ?? 0,
    longest () {
      let most: { who: string, count: number } | undefined
      for (const [who, line] of lines) if (most === undefined || line.length > most.count) most = { who, count: line.length }
      return most
    },
    newest (who) {
      const line = lines.get(who)
      const item = line?.pop()
      if (item === undefined) return undefined
      size--
      drop(who, line!)
      return item
    },
    all: () => [...lines.values()].flat()
  }
}
