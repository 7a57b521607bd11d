import type { LoadedPolicy } from '@open-policy-agent/opa-wasm'
import type { Bundle } from './bundle.js'
import { GATEWAY_BUILTINS, loadPolicy, PROVIDED_BUILTINS } from './builtins.js'

/*
 * One compiled policy, instantiated once and evaluated synchronously per request. Builtins the WASM
 * SDK does not implement but gateway policies need are supplied here. A policy that calls any other
 * builtin that is not compiled into the WASM itself (http.send, net.*, ...) is refused when it is
 * loaded, by `portcullis policy build` and by the gateway, never at request time.
 */

export interface PolicyEngine {
  readonly revision: string
  /** The default entrypoint; routes may name others, all checked when the bundle was loaded. */
  readonly entrypoint: string
  /** The entrypoint's value for this input, or undefined when the policy leaves it undefined. */
  evaluate: (input: unknown, entrypoint?: string) => unknown
  /**
   * The policy's own decision-log masks (OPA's `system.log.mask`, evaluated with the event as
   * input), or null when the bundle has no such entrypoint.
   */
  logMask: ((event: { input: unknown, result: unknown }) => unknown) | null
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
  const bytes = new Uint8Array(mem.buffer, addr)
  const json = Buffer.from(bytes.subarray(0, bytes.indexOf(0))).toString('utf8')
  return Object.keys(JSON.parse(json) as Record<string, number>)
}

/** `entrypoints`: the default first, then any others routes use; each must be in the bundle. */
export async function createPolicyEngine (bundle: Bundle, entrypoints: string | readonly string[]): Promise<PolicyEngine> {
  const wanted = typeof entrypoints === 'string' ? [entrypoints] : entrypoints
  const policy = await loadPolicy(bundle.wasm, undefined, gatewayBuiltins)
  const missing = hostBuiltins(policy).filter(b => !PROVIDED_BUILTINS.has(b))
  if (missing.length > 0) throw new Error(`policy uses builtins the gateway does not provide: ${missing.sort().join(', ')}`)
  const available = policy.entrypoints as Record<string, number>
  for (const e of wanted) {
    if (!(e in available)) throw new Error(`bundle has no entrypoint "${e}" (it has: ${Object.keys(available).join(', ') || 'none'})`)
  }
  policy.setData(bundle.data)
  const ids = new Map(wanted.map(e => [e, available[e]!]))
  const entrypoint = wanted[0]!
  const maskId = available[LOG_MASK_ENTRYPOINT]
  return {
    revision: bundle.revision,
    entrypoint,
    logMask: maskId === undefined
      ? null
      : event => (policy.evaluate(event, maskId) as Array<{ result: unknown }> | undefined)?.[0]?.result,
    evaluate (input, name = entrypoint) {
      const id = ids.get(name)
      if (id === undefined) throw new Error(`entrypoint "${name}" was not checked when the bundle was loaded`)
      const results = policy.evaluate(input, id) as Array<{ result: unknown }> | undefined
      return results?.[0]?.result
    }
  }
}
