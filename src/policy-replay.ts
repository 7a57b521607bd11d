import { createReadStream } from 'node:fs'
import { createInterface } from 'node:readline'
import { DIFFERENCE_KINDS, type DifferenceKind } from './observability/shadow-metrics.js'
import { readBundleFile } from './pipeline/authorize/bundle.js'
import { decisionDifferences } from './pipeline/authorize/decision-diff.js'
import { createPolicyEngine, type PolicyEngine } from './pipeline/authorize/policy-engine.js'

/*
 * `portcullis policy replay`: the inputs a gateway recorded in its decision log (OPA's event shape,
 * one JSON object a line; the stdout sink's log lines, which carry the event as `decision_log`, too)
 * judged again by another bundle, with the gateway's own engine, and compared with what was decided
 * then, as the shadow policy compares (decision-diff.ts). Masked input fields are absent from the
 * replayed input, as they were from the log; fields masked in the recorded result are left out of
 * the comparison.
 */

export interface ReplayOptions {
  decisions: string
  bundle: string
  maxDiff: number
  /** How many differing decisions to show in full. */
  examples: number
}

export interface ReplayExample {
  decision_id: string
  route: string
  request: string
  kinds: DifferenceKind[]
  recorded: unknown
  replayed: unknown
}

export interface ReplayReport {
  bundle: { file: string, revision: string }
  /** Events read from the log. */
  decisions: number
  replayed: number
  skipped: { no_input: number, failed_when_recorded: number, unreadable: number }
  /** Replayed events whose input had fields masked (removed or replaced) in the log. */
  masked_inputs: number
  /** Replayed events the new bundle could not evaluate (a deny, as the gateway would refuse). */
  evaluation_errors: number
  differences: number
  by_route: Record<string, Partial<Record<DifferenceKind, number>>>
  examples: ReplayExample[]
  max_diff: number
  passed: boolean
}

interface Event {
  decision_id?: unknown
  path?: unknown
  input?: unknown
  result?: unknown
  error?: unknown
  erased?: unknown
  masked?: unknown
}

export async function replayDecisions (opts: ReplayOptions): Promise<ReplayReport> {
  const bundle = await readBundleFile(opts.bundle)
  const engines = new Map<string, Promise<PolicyEngine>>()
  // One engine per entrypoint the log names: a bundle without one of them cannot replay it.
  const engineFor = async (entrypoint: string): Promise<PolicyEngine> => {
    let engine = engines.get(entrypoint)
    if (engine === undefined) engines.set(entrypoint, engine = createPolicyEngine(bundle, entrypoint))
    return engine
  }
  const report: ReplayReport = {
    bundle: { file: opts.bundle, revision: bundle.revision },
    decisions: 0,
    replayed: 0,
    skipped: { no_input: 0, failed_when_recorded: 0, unreadable: 0 },
    masked_inputs: 0,
    evaluation_errors: 0,
    differences: 0,
    by_route: {},
    examples: [],
    max_diff: opts.maxDiff,
    passed: true
  }
  const lines = createInterface({ input: createReadStream(opts.decisions), crlfDelay: Infinity })
  for await (const line of lines) {
    if (line.trim() === '') continue
    report.decisions++
    const event = readEvent(line)
    if (event === null || typeof event.path !== 'string') {
      report.skipped.unreadable++
      continue
    }
    if (event.error !== undefined) {
      report.skipped.failed_when_recorded++
      continue
    }
    if (event.input === undefined || event.input === null) {
      report.skipped.no_input++
      continue
    }
    const masks = [...strings(event.erased), ...strings(event.masked)]
    if (masks.some(p => p.startsWith('/input/'))) report.masked_inputs++
    report.replayed++
    const engine = await engineFor(event.path)
    let replayed: unknown
    try {
      replayed = engine.evaluate(event.input)
    } catch {
      report.evaluation_errors++
    }
    // What the log does not show of the recorded result is not compared.
    if (masks.includes('/result')) continue
    const comparable = withRecordedMasks(replayed, event.result, masks.filter(p => p.startsWith('/result/')))
    const kinds = decisionDifferences(event.result, comparable)
    if (kinds.length === 0) continue
    report.differences++
    const input = event.input as { route?: { id?: unknown }, method?: unknown, path?: unknown }
    const route = typeof input.route?.id === 'string' ? input.route.id : '(none)'
    const counts = report.by_route[route] ??= {}
    for (const kind of kinds) counts[kind] = (counts[kind] ?? 0) + 1
    if (report.examples.length < opts.examples) {
      report.examples.push({
        decision_id: typeof event.decision_id === 'string' ? event.decision_id : '',
        route,
        request: `${String(input.method)} ${String(input.path)}`,
        kinds,
        recorded: event.result,
        replayed
      })
    }
  }
  report.passed = report.differences <= opts.maxDiff
  return report
}

function readEvent (line: string): Event | null {
  try {
    const value = JSON.parse(line) as unknown
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return null
    const v = value as { decision_log?: unknown }
    const event = v.decision_log !== undefined ? v.decision_log : value
    return event !== null && typeof event === 'object' && !Array.isArray(event) ? event as Event : null
  } catch {
    return null
  }
}

function strings (value: unknown): string[] {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []
}

/** A copy of `replayed` in which each masked result path holds what the log shows there (or nothing). */
function withRecordedMasks (replayed: unknown, recorded: unknown, paths: string[]): unknown {
  if (paths.length === 0 || replayed === null || typeof replayed !== 'object') return replayed
  const copy = structuredClone(replayed) as Record<string, unknown>
  for (const pointer of paths) {
    const keys = pointer.split('/').slice(2).map(s => s.replace(/~1/g, '/').replace(/~0/g, '~'))
    const last = keys.pop()!
    let target: unknown = copy
    let source: unknown = recorded
    for (const k of keys) {
      target = isRecord(target) ? target[k] : undefined
      source = isRecord(source) ? source[k] : undefined
    }
    if (!isRecord(target)) continue
    if (isRecord(source) && Object.hasOwn(source, last)) target[last] = source[last]
    else delete target[last]
  }
  return copy
}

function isRecord (v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/** The report for people: counts first, then the first differences with both results. */
export function formatReplayReport (r: ReplayReport): string {
  const out = [`replayed ${r.replayed} of ${r.decisions} recorded decisions with ${r.bundle.file} (revision ${r.bundle.revision})`]
  const s = r.skipped
  if (s.no_input + s.failed_when_recorded + s.unreadable > 0) {
    out.push(`  skipped: ${s.no_input} without input (masked whole), ${s.failed_when_recorded} that failed when recorded, ${s.unreadable} unreadable`)
  }
  out.push(`  inputs with masked fields: ${r.masked_inputs}${r.masked_inputs > 0 ? ' (replayed without them: the log does not have them)' : ''}`)
  if (r.evaluation_errors > 0) out.push(`  evaluation errors with the new bundle: ${r.evaluation_errors} (counted as denies)`)
  out.push(`differences: ${r.differences} (--max-diff ${r.max_diff}: ${r.passed ? 'passed' : 'FAILED'})`)
  for (const [route, counts] of Object.entries(r.by_route).sort(([a], [b]) => a.localeCompare(b))) {
    out.push(`  ${route}: ${DIFFERENCE_KINDS.filter(k => counts[k] !== undefined).map(k => `${k} ${counts[k]}`).join(', ')}`)
  }
  if (r.examples.length > 0) out.push(`first ${r.examples.length} differences:`)
  for (const e of r.examples) {
    out.push(`  ${e.decision_id} ${e.route} ${e.request}: ${e.kinds.join(', ')}`)
    out.push(`    recorded: ${JSON.stringify(e.recorded) ?? 'undefined'}`)
    out.push(`    replayed: ${JSON.stringify(e.replayed) ?? 'undefined'}`)
  }
  return `${out.join('\n')}\n`
}
