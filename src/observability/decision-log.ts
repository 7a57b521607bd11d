import { randomUUID } from 'node:crypto'
import { createWriteStream, readFileSync, type WriteStream } from 'node:fs'
import type { FastifyBaseLogger } from 'fastify'
import { createDecisionUploader, type UploadOptions } from './decision-upload.js'
import type { Config } from '../config/schema.js'
import type { Metrics } from './metrics.js'

/*
 * One decision-log event per policy decision, in OPA's event shape (decision_id, path, input,
 * result, bundles, timestamp, labels, metrics.timer_rego_query_eval_ns, erased), so tools built for
 * OPA's decision logs read them unchanged. Masking removes configured JSON pointers (/input/...,
 * /result/...) before an event leaves the process, and records them in `erased`, as OPA does.
 *
 * Sinks never block a request: stdout goes through the gateway's pino logger; the file sink keeps
 * at most `maxQueuedEvents` waiting for the disk and drops (and counts) the rest; the HTTP sink
 * (decision-upload.ts) uploads in batches from a buffer of the same bound.
 */

const { version: VERSION } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }

export interface DecisionEvent {
  decision_id: string
  path: string
  input: unknown
  result: unknown
  bundles: Record<string, { revision: string }>
  timestamp: string
  requested_by: string
  labels: Record<string, string>
  metrics: { timer_rego_query_eval_ns: number }
  /** Set when the policy failed: what went wrong, never the policy's text. */
  error?: { code: string, message: string }
  erased?: string[]
}

export interface DecisionLogOptions {
  stdout: boolean
  file?: string
  http?: Omit<UploadOptions, 'log' | 'metrics' | 'maxQueuedEvents'>
  mask: readonly string[]
  labels: Readonly<Record<string, string>>
  maxQueuedEvents: number
  log: FastifyBaseLogger
  metrics: Metrics
}

export interface DecisionLog {
  readonly enabled: boolean
  /** `masks`: the policy's own (system.log.mask): JSON pointer strings or {op: "remove", path}. */
  record: (event: Omit<DecisionEvent, 'labels' | 'timestamp' | 'erased'> & { masks?: unknown }) => void
  close: () => Promise<void>
}

export function createDecisionLog (opts: DecisionLogOptions): DecisionLog {
  const labels = { id: randomUUID(), version: VERSION, ...opts.labels }
  const masks = opts.mask.map(parsePointer)
  let file: WriteStream | undefined
  let queued = 0
  if (opts.file !== undefined) {
    file = createWriteStream(opts.file, { flags: 'a', mode: 0o600 })
    file.on('error', err => opts.log.error({ err: err.message }, 'decision log file failed'))
  }
  const uploader = opts.http !== undefined
    ? createDecisionUploader({ ...opts.http, maxQueuedEvents: opts.maxQueuedEvents, log: opts.log, metrics: opts.metrics })
    : undefined
  const enabled = opts.stdout || file !== undefined || uploader !== undefined

  return {
    enabled,
    record (partial) {
      if (!enabled) return
      const { masks: policyMasks, ...fields } = partial
      const all = [...masks, ...policyMaskPaths(policyMasks)]
      // Masks delete in place: they work on copies, never on the input the policy was given.
      const event: DecisionEvent = all.length === 0
        ? { ...fields, timestamp: new Date().toISOString(), labels }
        : { ...fields, input: structuredClone(fields.input), result: structuredClone(fields.result), timestamp: new Date().toISOString(), labels }
      const erased = applyMasks(event, all)
      if (erased.length > 0) event.erased = erased
      if (opts.stdout) {
        opts.log.info({ decision_log: event }, 'decision')
        opts.metrics.decisionLogEvents.inc({ sink: 'stdout', outcome: 'written' })
      }
      uploader?.push(event)
      if (file !== undefined) {
        if (queued >= opts.maxQueuedEvents || file.destroyed) {
          opts.metrics.decisionLogEvents.inc({ sink: 'file', outcome: 'dropped' })
          return
        }
        queued++
        file.write(`${JSON.stringify(event)}\n`, err => {
          queued--
          opts.metrics.decisionLogEvents.inc({ sink: 'file', outcome: err == null ? 'written' : 'dropped' })
        })
      }
    },
    async close () {
      await uploader?.close()
      if (file !== undefined) await new Promise<void>(resolve => file!.end(() => resolve()))
    }
  }
}

/**
 * What `system.log.mask` returned: a set (array) of pointers, or of `{op, path}` objects. Only
 * removal is supported; an `upsert` is read as a removal of that path, which hides at least as much.
 */
function policyMaskPaths (value: unknown): string[][] {
  if (value === undefined) return []
  if (!Array.isArray(value)) return [['input'], ['result']]
  return value.flatMap(m => {
    const path = typeof m === 'string' ? m : (m !== null && typeof m === 'object' && typeof (m as { path?: unknown }).path === 'string' ? (m as { path: string }).path : null)
    return path !== null && path.startsWith('/') ? [parsePointer(path)] : []
  })
}

/** `/input/headers/x-email` → ['input', 'headers', 'x-email'] (RFC 6901 escapes). */
function parsePointer (pointer: string): string[] {
  return pointer.split('/').slice(1).map(s => s.replace(/~1/g, '/').replace(/~0/g, '~'))
}

/** Removes each masked path present in the event; the event's input and result are fresh copies. */
function applyMasks (event: DecisionEvent, masks: string[][]): string[] {
  const erased: string[] = []
  for (const path of masks) {
    const [root, ...rest] = path
    if (root !== 'input' && root !== 'result') continue
    if (rest.length === 0) {
      if (event[root] !== undefined) {
        delete event[root]
        erased.push(`/${root}`)
      }
      continue
    }
    let node: unknown = event[root]
    for (const key of rest.slice(0, -1)) node = isObject(node) ? node[key] : undefined
    const last = rest[rest.length - 1]!
    if (isObject(node) && Object.hasOwn(node, last)) {
      delete node[last]
      erased.push(`/${path.map(s => s.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')}`)
    }
  }
  return erased
}

function isObject (v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/** The decision log described by the validated `decisionLog` config (certificate files read here). */
export function createDecisionLogFromConfig (config: Config['decisionLog'], log: FastifyBaseLogger, metrics: Metrics): DecisionLog {
  const { http: h, ...rest } = config
  let http: DecisionLogOptions['http']
  if (h !== undefined) {
    const tls: NonNullable<UploadOptions['tls']> = {}
    for (const k of ['ca', 'cert', 'key'] as const) {
      const file = h.tls?.[k]
      if (file !== undefined) tls[k] = readFileSync(file)
    }
    http = {
      url: h.url,
      flushIntervalMs: h.flushIntervalMs,
      maxBatchEvents: h.maxBatchEvents,
      timeoutMs: h.timeoutMs,
      ...(h.bearerToken !== undefined ? { bearerToken: h.bearerToken } : {}),
      ...(h.tls !== undefined ? { tls } : {})
    }
  }
  return createDecisionLog({ ...rest, ...(http !== undefined ? { http } : {}), log, metrics })
}
