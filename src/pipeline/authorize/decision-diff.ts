import type { DifferenceKind } from '../../observability/shadow-metrics.js'
import type { Decision } from '../types.js'
import { toDecision } from './decision.js'

/*
 * How two policies' answers to one input differ, as a user of the gateway would notice: the shadow
 * policy (shadow.ts) and `portcullis policy replay` (policy-replay.ts) both judge by this. A value
 * that is no decision (undefined, malformed) is refused by the gateway, so it counts as a deny.
 */

/** What differs between the two answers; empty when a client and the function would see the same. */
export function decisionDifferences (before: unknown, after: unknown): DifferenceKind[] {
  const a = toDecision(before)
  const b = toDecision(after)
  const allowA = a?.allow === true
  const allowB = b?.allow === true
  if (allowA !== allowB) return [allowA ? 'allow_to_deny' : 'deny_to_allow']
  const kinds: DifferenceKind[] = []
  if (!allowA && statusOf(a) !== statusOf(b)) kinds.push('status')
  if (!sameHeaders(a, b, allowA)) kinds.push('headers')
  if (allowA && !sameRecord(a?.rateLimit, b?.rateLimit)) kinds.push('rate_limit')
  return kinds
}

// The status a denied client gets: the policy's, 403 by default, 500 for a malformed decision.
function statusOf (d: Decision | null): number {
  return d === null ? 500 : d.status ?? 403
}

// A denied request sends the policy's client headers only; an allowed one sends both sides.
function sameHeaders (a: Decision | null, b: Decision | null, allowed: boolean): boolean {
  if (!sameRecord(a?.headers.client, b?.headers.client)) return false
  return !allowed || sameRecord(a?.headers.upstream, b?.headers.upstream)
}

// Headers and rate-limit hints are flat: string or number values only (decision.ts).
function sameRecord (a: object | undefined, b: object | undefined): boolean {
  const x = (a ?? {}) as Record<string, unknown>
  const y = (b ?? {}) as Record<string, unknown>
  const keys = Object.keys(x)
  return keys.length === Object.keys(y).length && keys.every(k => Object.hasOwn(y, k) && x[k] === y[k])
}
