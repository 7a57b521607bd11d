import { writeFile } from 'node:fs/promises'
import type { Episode } from './chaos-faults.js'
import { DECLARED_MODES, type Judgement } from './chaos-rules.js'
import { describe, type PlannedFault } from './chaos-schedule.js'
import type { Answer } from './chaos-traffic.js'

/*
 * What `npm run chaos` prints and writes: every answer outside the declared failure modes, counts
 * per class, and RSS of each gateway process before and after. bench/CHAOS.md for people,
 * bench/chaos.json for tools (the outside answers in full; the others only counted).
 */

export interface RssSample { process: string, pid: number, mib: number }

export interface ChaosRun {
  command: string
  seed: number
  durationS: number
  rate: number
  date: string
  plan: PlannedFault[]
  episodes: Episode[]
  judged: Array<{ answer: Answer, judgement: Judgement }>
  skipped: number
  rss: { before: RssSample[], after: RssSample[] }
  /** Warnings and errors the gateways logged, counted by replica and message. */
  logged: Array<[string, number]>
  /** Cluster workers that exited other than by the run's own SIGKILL. */
  unexpectedExits: string[]
  /** /readyz other than 200, and the store reported down, sampled once a second. */
  notReady: string[]
  storeDown: string[]
}

export function outcome (a: Answer): string {
  return a.error !== null ? `error ${a.error.split(':')[0]}` : `${a.status}${a.code !== null ? ` ${a.code}` : ''}`
}

export function answerLine (a: Answer, j: Judgement): string {
  const faults = j.faults.length > 0 ? [...new Set(j.faults)].join(',') : 'none'
  return `t=${(a.t0 / 1000).toFixed(3).padStart(8)} s  ${a.replica}  ${a.kind.padEnd(11)}  kid=${(a.kid ?? '-').padEnd(7)}  faults=${faults.padEnd(22)}  ${a.error ?? `${a.status} ${a.code ?? ''}`}  (${a.t1 - a.t0} ms)`
}

function count<T> (items: T[], key: (t: T) => string): Array<[string, number]> {
  const m = new Map<string, number>()
  for (const i of items) m.set(key(i), (m.get(key(i)) ?? 0) + 1)
  return [...m.entries()].sort((a, b) => b[1] - a[1])
}

export function summary (run: ChaosRun) {
  return {
    answers: run.judged.length,
    byVerdict: Object.fromEntries(count(run.judged, j => j.judgement.verdict)),
    byMode: count(run.judged.filter(j => j.judgement.verdict !== 'outside'), j => j.judgement.mode),
    byKind: count(run.judged, j => `${j.answer.kind} → ${outcome(j.answer)} (${j.judgement.verdict})`).sort((a, b) => a[0].localeCompare(b[0])),
    outside: run.judged.filter(j => j.judgement.verdict === 'outside')
  }
}

const rssTable = (run: ChaosRun): string => {
  const rows = new Map<string, { before?: RssSample[], after?: RssSample[] }>()
  for (const [when, samples] of [['before', run.rss.before], ['after', run.rss.after]] as const) {
    for (const s of samples) rows.set(s.process, { ...rows.get(s.process), [when]: [...(rows.get(s.process)?.[when] ?? []), s] })
  }
  const cell = (xs?: RssSample[]): string => xs === undefined ? '–' : xs.map(s => `${s.mib.toFixed(1)} (pid ${s.pid})`).join(', ')
  return [...rows.entries()].map(([name, r]) => `| ${name} | ${cell(r.before)} | ${cell(r.after)} |`).join('\n')
}

const BUCKET_S = 5

/** Answers per 5 s by class, with the faults active then: where the outside answers cluster. */
function timeline (run: ChaosRun): string {
  const rows: string[] = []
  for (let from = 0; from < run.durationS * 1000; from += BUCKET_S * 1000) {
    const to = from + BUCKET_S * 1000
    const here = run.judged.filter(j => j.answer.t0 >= from && j.answer.t0 < to)
    const n = (v: string): number => here.filter(j => j.judgement.verdict === v).length
    const faults = [...new Set(run.episodes.filter(e => e.start < to && Math.max(e.end, e.start + 1) > from).map(e => e.kind))].join(', ')
    rows.push(`| ${from / 1000}–${to / 1000} | ${here.length} | ${n('expected')} | ${n('declared')} | ${n('outside')} | ${faults} |`)
  }
  return `| s | answers | expected | declared | outside | faults (without grace) |\n|---|---|---|---|---|---|\n${rows.join('\n')}`
}

/** Counts the warn/error lines (pino JSON) of each replica's log and picks out worker exits. */
export function readGatewayLogs (logs: Array<{ replica: string, text: string, t0: number }>): Pick<ChaosRun, 'logged' | 'unexpectedExits'> {
  const counts = new Map<string, number>()
  const unexpectedExits: string[] = []
  for (const { replica, text, t0 } of logs) {
    for (const line of text.split('\n')) {
      let entry: { level?: number, msg?: string, time?: number, signal?: string | null, code?: number | null, worker?: number }
      try { entry = JSON.parse(line) } catch { continue }
      if ((entry.level ?? 0) < 40) continue
      const key = `${replica}: ${entry.msg ?? '?'}`
      counts.set(key, (counts.get(key) ?? 0) + 1)
      if (entry.msg?.startsWith('worker exited') === true && entry.signal !== 'SIGKILL') {
        unexpectedExits.push(`replica ${replica}, worker ${entry.worker ?? '?'} at t=${(((entry.time ?? t0) - t0) / 1000).toFixed(1)} s: signal ${entry.signal ?? 'none'}, exit code ${entry.code ?? 'none'}`)
      }
    }
  }
  return { logged: [...counts.entries()].sort((a, b) => b[1] - a[1]), unexpectedExits }
}

export async function writeReports (run: ChaosRun, mdFile: string, jsonFile: string): Promise<void> {
  const s = summary(run)
  const outsideLines = s.outside.map(j => answerLine(j.answer, j.judgement))
  await writeFile(jsonFile, JSON.stringify({
    command: run.command,
    seed: run.seed,
    duration_s: run.durationS,
    rate_per_s: run.rate,
    date: run.date,
    plan: run.plan,
    episodes: run.episodes,
    answers: s.answers,
    skipped: run.skipped,
    by_verdict: s.byVerdict,
    by_mode: Object.fromEntries(s.byMode),
    by_kind: Object.fromEntries(s.byKind),
    rss_mib: run.rss,
    gateway_log: Object.fromEntries(run.logged),
    unexpected_worker_exits: run.unexpectedExits,
    not_ready: run.notReady,
    store_down: run.storeDown,
    outside: s.outside.map(j => ({ ...j.answer, faults: j.judgement.faults }))
  }, null, 2) + '\n')
  const shown = 200
  await writeFile(mdFile, `# Chaos: mixed traffic against two replicas while dependencies fail

Produced by \`${run.command}\` on ${run.date.slice(0, 16).replace('T', ' ')} UTC: seed **${run.seed}**, ${run.durationS} s
of traffic at ${run.rate} requests/s over replica A (one process) and replica B (\`--workers 2\`), sharing a
redis-server, an OIDC stand-in IdP and a function behind mutual TLS, all on loopback (see
[bench/chaos.ts](chaos.ts)). Same seed, same schedule: \`npm run chaos -- --seed ${run.seed}\`.

**Answers outside the declared failure modes: ${s.outside.length}** of ${s.answers}${run.skipped > 0 ? ` (${run.skipped} requests not sent: too many in flight)` : ''}.

## Declared failure modes

| while | allowed answers |
|---|---|
${DECLARED_MODES.map(([w, a]) => `| ${w} | ${a} |`).join('\n')}

## Schedule (planned) and what happened

${run.plan.map(f => `- ${describe(f)}`).join('\n')}

| fault | from (s) | to (s) | what was done |
|---|---|---|---|
${[...run.episodes].sort((a, b) => a.start - b.start).map(e => `| ${e.kind} | ${(e.start / 1000).toFixed(1)} | ${(e.end / 1000).toFixed(1)} | ${e.detail} |`).join('\n')}

## Counts

| class | answers |
|---|---|
${Object.entries(s.byVerdict).map(([k, v]) => `| ${k} | ${v} |`).join('\n')}

| mode | answers |
|---|---|
${s.byMode.map(([k, v]) => `| ${k} | ${v} |`).join('\n')}

| request → answer (class) | answers |
|---|---|
${s.byKind.map(([k, v]) => `| ${k} | ${v} |`).join('\n')}

## Timeline

${timeline(run)}

## RSS of the gateway processes (MiB)

Before: after the quiet first seconds; after: when traffic stopped. Replica B's workers change pid
when one is killed.

| process | before | after |
|---|---|---|
${rssTable(run)}

## What the gateways logged (warn and above)

| replica: message | lines |
|---|---|
${run.logged.map(([k, v]) => `| ${k} | ${v} |`).join('\n')}

Workers that exited other than by this run's SIGKILL: ${run.unexpectedExits.length === 0 ? 'none' : `\n\n${run.unexpectedExits.map(e => `- ${e}`).join('\n')}`}

Replicas not ready (/readyz, sampled every second; reported, not judged): ${run.notReady.length === 0 ? 'never' : run.notReady.join('; ')}

Store reported down (portcullis_ratelimit_store_up below the number of processes): ${run.storeDown.length === 0 ? 'never' : run.storeDown.join('; ')}

## Answers outside the declared failure modes

${outsideLines.length === 0 ? 'None.' : `\`\`\`
${outsideLines.slice(0, shown).join('\n')}
\`\`\`
${outsideLines.length > shown ? `\n${outsideLines.length - shown} more in [chaos.json](chaos.json).\n` : ''}`}
`)
}
