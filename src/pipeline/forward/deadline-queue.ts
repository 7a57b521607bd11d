/*
 * Deadlines of one length under one native timer: what Node's own timer lists do, without a Timeout
 * object, its async id and its list bookkeeping for every request (the forward chain sets and clears
 * a total deadline per exchange and a headers and a body bound per attempt, and they almost never
 * fire). Deadlines of one length expire in the order
 * they were set, so a doubly linked list in that order, the entries being the deadlines themselves,
 * is all the ordering needed: adding and removing are O(1) and allocate nothing. The timer is armed
 * for the earliest entry; when it fires, every entry that is due expires, and it is armed again for
 * the next. A deadline fires no earlier than its length after it was added, and as late as a native
 * timer would be. Hand-written: Node exposes no timer list without a Timeout per entry.
 */

export interface DeadlineEntry<T> {
  /** performance.now() at which it expires; set by add(). */
  due: number
  /** Neighbours in the queue: set before it, set after it. */
  older: T | null
  newer: T | null
  queued: boolean
  expire: () => void
}

export class DeadlineQueue<T extends DeadlineEntry<T>> {
  #head: T | null = null
  #tail: T | null = null
  #timer: NodeJS.Timeout | null = null

  constructor (readonly ms: number) {}

  add (entry: T): void {
    const now = performance.now()
    entry.due = now + this.ms
    entry.older = this.#tail
    entry.newer = null
    entry.queued = true
    if (this.#tail === null) this.#head = entry
    else this.#tail.newer = entry
    this.#tail = entry
    // Armed for the earliest entry: the one added now unless this runs while due ones expire (tick).
    if (this.#timer === null) this.#arm(this.#head!.due - now)
  }

  remove (entry: T): void {
    if (!entry.queued) return
    entry.queued = false
    if (entry.older === null) this.#head = entry.newer
    else entry.older.newer = entry.newer
    if (entry.newer === null) this.#tail = entry.older
    else entry.newer.older = entry.older
    entry.older = entry.newer = null
    // Nothing left to time: no timer keeps the process awake for a deadline that cannot fire.
    if (this.#head === null && this.#timer !== null) { clearTimeout(this.#timer); this.#timer = null }
  }

  /** Entries queued now (for tests). */
  get size (): number {
    let n = 0
    for (let e = this.#head; e !== null; e = e.newer) n++
    return n
  }

  #arm (ms: number): void {
    this.#timer = setTimeout(fire, Math.max(1, Math.ceil(ms)), this)
  }

  /** Whether a timer is armed (for tests). */
  get armed (): boolean {
    return this.#timer !== null
  }

  /** The timer fired: expire what is due, then wait for the next entry (a timer may fire a little early by this clock). */
  tick (): void {
    this.#timer = null
    const now = performance.now()
    for (let e = this.#head; e !== null && e.due <= now; e = this.#head) {
      this.remove(e)
      e.expire()
    }
    const next = this.#head
    if (next !== null && this.#timer === null) this.#arm(next.due - now)
  }
}

// A named function and the queue as its argument: no closure per queue or per arming.
function fire<T extends DeadlineEntry<T>> (queue: DeadlineQueue<T>): void { queue.tick() }

/** Queues by length, each made when first needed (the lengths come from config: a handful). */
export function deadlineQueues<T extends DeadlineEntry<T>> (): (ms: number) => DeadlineQueue<T> {
  const queues = new Map<number, DeadlineQueue<T>>()
  return ms => {
    let queue = queues.get(ms)
    if (queue === undefined) {
      queue = new DeadlineQueue<T>(ms)
      queues.set(ms, queue)
    }
    return queue
  }
}
