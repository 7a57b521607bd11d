import { loadPolicy } from '@open-policy-agent/opa-wasm'
import type { Bundle } from './bundle.js'

/*
 * One compiled policy, instantiated once and evaluated synchronously per request. Builtins the WASM
 * SDK does not implement but gateway policies need are supplied here (and declared in
 * policies/capabilities.json so a policy using anything else fails at `opa build`, not at runtime).
 */

export interface PolicyEngine {
  readonly revision: string
  readonly entrypoint: string
  /** The entrypoint's value for this input, or undefined when the policy leaves it undefined. */
  evaluate: (input: unknown) => unknown
}

const gatewayBuiltins = {
  'time.now_ns': () => Date.now() * 1_000_000
}

export async function createPolicyEngine (bundle: Bundle, entrypoint: string): Promise<PolicyEngine> {
  const policy = await loadPolicy(bundle.wasm, undefined, gatewayBuiltins)
  const entrypoints = policy.entrypoints as Record<string, number>
  if (!(entrypoint in entrypoints)) {
    throw new Error(`bundle has no entrypoint "${entrypoint}" (it has: ${Object.keys(entrypoints).join(', ') || 'none'})`)
  }
  policy.setData(bundle.data)
  const id = entrypoints[entrypoint]
  return {
    revision: bundle.revision,
    entrypoint,
    evaluate (input) {
      const results = policy.evaluate(input, id) as Array<{ result: unknown }> | undefined
      return results?.[0]?.result
    }
  }
}
