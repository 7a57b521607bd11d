import vm from 'node:vm'

/*
 * Which policies need a watchdog on each evaluation, and the watchdog.
 *
 * The only way Node offers to cut a synchronous evaluation short on the thread that runs it is V8's
 * TerminateExecution, reached through `vm`'s `timeout`; it also interrupts a loop inside WebAssembly.
 * Its price is a watchdog thread started and joined per call, ~85 µs (bench/POLICY-ENGINE.md), seven
 * times a whole evaluation. So it guards only modules that can run long on a small input: those
 * calling a builtin whose running time is not bounded by the size of its arguments. Every other
 * evaluation costs at most a small polynomial in the input, and the edge limits bound the input.
 */

/** What the gateway uses of the WebAssembly global, which TypeScript declares only in its DOM lib. */
export interface CompiledModule { readonly __compiledWasmModule: never }
export const wasm = (globalThis as unknown as { WebAssembly: {
  compile: (bytes: Uint8Array) => Promise<CompiledModule>
  Module: { customSections: (module: CompiledModule, name: string) => ArrayBuffer[] }
  RuntimeError: new () => Error
} }).WebAssembly

/**
 * Builtins compiled into the module (by their function names in the WASM name section) whose time
 * does not follow from their input's size, and why.
 */
const RISKY_NATIVE: ReadonlyMap<string, string> = new Map([
  // opa_strings_replace never advances on an empty pattern: replace(s, "", x) does not return.
  ['opa_strings_replace', 'replace'],
  // Time grows with the numbers' values: numbers.range(0, 1e6) takes over a second.
  ['opa_numbers_range', 'numbers.range']
  // Not sprintf, although "%100000000d" takes seconds: the width is in the format, which policies
  // write as a literal, and guarding sprintf would guard nearly every bundle (the shipped one too).
])

/**
 * The risky builtins a module includes, sorted; null when the module has no function names to tell
 * by (a stripped module), in which case the caller guards it like a risky one. `opa build` leaves out
 * the builtins nothing calls, but one builtin may use another inside (json.remove's path handling
 * includes replace), so this can guard more than needed, never less.
 */
export function riskyBuiltins (module: CompiledModule): string[] | null {
  const sections = wasm.Module.customSections(module, 'name')
  if (sections.length === 0) return null
  const found = new Set<string>()
  for (const name of functionNames(new Uint8Array(sections[0]!))) {
    const builtin = RISKY_NATIVE.get(name)
    if (builtin !== undefined) found.add(builtin)
  }
  return [...found].sort()
}

/**
 * Function names from a WASM name section (subsection 1, a name map). Hand-written: it is the one
 * part of the format needed here, and no dependency of the gateway reads WASM.
 */
function functionNames (bytes: Uint8Array): string[] {
  let at = 0
  const u32 = (): number => {
    let result = 0
    let shift = 0
    for (;;) {
      if (at >= bytes.length) throw new Error('WASM name section is truncated')
      const b = bytes[at++]!
      result += (b & 0x7f) * 2 ** shift
      if ((b & 0x80) === 0) return result
      shift += 7
    }
  }
  const decoder = new TextDecoder()
  const names: string[] = []
  while (at < bytes.length) {
    const id = bytes[at++]!
    const size = u32()
    const end = at + size
    if (id === 1) {
      for (let n = u32(); n > 0; n--) {
        u32() // function index
        const length = u32()
        names.push(decoder.decode(bytes.subarray(at, at + length)))
        at += length
      }
    }
    at = end
  }
  return names
}

export const TIMEOUT_CODE = 'ERR_SCRIPT_EXECUTION_TIMEOUT'

/**
 * Runs `fn` so that it is stopped after `timeoutMs` with an error whose code is TIMEOUT_CODE. The
 * context and script are made once; only the watchdog thread is per call (Node has no other way).
 */
export function createWatchdog (timeoutMs: number): <T>(fn: () => T) => T {
  const context = vm.createContext({ job: undefined as (() => unknown) | undefined })
  const script = new vm.Script('job()', { filename: 'portcullis-policy-watchdog' })
  return <T>(fn: () => T): T => {
    context.job = fn
    try {
      return script.runInContext(context, { timeout: timeoutMs }) as T
    } finally {
      context.job = undefined
    }
  }
}
