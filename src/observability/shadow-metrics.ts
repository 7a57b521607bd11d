import { Counter, Gauge, type Registry } from 'prom-client'

/*
 * The shadow policy's metrics (pipeline/authorize/shadow.ts), part of the process's metrics: like
 * them they outlive config reloads, and so do the tallies per shadow revision that /status shows.
 * Labels are bounded: route ids come from config, kinds and outcomes from the fixed sets below.
 */

export const DIFFERENCE_KINDS = ['allow_to_deny', 'deny_to_allow', 'status', 'headers', 'rate_limit'] as const
export type DifferenceKind = typeof DIFFERENCE_KINDS[number]
export type ShadowOutcome = 'same' | 'different' | 'dropped' | 'error' | 'timeout' | 'not_ready'

export interface ShadowTally {
  revision: string
  first_seen: string
  outcomes: Record<ShadowOutcome, number>
  differences: Record<DifferenceKind, number>
}

// Shadow revisions whose tallies /status keeps; the oldest goes first.
const REVISIONS_KEPT = 8

export function createShadowMetrics (registers: Registry[]) {
  const tallies = new Map<string, ShadowTally>()
  const tally = (revision: string): ShadowTally => {
    let t = tallies.get(revision)
    if (t === undefined) {
      t = {
        revision,
        first_seen: new Date().toISOString(),
        outcomes: { same: 0, different: 0, dropped: 0, error: 0, timeout: 0, not_ready: 0 },
        differences: { allow_to_deny: 0, deny_to_allow: 0, status: 0, headers: 0, rate_limit: 0 }
      }
      tallies.set(revision, t)
      if (tallies.size > REVISIONS_KEPT) tallies.delete(tallies.keys().next().value!)
    }
    return t
  }
  const evaluations = new Counter({
    name: 'portcullis_policy_shadow_evaluations_total',
    help: 'Decisions offered to the shadow policy (policy.shadow), by outcome: same, different, dropped (queue full), error, timeout, not_ready (no shadow bundle loaded)',
    labelNames: ['outcome'] as const,
    registers
  })
  const differences = new Counter({
    name: 'portcullis_policy_shadow_differences_total',
    help: 'Decisions the shadow policy would have made differently, by route and kind (allow_to_deny, deny_to_allow, status, headers, rate_limit); one decision may differ in several kinds',
    labelNames: ['route', 'kind'] as const,
    registers
  })
  return {
    differences,
    bundleInfo: new Gauge({
      name: 'portcullis_policy_shadow_bundle_info',
      help: 'The shadow policy bundle: one series, value 1, labelled with its revision (replaced on each activation)',
      labelNames: ['revision'] as const,
      registers
    }),
    bundleLoadFailures: new Counter({
      name: 'portcullis_policy_shadow_bundle_load_failures_total',
      help: 'Shadow policy bundles that failed to load and were not activated',
      registers
    }),
    /** Counts one outcome, also in the tally of the shadow revision it belongs to (none: no bundle). */
    outcome (outcome: ShadowOutcome, revision: string | null): void {
      evaluations.inc({ outcome })
      if (revision !== null) tally(revision).outcomes[outcome]++
    },
    difference (route: string, kind: DifferenceKind, revision: string): void {
      differences.inc({ route, kind })
      tally(revision).differences[kind]++
    },
    /** The tallies per shadow revision, oldest first (copies). */
    tallies: (): ShadowTally[] => [...tallies.values()].map(t => structuredClone(t))
  }
}

export type ShadowMetrics = ReturnType<typeof createShadowMetrics>
