import type { Decision, RateLimitHint } from '../types.js'
import { deepFreeze } from './wasm-eval.js'

const HEADER_NAME = /^[a-z0-9!#$%&'*+.^_`|~-]+$/
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/
// Headers a policy may never set: framing, routing and the gateway's own identity headers.
const RESERVED = /^(host|content-length|transfer-encoding|connection|keep-alive|upgrade|te|trailer|proxy-.*|authorization|x-forwarded-.*|forwarded|x-portcullis-(subject|issuer|request-id|decision-id))$/

/**
 * Turns whatever the entrypoint returned into a Decision, or null when it is not a usable one.
 * A bare boolean means `{allow: <bool>}`. Anything malformed, including undefined, is null and denies.
 */
export function toDecision (value: unknown): Decision | null {
  if (typeof value === 'boolean') return { allow: value, reasons: [], headers: { upstream: {}, client: {} } }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null
  const v = value as Record<string, unknown>
  if (typeof v.allow !== 'boolean') return null
  const reasons = v.reasons === undefined ? [] : v.reasons
  if (!Array.isArray(reasons) || !reasons.every(r => typeof r === 'string')) return null
  const decision: Decision = { allow: v.allow, reasons, headers: { upstream: {}, client: {} } }
  if (v.status !== undefined) {
    if (typeof v.status !== 'number' || !Number.isInteger(v.status) || v.status < 400 || v.status > 499) return null
    decision.status = v.status
  }
  if (v.message !== undefined) {
    if (typeof v.message !== 'string' || v.message.length > 200) return null
    decision.message = v.message
  }
  if (v.headers !== undefined) {
    if (v.headers === null || typeof v.headers !== 'object' || Array.isArray(v.headers)) return null
    const h = v.headers as Record<string, unknown>
    for (const side of ['upstream', 'client'] as const) {
      const parsed = parseHeaders(h[side])
      if (parsed === null) return null
      decision.headers[side] = parsed
    }
  }
  if (v.rateLimit !== undefined) {
    const hint = parseRateLimitHint(v.rateLimit)
    if (hint === null) return null
    decision.rateLimit = hint
  }
  return decision
}

/**
 * toDecision for the values the policy engine returns, which are frozen and shared by the evaluations
 * that return the same result (wasm-eval.ts): each value is judged once, and its Decision, frozen too,
 * shared as well. Per gateway generation; the values are held weakly.
 */
export function createDecisionReader (): (value: unknown) => Decision | null {
  const judged = new WeakMap<object, Decision | null>()
  const allow = deepFreeze(toDecision(true))
  const deny = deepFreeze(toDecision(false))
  return value => {
    if (typeof value === 'boolean') return value ? allow : deny
    if (value === null || typeof value !== 'object') return null
    let decision = judged.get(value)
    if (decision === undefined) judged.set(value, decision = deepFreeze(toDecision(value)))
    return decision
  }
}

/** `{key?, cost?, tier?}`: a non-empty key and tier of bounded length, a positive integer cost. */
function parseRateLimitHint (value: unknown): RateLimitHint | null {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null
  const { key, cost, tier, ...rest } = value as Record<string, unknown>
  if (Object.keys(rest).length > 0) return null
  const hint: RateLimitHint = {}
  if (key !== undefined) {
    if (typeof key !== 'string' || key.length === 0 || key.length > 256) return null
    hint.key = key
  }
  if (cost !== undefined) {
    if (typeof cost !== 'number' || !Number.isSafeInteger(cost) || cost < 1) return null
    hint.cost = cost
  }
  if (tier !== undefined) {
    if (typeof tier !== 'string' || !/^[a-z0-9][a-z0-9_-]{0,62}$/.test(tier)) return null
    hint.tier = tier
  }
  return hint
}

function parseHeaders (value: unknown): Record<string, string> | null {
  if (value === undefined) return {}
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return null
  const out: Record<string, string> = {}
  for (const [rawName, v] of Object.entries(value)) {
    const name = rawName.toLowerCase()
    if (!HEADER_NAME.test(name) || RESERVED.test(name) || typeof v !== 'string' || !HEADER_VALUE.test(v)) return null
    out[name] = v
  }
  return out
}
