import cluster, { type Worker } from 'node:cluster'
import type { FastifyBaseLogger } from 'fastify'
import type { Config } from '../config/schema.js'
import type { ClusterMetrics, WorkerState } from '../observability/metrics.js'
import type { ReloadResult } from '../server.js'
import { ask, isMessage, type Listening, type StartWith, type WantConfig } from './cluster-ipc.js'
import type { KeySnapshots } from './process-state.js'

/*
 * The primary's N worker slots. A worker that exits while the primary is not shutting down is
 * replaced after a back-off that doubles each time the slot's worker dies young (100 ms up to 30 s)
 * and starts over once one has stayed up a while: a worker that cannot start (a broken certificate
 * on disk, a port it cannot bind) costs a log line now and then, not a core spinning on forks.
 * Every worker starts on the primary's last good config, whatever the file on disk says now.
 */

export const RESTART_BACKOFF = { initialMs: 100, maxMs: 30_000, stableMs: 10_000 } as const

export interface LastExit { code: number | null, signal: string | null, at: string }

export interface SlotView {
  slot: number
  id: number | null
  pid: number | null
  state: WorkerState
  restarts: number
  last_exit: LastExit | null
  config_hash: string | null
  started_at: string | null
  next_start_at: string | null
}

export interface WorkerReload { slot: number, pid: number | undefined, result: ReloadResult | undefined }

interface Slot {
  index: number
  worker?: Worker
  startedAt?: string
  listeningSince?: number
  configHash?: string
  restarts: number
  delayMs: number
  lastExit?: LastExit
  timer?: NodeJS.Timeout
  nextStartAt?: string
}

export interface WorkerPoolOptions {
  count: number
  log: FastifyBaseLogger
  metrics: Pick<ClusterMetrics, 'workerRestarts'>
  /** The last good config and its hash: what a (re)started worker gets. */
  current: () => { config: Config, hash: string }
  onListening: (url: string) => void
}

// long: one closure over the table of worker slots; start, stop, reload and catch-up share it.
export function createWorkerPool (opts: WorkerPoolOptions) {
  const slots: Slot[] = Array.from({ length: opts.count }, (_, index) => ({ index, restarts: 0, delayMs: 0 }))
  let stopping = false
  let stopped: (() => void) | undefined
  const slotOf = (worker: Worker): Slot | undefined => slots.find(s => s.worker === worker)
  const stateOf = (s: Slot): WorkerState => s.worker === undefined ? 'waiting' : s.listeningSince === undefined ? 'starting' : 'listening'
  const alive = (): Worker[] => slots.flatMap(s => s.worker !== undefined ? [s.worker] : [])

  // The issuer keys a listening sibling of `worker` holds, for it to start from (cluster-ipc.ts
  // StartWith); none when it is the only one, or the sibling does not answer in time.
  const siblingKeys = async (worker: Worker): Promise<KeySnapshots> => {
    const sibling = slots.find(s => s.worker !== undefined && s.worker !== worker && s.listeningSince !== undefined)?.worker
    if (sibling === undefined) return {}
    return (await ask(sibling, { what: 'keys' }) as KeySnapshots | undefined) ?? {}
  }

  // A worker that started while a reload was under way may have the config before it.
  const catchUp = (slot: Slot): void => {
    const { config, hash } = opts.current()
    if (slot.worker === undefined || slot.listeningSince === undefined || slot.configHash === hash) return
    void reloadOne(slot, config)
  }

  const reloadOne = async (slot: Slot, config: Config): Promise<WorkerReload> => {
    const worker = slot.worker!
    // Building a gateway loads bundles and keys: give it longer than a status question.
    const result = await ask(worker, { what: 'reload', config }, 60_000) as ReloadResult | undefined
    if (result?.ok === true && slot.worker === worker) slot.configHash = result.configHash
    return { slot: slot.index, pid: worker.process.pid, result }
  }

  const fork = (slot: Slot): void => {
    slot.timer = undefined
    slot.nextStartAt = undefined
    const worker = cluster.fork({ PORTCULLIS_WORKER: '1' })
    Object.assign(slot, { worker, startedAt: new Date().toISOString(), listeningSince: undefined, configHash: undefined })
    // An unhandled 'error' would end the primary; a worker's IPC trouble ends only that worker.
    worker.on('error', (err: Error) => { opts.log.warn({ worker: worker.id, err: err.message }, 'worker channel error') })
    worker.on('message', (m: unknown) => {
      if (isMessage<WantConfig>(m, 'portcullis:want-config')) {
        const { config, hash } = opts.current()
        slot.configHash = hash
        void siblingKeys(worker).then(keys => { worker.send({ type: 'portcullis:config', config, keys } satisfies StartWith, () => {}) })
      } else if (isMessage<Listening>(m, 'portcullis:listening') && slot.worker === worker) {
        slot.listeningSince = Date.now()
        slot.configHash = m.configHash
        opts.log.info({ worker: worker.id, slot: slot.index, worker_pid: worker.process.pid, config_hash: m.configHash }, 'worker listening')
        opts.onListening(m.url)
        catchUp(slot)
      }
    })
  }

  cluster.on('exit', (worker, code, signal) => {
    const slot = slotOf(worker)
    if (slot === undefined) return
    const upMs = slot.listeningSince !== undefined ? Date.now() - slot.listeningSince : 0
    slot.worker = undefined
    slot.listeningSince = undefined
    slot.lastExit = { code, signal, at: new Date().toISOString() }
    if (stopping) {
      if (alive().length === 0) stopped?.()
      return
    }
    if (upMs >= RESTART_BACKOFF.stableMs) slot.delayMs = 0
    slot.delayMs = slot.delayMs === 0 ? RESTART_BACKOFF.initialMs : Math.min(slot.delayMs * 2, RESTART_BACKOFF.maxMs)
    slot.restarts++
    opts.metrics.workerRestarts.inc()
    slot.nextStartAt = new Date(Date.now() + slot.delayMs).toISOString()
    opts.log.error({ worker: worker.id, slot: slot.index, worker_pid: worker.process.pid, code, signal, up_ms: upMs, restart_in_ms: slot.delayMs, restarts: slot.restarts },
      'worker exited; starting another after a back-off')
    slot.timer = setTimeout(() => fork(slot), slot.delayMs)
  })

  return {
    start (): void { for (const s of slots) fork(s) },
    /** Workers alive now (starting or listening). */
    workers: alive,
    /** Workers that have reported listening. */
    listening: (): Worker[] => slots.flatMap(s => s.worker !== undefined && s.listeningSince !== undefined ? [s.worker] : []),
    states (): Record<WorkerState, number> {
      const out: Record<WorkerState, number> = { starting: 0, listening: 0, waiting: 0 }
      for (const s of slots) out[stateOf(s)]++
      return out
    },
    view (): SlotView[] {
      return slots.map(s => ({
        slot: s.index,
        id: s.worker?.id ?? null,
        pid: s.worker?.process.pid ?? null,
        state: stateOf(s),
        restarts: s.restarts,
        last_exit: s.lastExit ?? null,
        config_hash: s.worker !== undefined ? s.configHash ?? null : null,
        started_at: s.worker !== undefined ? s.startedAt ?? null : null,
        next_start_at: s.nextStartAt ?? null
      }))
    },
    worker: (slot: number): Worker | undefined => slots[slot]?.worker,
    /** Asks every listening worker to apply `config`; each answers with its reload result. */
    async reload (config: Config): Promise<WorkerReload[]> {
      return Promise.all(slots.filter(s => s.worker !== undefined && s.listeningSince !== undefined).map(async s => reloadOne(s, config)))
    },
    /** Sends the last good config to listening workers that run another one. */
    catchUp (): void { for (const s of slots) catchUp(s) },
    /** SIGTERM to every worker (each drains); resolves once all have exited. Pending restarts are dropped. */
    async stop (): Promise<void> {
      stopping = true
      for (const s of slots) { clearTimeout(s.timer); s.timer = undefined; s.nextStartAt = undefined }
      const done = new Promise<void>(resolve => { stopped = resolve })
      if (alive().length === 0) return
      for (const w of alive()) w.process.kill('SIGTERM')
      return done
    }
  }
}

export type WorkerPool = ReturnType<typeof createWorkerPool>
