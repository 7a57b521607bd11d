/*
 * What a gateway generation built and must give back: pools, watchers, timers, listeners, and the
 * process state it holds. Each piece is added as it is built, so a build that fails half-way closes
 * exactly what it made, and a retired generation closes everything, in reverse (what was built last
 * may use what was built before it: requests finish before the decision log is flushed, and before
 * the stores they count in are released).
 */

export interface CloseLog { warn: (obj: object, msg: string) => void }

export interface CloseRegistry {
  /** Adds a piece to close; added after close() started, it is closed at once. */
  add: (name: string, close: () => unknown) => void
  /** Takes a piece of process state and adds its release (lifecycle/process-state.ts). */
  hold: <T>(held: { value: T, release: () => Promise<void> }, name: string) => T
  /**
   * Closes every piece, last added first; each runs even when one before it failed. Failures are
   * logged and the first is thrown once all have run. Calling it again returns the same promise.
   */
  close: () => Promise<void>
}

export function createCloseRegistry (log: CloseLog): CloseRegistry {
  const pieces: Array<{ name: string, close: () => unknown }> = []
  let closing: Promise<void> | undefined

  const closeOne = async (name: string, close: () => unknown): Promise<unknown> => {
    try {
      await close()
      return undefined
    } catch (err) {
      log.warn({ err: (err as Error).message, piece: name }, 'closing a part of the gateway failed')
      return err ?? new Error(`closing ${name} failed`)
    }
  }

  const add = (name: string, close: () => unknown): void => {
    if (closing === undefined) pieces.push({ name, close })
    else void closeOne(name, close)
  }

  return {
    add,
    hold (held, name) {
      add(name, held.release)
      return held.value
    },
    close () {
      closing ??= (async () => {
        const failures: unknown[] = []
        for (const { name, close } of pieces.reverse()) {
          const failure = await closeOne(name, close)
          if (failure !== undefined) failures.push(failure)
        }
        if (failures.length > 0) throw failures[0]
      })()
      return closing
    }
  }
}
