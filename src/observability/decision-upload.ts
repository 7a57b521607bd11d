import { promisify } from 'node:util'
import { gzip } from 'node:zlib'
import type { FastifyBaseLogger } from 'fastify'
import { Agent, request } from 'undici'
import type { Metrics } from './metrics.js'

/*
 * The HTTP sink of the decision log, in OPA's upload format: batches of events POSTed as one gzipped
 * JSON array (Content-Encoding: gzip), as OPA's decision-log plugin sends them, so an OPA decision-log
 * collector accepts them. Events wait in a bounded buffer; a full buffer drops (and counts) new
 * events, and a failed upload is put back while there is room. Requests never wait for any of it.
 */

const gzipAsync = promisify(gzip)

export interface UploadOptions {
  url: string
  flushIntervalMs: number
  maxBatchEvents: number
  maxQueuedEvents: number
  timeoutMs: number
  bearerToken?: string
  tls?: { ca?: Buffer, cert?: Buffer, key?: Buffer }
  log: FastifyBaseLogger
  metrics: Metrics
}

export interface DecisionUploader {
  push: (event: unknown) => void
  /** Uploads what is buffered now; resolves once that attempt is over. */
  flush: () => Promise<void>
  close: () => Promise<void>
}

export function createDecisionUploader (opts: UploadOptions): DecisionUploader {
  const agent = new Agent({ connect: { ...(opts.tls ?? {}), rejectUnauthorized: true }, connections: 1 })
  const count = (outcome: 'written' | 'dropped', n = 1): void => { opts.metrics.decisionLogEvents.inc({ sink: 'http', outcome }, n) }
  let buffer: unknown[] = []
  let flushing: Promise<void> | undefined

  const upload = async (): Promise<void> => {
    while (buffer.length > 0) {
      const batch = buffer.slice(0, opts.maxBatchEvents)
      buffer = buffer.slice(batch.length)
      try {
        const body = await gzipAsync(JSON.stringify(batch))
        const headers: Record<string, string> = { 'content-type': 'application/json', 'content-encoding': 'gzip' }
        if (opts.bearerToken !== undefined) headers.authorization = `Bearer ${opts.bearerToken}`
        const res = await request(opts.url, { method: 'POST', body, headers, dispatcher: agent, signal: AbortSignal.timeout(opts.timeoutMs) })
        await res.body.dump()
        if (res.statusCode < 200 || res.statusCode > 299) throw new Error(`decision log upload answered ${res.statusCode}`)
        count('written', batch.length)
      } catch (err) {
        const room = opts.maxQueuedEvents - buffer.length
        const kept = batch.slice(0, Math.max(0, room))
        buffer = [...kept, ...buffer]
        if (batch.length > kept.length) count('dropped', batch.length - kept.length)
        opts.log.warn({ err: (err as Error).message, requeued: kept.length }, 'decision log upload failed')
        return
      }
    }
  }
  const flush = async (): Promise<void> => {
    flushing ??= upload().finally(() => { flushing = undefined })
    return flushing
  }
  const timer = setInterval(() => { void flush() }, opts.flushIntervalMs)
  timer.unref()

  return {
    push (event) {
      if (buffer.length >= opts.maxQueuedEvents) {
        count('dropped')
        return
      }
      buffer.push(event)
    },
    flush,
    async close () {
      clearInterval(timer)
      await flushing
      await flush()
      await agent.close()
    }
  }
}
