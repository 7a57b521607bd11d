/*
 * The shadow's waiting jobs (shadow.ts): a ring of fixed size, made once. Not an array pushed at one
 * end and shifted at the other: that one's backing store is trimmed and reallocated as it goes, and a
 * store it drops in the old generation still points at the jobs it held, so that the young-generation
 * collector keeps them (the input's text, the decision) alive and promotes them (lifecycle/open-responses.ts
 * tells the same story of a Set). Here a slot is cleared as its job leaves, and nothing is reallocated.
 */
export class ShadowQueue<T> {
  readonly #slots: Array<T | undefined>
  #first = 0
  #length = 0

  constructor (readonly capacity: number) {
    this.#slots = new Array<T | undefined>(capacity).fill(undefined)
  }

  get length (): number {
    return this.#length
  }

  /** Adds `item` at the end; false (and nothing added) when full. */
  push (item: T): boolean {
    if (this.#length === this.capacity) return false
    this.#slots[(this.#first + this.#length) % this.capacity] = item
    this.#length++
    return true
  }

  /** Takes the first item out, or undefined when empty. */
  shift (): T | undefined {
    if (this.#length === 0) return undefined
    const item = this.#slots[this.#first]
    this.#slots[this.#first] = undefined
    this.#first = (this.#first + 1) % this.capacity
    this.#length--
    return item
  }

  clear (): void {
    this.#slots.fill(undefined)
    this.#first = this.#length = 0
  }
}
