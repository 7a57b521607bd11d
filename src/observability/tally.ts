import type { Counter } from 'prom-client'

/** One label set of a tallied counter: the request path adds to `pending`, the scrape hands it on. */
export interface TallySeries {
  pending: number
}

/**
 * Counts for a prom-client counter kept as plain numbers, one per label set, and added to the counter
 * when it is read (its `collect`). prom-client's `inc(labels)`, and the children `labels(...)` returns,
 * build a string from the label values and look it up on every call; a counter bumped on every request
 * pays that per request (issue #19). The counter stays the one source of the exposition: a scrape, a
 * cluster aggregation or a test reading `get()` all see every count, because each reads through
 * `collect` first. Label sets are bounded as the counter's are (the caller's labels are): one entry
 * each, kept across reloads, as prom-client keeps the series.
 */
export function createTally<L extends string> () {
  const series = new Map<string, { labels: Record<L, string>, counts: TallySeries }>()
  return {
    /** The entry for one label set; callers keep it and add to `pending`. `key` names the set. */
    series (key: string, labels: Record<L, string>): TallySeries {
      let entry = series.get(key)
      if (entry === undefined) {
        entry = { labels, counts: { pending: 0 } }
        series.set(key, entry)
      }
      return entry.counts
    },
    /** Hands what was counted since the last read to the counter. */
    flush (counter: Counter<L>): void {
      for (const { labels, counts } of series.values()) {
        if (counts.pending === 0) continue
        counter.inc(labels, counts.pending)
        counts.pending = 0
      }
    }
  }
}

export type Tally<L extends string> = ReturnType<typeof createTally<L>>
