import type { PolicyEngine } from './policy-engine.js'

/**
 * The masks a policy asks for in its decision logs (system.log.mask), or undefined when it has no
 * mask policy. A mask policy that fails masks everything it could have meant: input and result are
 * both left out, rather than risk logging what it should have hidden.
 */
export function policyMasks (engine: PolicyEngine, input: unknown, result: unknown, onError: (err: unknown) => void): unknown {
  if (engine.logMask === null) return undefined
  try {
    return engine.logMask({ input, result }) ?? []
  } catch (err) {
    onError(err)
    return ['/input', '/result']
  }
}
