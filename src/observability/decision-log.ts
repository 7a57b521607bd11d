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
  /** Paths whose value a `system.log.mask` upsert replaced, as OPA records them. */
  masked?: string[]
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
  record: (event: Omit<DecisionEvent, 'labels' | 'timestamp' | 'erased' | 'masked'> & { masks?: unknown }) => void
  close: () => Promise<void>
}

export function createDecisionLog (opts: DecisionLogOptions): DecisionLog {
  const labels = { id: randomUUID(), version: VERSION, ...opts.labels }
  const mask = createMasker(opts.mask)
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
      const { masks: policyMasks, input, result, ...fields } = partial
      const { erased, masked, ...kept } = mask({ input, result }, policyMasks)
      const event = { ...fields, ...kept, timestamp: new Date().toISOString(), labels } as DecisionEvent
      if (erased.length > 0) event.erased = erased
      if (masked.length > 0) event.masked = masked
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

type MaskOp = { op: 'remove', path: string[] } | { op: 'upsert', path: string[], value: unknown }

export interface Masked { input?: unknown, result?: unknown, erased: string[], masked: string[] }

/**
 * The masking of the decision log: the configured pointers (decisionLog.mask), then the policy's own
 * (`masks`, what system.log.mask returned), applied to copies of input and result. The shadow policy's
 * log lines are masked by the same function, so they never show what a decision log would hide.
 */
export function createMasker (configured: readonly string[]): (fields: { input: unknown, result: unknown }, masks?: unknown) => Masked {
  const removals = configured.map(parsePointer).map(path => ({ op: 'remove' as const, path }))
  return (fields, masks) => {
    const all: MaskOp[] = [...removals, ...policyMaskOps(masks)]
    if (all.length === 0) return { ...fields, erased: [], masked: [] }
    // Masks delete in place: they work on copies, never on the input the policy was given.
    const copy: { input?: unknown, result?: unknown } = { input: structuredClone(fields.input), result: structuredClone(fields.result) }
    const { erased, masked } = applyMasks(copy, all)
    return { ...copy, erased, masked }
  }
}

/**
 * What `system.log.mask` returned, read as OPA reads it: a set (array) of JSON pointers to remove, or
 * of `{op: "remove", path}` and `{op: "upsert", path, value}` objects. Anything else it could mean
 * fails safe: a mask that is not an array removes input and result; an unknown op removes its path.
 */
function policyMaskOps (value: unknown): MaskOp[] {
  if (value === undefined) return []
  if (!Array.isArray(value)) return [{ op: 'remove', path: ['input'] }, { op: 'remove', path: ['result'] }]
  return value.flatMap((m): MaskOp[] => {
    if (typeof m === 'string') return m.startsWith('/') ? [{ op: 'remove', path: parsePointer(m) }] : []
    if (!isObject(m) || typeof m.path !== 'string' || !m.path.startsWith('/')) return []
    const path = parsePointer(m.path)
    return m.op === 'upsert' && Object.hasOwn(m, 'value') ? [{ op: 'upsert', path, value: m.value }] : [{ op: 'remove', path }]
  })
}

/** `/input/headers/x-email` → ['input', 'headers', 'x-email'] (RFC 6901 escapes). */
function parsePointer (pointer: string): string[] {
  return pointer.split('/').slice(1).map(s => s.replace(/~1/g, '/').replace(/~0/g, '~'))
}

function toPointer (path: string[]): string {
  return `/${path.map(s => s.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')}`
}

/**
 * Applies each mask in order to the event (whose input and result are fresh copies): a removal of a
 * path that is present is listed in `erased`, an upsert (the value set, the last key created when
 * its parent object exists) in `masked`.
 */
function applyMasks (event: { input?: unknown, result?: unknown }, masks: MaskOp[]): { erased: string[], masked: string[] } {
  const erased: string[] = []
  const masked: string[] = []
  for (const mask of masks) {
    const [root, ...rest] = mask.path
    if (root !== 'input' && root !== 'result') continue
    if (rest.length === 0) {
      if (mask.op === 'upsert') {
        event[root] = mask.value
        masked.push(`/${root}`)
      } else if (event[root] !== undefined) {
        delete event[root]
        erased.push(`/${root}`)
      }
      continue
    }
    let node: unknown = event[root]
    for (const key of rest.slice(0, -1)) node = isObject(node) ? node[key] : undefined
    const last = rest[rest.length - 1]!
    if (!isObject(node)) continue
    if (mask.op === 'upsert') {
      node[last] = mask.value
      masked.push(toPointer(mask.path))
    } else if (Object.hasOwn(node, last)) {
      delete node[last]
      erased.push(toPointer(mask.path))
    }
  }
  return { erased, masked }
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
