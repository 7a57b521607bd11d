import { createRequire } from 'node:module'
import type { LoadedPolicy } from '@open-policy-agent/opa-wasm'
import { goSprintf } from './sprintf.js'
import { nulTerminated } from './wasm-eval.js'

/*
 * The builtins a compiled policy calls out of its WASM for, and the loader that wires them. OPA
 * compiles most builtins into the module; the rest (sprintf, regex.split, yaml.*, time.now_ns) are
 * imported from the host. Each one the gateway allows must decide exactly as `opa eval` does
 * (test/policies/builtins.test.ts compares them): where the SDK's JavaScript version does not, the
 * gateway supplies its own, and where neither can, the builtin is refused (REFUSED_BUILTINS, left
 * out of policies/capabilities.json so `opa build` rejects a policy calling it).
 */

type Builtin = (...args: unknown[]) => unknown

// The project's TypeScript lib has no WebAssembly declarations: the little this file uses.
interface WasmMemory { buffer: ArrayBuffer }
interface WasmInstance { exports: Record<string, unknown> }
interface WasmApi {
  Memory: new (descriptor: { initial: number, maximum?: number }) => WasmMemory
  instantiate: (source: unknown, imports: object) => Promise<WasmInstance | { instance: WasmInstance }>
  Instance: new (module: object, imports: object) => WasmInstance
}
const Wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly

/** The gateway's own host builtins; they take precedence over the SDK's. */
export const GATEWAY_BUILTINS: Readonly<Record<string, Builtin>> = {
  'time.now_ns': () => Date.now() * 1_000_000,
  // The SDK's sprintf is sprintf-js: C-like, throws where Go's fmt prints %!verb(...), and prints
  // arrays and objects as JavaScript does.
  sprintf: (format, values) => goSprintf(format, values)
}

/**
 * Builtins a policy may not call although the pinned OPA compiles them, each with the reason.
 * docs/policy-authoring.md lists them for authors; scripts/capabilities.ts leaves them out.
 */
export const REFUSED_BUILTINS: Readonly<Record<string, string>> = {
  'regex.split': 'the SDK splits with a JavaScript RegExp: RE2 syntax such as (?i) and (?P<name>...) fails, and capture groups end up in the result',
  'yaml.unmarshal': 'the SDK parses YAML 1.2 with the JavaScript yaml package; OPA reads numbers such as 010 as YAML 1.1 does (octal), among other differences',
  'yaml.marshal': 'the SDK writes YAML with the JavaScript yaml package, which quotes and orders differently from OPA',
  'yaml.is_valid': 'the SDK\'s YAML parser accepts and refuses different documents than OPA\'s',
  'json.is_valid': 'compiled into the WASM, where some strings (such as "true") crash the evaluation',
  'json.unmarshal': 'compiled into the WASM, which accepts "5." and fails on a lone surrogate escape ("\\ud800") where OPA decides',
  'json.marshal': 'compiled into the WASM, which keeps the key order of its input where OPA sorts keys',
  'json.remove': 'compiled into the WASM, where an empty path crashes the evaluation',
  'json.filter': 'compiled into the WASM, where an empty path crashes the evaluation',
  'to_number': 'compiled into the WASM, which fails the whole evaluation on strings such as "-" and reads "+5" differently',
  'base64.decode': 'compiled into the WASM, which accepts unpadded input and refuses the empty string, unlike OPA',
  'base64.is_valid': 'compiled into the WASM, which judges padding and non-base64 strings differently from OPA',
  'base64url.decode': 'compiled into the WASM, which decodes characters outside the base64url alphabet',
  'format_int': 'compiled into the WASM, which fails the whole evaluation for numbers beyond 64 bits',
  'replace': 'compiled into the WASM, where an empty search string never returns; use strings.replace_n',
  'indexof': 'compiled into the WASM, where indexof("", "") is 0 and OPA\'s is undefined',
  'object.union_n': 'compiled into the WASM, where object.union_n([]) is undefined and OPA\'s is {}',
  floor: 'compiled into the WASM, which rounds -0.5 down to -1 where OPA answers 0',
  ceil: 'compiled into the WASM, which rounds -0.5 up to 0 where OPA answers 1',
  round: 'compiled into the WASM, which answers a different number than OPA for numbers beyond 2^53',
  div: 'the / operator: compiled into the WASM, where 0 / 0 fails the whole evaluation (OPA: undefined) and large quotients differ in the last digit',
  'bits.rsh': 'compiled into the WASM, which is undefined for shifts beyond 64 bits and wrong for numbers beyond 64 bits',
  'glob.match': 'compiled into the WASM, which answers false for a malformed pattern where OPA fails (undefined); use startswith/endswith or regex.match',
  'regex.find_all_string_submatch_n': 'compiled into the WASM, which finds nothing for a negative count other than -1, where OPA finds all'
}

// The SDK's own JavaScript builtins, read from the SDK so the list cannot drift from the version
// installed (the package does not export the file, hence the path beside its entry point).
const require = createRequire(import.meta.url)
const sdkEntry = require.resolve('@open-policy-agent/opa-wasm')
const sdkBuiltins = require(sdkEntry.replace(/index\.cjs$/, 'builtins/index.js')) as Record<string, Builtin>
const { LoadedPolicy: LoadedPolicyClass } = require('@open-policy-agent/opa-wasm') as { LoadedPolicy: new (instance: WasmInstance, memory: WasmMemory, minorVersion: number) => LoadedPolicy }

/** Builtins a policy may call outside its WASM: the SDK's and the gateway's, less the refused. */
export const PROVIDED_BUILTINS: ReadonlySet<string> = new Set(
  [...Object.keys(sdkBuiltins), ...Object.keys(GATEWAY_BUILTINS)].filter(b => !(b in REFUSED_BUILTINS)))

/**
 * The SDK's loadPolicy, except that the gateway's builtins take precedence over the SDK's (the SDK
 * looks its own up first, so a wrong one could not be replaced) and that a host builtin that throws
 * leaves the call undefined, as a builtin error does in OPA (without strict builtin errors). The
 * glue follows OPA's WASM ABI: arguments and results cross as JSON through the module's memory.
 */
export async function loadPolicy (wasm: Uint8Array | ArrayBuffer | object, memoryDescriptor?: { initial?: number, maximum?: number }, custom: Readonly<Record<string, Builtin>> = GATEWAY_BUILTINS): Promise<LoadedPolicy> {
  const host = createHost(memoryDescriptor, custom)
  const result = await Wasm.instantiate(wasm, host.imports)
  return host.attach('instance' in result ? result.instance : result)
}

/**
 * The same from a compiled WebAssembly.Module, synchronously: the policy engine makes a fresh instance
 * on the request that needs one after a fault (policy-engine.ts).
 */
export function loadPolicySync (module: object, memoryDescriptor?: { initial?: number, maximum?: number }, custom: Readonly<Record<string, Builtin>> = GATEWAY_BUILTINS): LoadedPolicy {
  const host = createHost(memoryDescriptor, custom)
  return host.attach(new Wasm.Instance(module, host.imports))
}

function createHost (memoryDescriptor: { initial?: number, maximum?: number } | undefined, custom: Readonly<Record<string, Builtin>>) {
  const memory = new Wasm.Memory({ ...memoryDescriptor, initial: memoryDescriptor?.initial ?? 5 })
  let exports: Record<string, (...args: number[]) => number> = {}
  const names: string[] = []
  const text = (addr: number): string => nulTerminated(Buffer.from(memory.buffer), addr)
  const dump = (addr: number): unknown => JSON.parse(text(exports.opa_json_dump!(addr)))
  const load = (value: unknown): number => {
    if (value === undefined) return 0
    const bytes = Buffer.from(JSON.stringify(value), 'utf8')
    const addr = exports.opa_malloc!(bytes.byteLength)
    new Uint8Array(memory.buffer).set(bytes, addr)
    return exports.opa_json_parse!(addr, bytes.byteLength)
  }
  const call = (id: number, ...addrs: number[]): number => {
    const name = names[id]!
    const impl = custom[name] ?? (name in REFUSED_BUILTINS ? undefined : sdkBuiltins[name])
    if (impl === undefined) throw new Error(`not implemented: builtin ${name}`)
    let result: unknown
    try {
      result = impl(...addrs.map(dump))
    } catch {
      return 0
    }
    return load(result)
  }
  const imports = {
    env: {
      memory,
      // As the SDK does, the message itself is thrown (a string): policy-engine.ts tells Rego's own
      // runtime errors (located in the source) from the runtime giving up by its text.
      opa_abort: (addr: number) => { throw text(addr) },
      // As the SDK does: print() output of a policy built with it goes to stdout.
      opa_println: (addr: number) => { console.log(text(addr)) },
      opa_builtin0: (id: number) => call(id),
      opa_builtin1: (id: number, _ctx: number, a: number) => call(id, a),
      opa_builtin2: (id: number, _ctx: number, a: number, b: number) => call(id, a, b),
      opa_builtin3: (id: number, _ctx: number, a: number, b: number, c: number) => call(id, a, b, c),
      opa_builtin4: (id: number, _ctx: number, a: number, b: number, c: number, d: number) => call(id, a, b, c, d)
    }
  }
  return {
    imports,
    attach (instance: WasmInstance): LoadedPolicy {
      exports = instance.exports as typeof exports
      const abi = instance.exports.opa_wasm_abi_version as { value: number } | undefined
      if (abi?.value !== 1) throw new Error(`unsupported OPA WASM ABI version ${String(abi?.value)}`)
      const minor = (instance.exports.opa_wasm_abi_minor_version as { value: number } | undefined)?.value ?? 0
      for (const [name, id] of Object.entries(dump(exports.builtins!()) as Record<string, number>)) names[id] = name
      return new LoadedPolicyClass(instance, memory, minor)
    }
  }
}
