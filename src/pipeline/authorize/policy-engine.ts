import type { LoadedPolicy } from '@open-policy-agent/opa-wasm'
import type { Bundle } from './bundle.js'
import { GATEWAY_BUILTINS, loadPolicySync, PROVIDED_BUILTINS } from './builtins.js'
import { createWatchdog, riskyBuiltins, TIMEOUT_CODE, wasm } from './evaluation-guard.js'
import { jsonEvaluation, nulTerminated, type JsonEvaluation } from './wasm-eval.js'

/*
 * One compiled policy, evaluated synchronously per request on an instance of its compiled module.
 * Builtins the WASM SDK does not implement but gateway policies need are supplied here. A policy that calls any other
 * builtin that is not compiled into the WASM itself (http.send, net.*, ...) is refused when it is
 * loaded, by `portcullis policy build` and by the gateway, never at request time.
 */

export interface PolicyEngine {
  readonly revision: string
  /** The default entrypoint; routes may name others, all checked when the bundle was loaded. */
  readonly entrypoint: string
  /** The entrypoint's value for this input, or undefined when the policy leaves it undefined. */
  evaluate: (input: unknown, entrypoint?: string) => unknown
  /** The same for an input already serialised (JSON.stringify of it): the request path serialises once. */
  evaluateJson: (inputJson: string, entrypoint?: string) => unknown
  /**
   * The policy's own decision-log masks (OPA's `system.log.mask`, evaluated with the event as
   * input), or null when the bundle has no such entrypoint.
   */
  logMask: ((event: { input: unknown, result: unknown }) => unknown) | null
  /** Why each evaluation runs under the watchdog (policy.evaluationTimeoutMs), or null when it does not. */
  readonly guardedBecause: string | null
}

/** Built with `opa build -e system/log/mask`, as OPA's convention for masking decision logs. */
export const LOG_MASK_ENTRYPOINT = 'system/log/mask'

// Host builtins (the gateway's, then the SDK's less the refused) and the loader: builtins.ts.
const gatewayBuiltins = GATEWAY_BUILTINS
export { PROVIDED_BUILTINS }

// The SDK keeps these on the loaded policy; its types do not declare them.
interface PolicyInstance { wasmInstance: { exports: unknown }, mem: { buffer: ArrayBuffer } }

/**
 * The builtins the module calls out for (its `builtins` export, per OPA's WASM ABI): everything it
 * needs that OPA did not compile into the module.
 */
export function hostBuiltins (policy: LoadedPolicy): string[] {
  const { wasmInstance, mem } = policy as unknown as PolicyInstance
  const exports = wasmInstance.exports as Record<string, (...args: number[]) => number>
  const addr = exports.opa_json_dump!(exports.builtins!())
  return Object.keys(JSON.parse(nulTerminated(Buffer.from(mem.buffer), addr)) as Record<string, number>)
}

export type EngineFault = 'trap' | 'abort' | 'timeout' | 'error'

/** An evaluation that did not finish; the instance it ran on has been discarded. */
export class PolicyEvaluationFault extends Error {
  constructor (readonly reason: EngineFault, cause: unknown) {
    super(`policy evaluation ${reason === 'timeout' ? 'timed out' : `failed (${reason})`}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
    this.name = 'PolicyEvaluationFault'
  }
}

export const DEFAULT_EVALUATION_TIMEOUT_MS = 100

export interface PolicyEngineOptions {
  /** Longest a guarded evaluation may run before it is stopped. */
  timeoutMs?: number
  /** `risky`: only modules that call a risky builtin are guarded (evaluation-guard.ts); `always`: all. */
  guard?: 'risky' | 'always'
  /** Told each time an instance is discarded, after the evaluation that faulted on it. */
  onReset?: (reason: EngineFault, err: unknown) => void
}

/**
 * `entrypoints`: the default first, then any others routes use; each must be in the bundle.
 *
 * The module is compiled once. An evaluation that throws (a trap, OPA's abort, a builtin's error, the
 * watchdog) may leave the instance's memory in any state (json.is_valid("true") does, and every later
 * evaluation on it fails), so that instance is dropped, whatever the cause, and a fresh one is made
 * from the compiled module right after the failed request has its answer. A request that arrives
 * before then makes it itself; either way the next request is judged by a clean instance.
 */
export async function createPolicyEngine (bundle: Bundle, entrypoints: string | readonly string[], opts: PolicyEngineOptions = {}): Promise<PolicyEngine> {
  const wanted = typeof entrypoints === 'string' ? [entrypoints] : entrypoints
  const module = await wasm.compile(bundle.wasm)
  // Serialised once: every new instance reads the same bytes (the SDK reads a whole ArrayBuffer).
  const json = new TextEncoder().encode(JSON.stringify(bundle.data))
  const data = json.buffer.slice(json.byteOffset, json.byteOffset + json.byteLength)
  const load = (): LoadedPolicy => {
    const p = loadPolicySync(module, undefined, gatewayBuiltins)
    p.setData(data)
    return p
  }
  const instantiate = (): JsonEvaluation => jsonEvaluation(load())
  const first = load()
  let policy: JsonEvaluation | null = jsonEvaluation(first)
  const host = hostBuiltins(first)
  const missing = host.filter(b => !PROVIDED_BUILTINS.has(b))
  if (missing.length > 0) throw new Error(`policy uses builtins the gateway does not provide: ${missing.sort().join(', ')}`)
  const available = first.entrypoints as Record<string, number>
  for (const e of wanted) {
    if (!(e in available)) throw new Error(`bundle has no entrypoint "${e}" (it has: ${Object.keys(available).join(', ') || 'none'})`)
  }
  const risky = riskyBuiltins(module)
  const guardedBecause = opts.guard === 'always'
    ? 'policy.evaluationGuard is always'
    : risky === null ? 'the module has no function names to check' : risky.length > 0 ? `the module includes ${risky.join(', ')}` : null
  const guard = guardedBecause === null ? null : createWatchdog(opts.timeoutMs ?? DEFAULT_EVALUATION_TIMEOUT_MS)

  const replace = (): void => {
    try {
      policy ??= instantiate()
    } catch {} // the next evaluation tries again, and fails closed if it cannot
  }
  const run = (inputJson: string, id: number): unknown => {
    const p = policy ?? (policy = instantiate())
    try {
      const results = (guard === null ? p(inputJson, id) : guard(() => p(inputJson, id))) as Array<{ result: unknown }> | undefined
      return results?.[0]?.result
    } catch (err) {
      const reason = faultOf(err)
      if (policy === p) {
        policy = null
        setImmediate(replace)
      }
      opts.onReset?.(reason, err)
      throw new PolicyEvaluationFault(reason, err)
    }
  }

  const ids = new Map(wanted.map(e => [e, available[e]!]))
  const entrypoint = wanted[0]!
  const maskId = available[LOG_MASK_ENTRYPOINT]
  const evaluateJson = (inputJson: string, name = entrypoint): unknown => {
    const id = ids.get(name)
    if (id === undefined) throw new Error(`entrypoint "${name}" was not checked when the bundle was loaded`)
    return run(inputJson, id)
  }
  return {
    revision: bundle.revision,
    entrypoint,
    guardedBecause,
    logMask: maskId === undefined ? null : event => run(serialise(event), maskId),
    evaluate: (input, name) => evaluateJson(serialise(input), name),
    evaluateJson
  }
}

// As the SDK did: an undefined input is no input (an empty string parses as nothing in OPA's eval).
function serialise (input: unknown): string {
  return input === undefined ? '' : JSON.stringify(input)
}

function faultOf (err: unknown): EngineFault {
  if ((err as { code?: unknown } | null)?.code === TIMEOUT_CODE) return 'timeout'
  if (err instanceof wasm.RuntimeError) return 'trap'
  // The SDK throws opa_abort's message as a bare string. Rego's own runtime errors (a conflict between
  // rule values) come that way too, located in the source ("authz.rego:5:1: var assignment
  // conflict"): those are the policy's errors, which opa eval reports as well. The rest are the
  // runtime giving up (format_int of 1e30: "strings: get uint failed").
  if (typeof err === 'string') return /^\S+:\d+:\d+: /.test(err) ? 'error' : 'abort'
  return 'error'
}
