// on-exit-leak-free ships no types: what logger.ts uses of it (its README's API).
declare module 'on-exit-leak-free' {
  /** Calls `fn(obj, event)` when the process exits, for as long as `obj` is not garbage collected. */
  export function register<T extends object> (obj: T, fn: (obj: T, event: 'exit') => void): void
  export function unregister (obj: object): void
}
