import { setFlagsFromString } from 'node:v8'

/*
 * The Node flags the gateway is meant to run with, and whether it does. A proxy allocates per request
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
  const find = (args: readonly string[]): number | null => lastFlag(args, /^--max[-_]semi[-_]space[-_]size(?:=(\d+))?$/, (m, next) => {
    const value = m[1] ?? next
    return value !== undefined && /^\d+$/.test(value) ? Number(value) : null
  })
  return find(execArgv) ?? find(nodeOptions.split(/\s+/).filter(a => a !== ''))
}

/** The value `read` gives the last argument matching `flag` (V8 and Node: the last one counts), or null. */
function lastFlag<T> (args: readonly string[], flag: RegExp, read: (m: RegExpExecArray, next: string | undefined) => T | null): T | null {
  let found: T | null = null
  for (let i = 0; i < args.length; i++) {
    const m = flag.exec(args[i]!)
    if (m !== null) found = read(m, args[i + 1]) ?? found
  }
  return found
}

/*
 * V8's allocation-site pretenuring, off. V8 watches how many objects of each literal in the code
 * survive a scavenge and, past 85 %, allocates that literal's objects straight in the old generation.
 * Under load it decided so for literals of the request path (88 of them in one 6-second run, traced
 * with --trace-pretenuring), whose objects die with their request: they then filled the old
 * generation, every old object pointing at a young one made the scavenges slow (15 ms instead of 2),
 * and a mark-compact came every two seconds. Measured with --trace-gc (scenario 4's config, 50
 * connections, ES256, one CPU; the same machine, runs side by side): Node 20, 5,030 against 6,449
 * requests/s, 198 against 155 µs of CPU per request and 279 against 199 MiB resident; Node 24, 172–188
 * against 144–148 µs and 328–335 against 277–293 MiB; a mark-compact or two every 5 s against none.
 * Unlike the semi-space size it is read while the process runs, and NODE_OPTIONS does not accept it,
 * so the gateway sets it itself when it starts serving, unless its command line names it either way.
 */
const PRETENURING = /^--(no[-_])?allocation[-_]site[-_]pretenuring$/

/** What `execArgv` says of pretenuring (the last mention counts), or null when it says nothing. */
export function pretenuringNamed (execArgv: readonly string[] = process.execArgv): boolean | null {
  return lastFlag(execArgv, PRETENURING, m => m[1] === undefined)
}

/** Turns pretenuring off unless `execArgv` names it; whether it is on afterwards. */
export function tuneAllocationSitePretenuring (execArgv: readonly string[] = process.execArgv): boolean {
  const named = pretenuringNamed(execArgv)
  if (named !== null) return named
  setFlagsFromString('--no-allocation-site-pretenuring')
  return false
}
