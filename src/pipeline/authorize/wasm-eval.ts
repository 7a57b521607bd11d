import type { LoadedPolicy } from '@open-policy-agent/opa-wasm'
import { LRUCache } from 'lru-cache'

/*
 * One evaluation through OPA's WASM ABI 1.2 entry point `opa_eval`, as the SDK's own fast path
 * makes it, without the copies the SDK makes per call: the input's JSON is written straight into the
 * module's memory (the SDK encodes it into a new array, then copies that in), the result's end is
 * found by a native search (the SDK walks the bytes in JavaScript) and decoded from a view kept across
 * calls. The caller serialises the input once and may evaluate it more than once (the shadow policy
 * judges the same bytes as the active one).
 *
 * A policy's results repeat (the same allow, reasons and headers for a caller on a route), so each
 * distinct result text is parsed once and the value shared by every evaluation that returns it: a
 * lookup of the text instead of JSON.parse and a new object graph per request. Shared values are
 * frozen, so a caller that tried to change one would throw instead of changing another request's.
 */

/**
 * The entrypoint's result set for an input given as JSON text: `[{"result": ...}]`, or [] when
 * undefined; deeply frozen. An empty text is no input (`input` undefined in the policy).
 */
export type JsonEvaluation = (inputJson: string, entrypoint: number) => unknown

// What the SDK keeps on a loaded policy; its types do not declare these.
interface SdkPolicy {
  minorVersion: number
  dataAddr: number
  dataHeapPtr: number
  mem: { buffer: ArrayBuffer, grow: (pages: number) => number }
  wasmInstance: { exports: { opa_eval?: (...args: number[]) => number } }
}

/** The NUL-terminated UTF-8 text at `at` in a module's memory (OPA's ABI returns JSON so), without a copy. */
export function nulTerminated (memory: Buffer, at: number): string {
  return memory.toString('utf8', at, memory.indexOf(0, at))
}

const PAGE = 64 * 1024
// Distinct result texts kept parsed (the least recently returned forgotten first), and the longest kept.
const RESULTS_KEPT = 1024
const LONGEST_KEPT = 4096

/** `value` and everything in it frozen; returned for chaining. */
export function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}
// opa_eval's format argument: 0 asks for the result as JSON text.
const FORMAT_JSON = 0

export function jsonEvaluation (policy: LoadedPolicy): JsonEvaluation {
  const p = policy as unknown as SdkPolicy
  const opaEval = p.wasmInstance.exports.opa_eval
  // The pinned OPA builds ABI 1.2 or later; an older module is a bundle built by another OPA.
  if (p.minorVersion < 2 || opaEval === undefined) throw new Error(`the policy module has OPA WASM ABI 1.${p.minorVersion}; the gateway needs 1.2 or later (build it with the pinned opa: portcullis policy build)`)
  let view = Buffer.from(p.mem.buffer)
  // Growing the memory detaches its buffer (a view of it then has length 0) and makes a new one. Asked
  // only then: reading `buffer` off the memory object costs more than the check.
  const current = (): Buffer => view.length === 0 ? (view = Buffer.from(p.mem.buffer)) : view
  const parsed = new LRUCache<string, object>({ max: RESULTS_KEPT })
  return (inputJson, entrypoint) => {
    const at = p.dataHeapPtr
    // UTF-8 takes at most three bytes per UTF-16 unit: room for the worst case, then the exact write.
    const short = at + inputJson.length * 3 - current().length
    if (short > 0) p.mem.grow(Math.ceil(short / PAGE))
    const length = current().write(inputJson, at, 'utf8')
    // The evaluation's heap starts after the input; every call reuses the same space.
    // Address 0 and length 0 is no input at all, as the SDK passes it (an empty string is one).
    const resultAt = opaEval(0, entrypoint, p.dataAddr, length === 0 ? 0 : at, length, at + length, FORMAT_JSON)
    const text = nulTerminated(current(), resultAt)
    let value = parsed.get(text)
    if (value === undefined) {
      value = deepFreeze(JSON.parse(text) as object) // a result set: always an array
      if (text.length <= LONGEST_KEPT) parsed.set(text, value)
    }
    return value
  }
}
