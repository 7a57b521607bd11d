/*
 * The Node flag the gateway is meant to run with, and whether it does. A proxy allocates per request
 * objects that live as long as the upstream takes to answer; with V8's default young generation
 * (16 MiB semi-spaces on 64-bit) a scavenge comes every few hundred requests, and the in-flight ones'
 * objects survive it, are promoted, and cost old-generation collections on every core. 32 MiB semi-spaces
 * cut the CPU per request by 7 % for 28 MiB more resident memory under load; 64 gained 3 % more for
 * another 58 MiB (docs/operations.md#memory-and-garbage-collection, npm run bench:stages). V8 reads it
 * only at start, so it is set where the process is launched: the image's NODE_OPTIONS, `npm start`,
 * the bench (not the `portcullis` command's first line: that needs `env -S`, which not every env has).
 */

export const SEMI_SPACE_FLAG = '--max-semi-space-size=32'

/**
 * The semi-space size (MiB) this process was started with, from its command line or NODE_OPTIONS (the
 * command line wins, as in Node), or null when it runs on Node's default.
 */
export function maxSemiSpaceMiB (execArgv: readonly string[] = process.execArgv, nodeOptions = process.env.NODE_OPTIONS ?? ''): number | null {
  const find = (args: readonly string[]): number | null => {
    let found: number | null = null
    for (let i = 0; i < args.length; i++) {
      const m = /^--max[-_]semi[-_]space[-_]size(?:=(\d+))?$/.exec(args[i]!)
      if (m === null) continue
      const value = m[1] ?? args[i + 1]
      if (value !== undefined && /^\d+$/.test(value)) found = Number(value)
    }
    return found
  }
  return find(execArgv) ?? find(nodeOptions.split(/\s+/).filter(a => a !== ''))
}
