import type { Test } from 'tap'
import { httpsClient } from './http.js'
import { gatewayFiles, startGatewayProcess, startPlainUpstream } from './gateway-process.js'

// `portcullis start --workers 2` through the real CLI, for the fault tests of test/faults/workers-*.

export interface WorkerView { slot: number, pid: number | null, state: string, ready: boolean, restarts: number, last_exit: { code: number | null, signal: string | null } | null, config_hash: string | null }
export interface Status { config: { hash: string }, workers: WorkerView[] }

export const sleep = async (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

/** Starts the CLI with two workers and waits until both are ready. */
export async function startWorkers (t: Test, extra = '') {
  const upstream = await startPlainUpstream(t, 'fn')
  const files = await gatewayFiles(t)
  await files.writeConfig(upstream.url, extra)
  const gw = await startGatewayProcess(t, files.configFile, ['--workers', '2'])
  const admin = httpsClient(t)
  const token = await files.token()
  const status = async (): Promise<Status> => (await admin.send(`${gw.adminUrl}/status`)).json<Status>()
  const readyz = async (): Promise<{ code: number, status: string }> => {
    const r = await admin.send(`${gw.adminUrl}/readyz`)
    return { code: r.status, status: r.json<{ status: string }>().status }
  }
  /** Polls `check` until it holds; bounded generously for a loaded 2-core machine. */
  const until = async <T>(what: string, get: () => Promise<T>, check: (v: T) => boolean, ms = 45_000): Promise<T> => {
    const start = performance.now()
    let v = await get()
    while (!check(v)) {
      if (performance.now() - start > ms) throw new Error(`${what}: not within ${ms} ms; last seen ${JSON.stringify(v)}`)
      await sleep(200)
      v = await get()
    }
    return v
  }
  // A new connection per request, so that the primary spreads them over the workers that listen.
  const statuses = async (n: number): Promise<number[]> => {
    const out: number[] = []
    for (let i = 0; i < n; i++) out.push((await httpsClient(t, files.caFile).send(`${gw.url}/hello/${i}`, { token })).status)
    return out
  }
  const listening = (s: Status): WorkerView[] => s.workers.filter(w => w.state === 'listening' && w.ready)
  await until('both workers ready', readyz, r => r.status === 'ready')
  const exits = (): number => gw.log().match(/worker exited/g)?.length ?? 0
  return { files, gw, admin, status, readyz, until, statuses, listening, exits }
}

