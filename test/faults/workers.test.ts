import t, { type Test } from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { httpsClient } from '../helpers/http.js'
import { gatewayFiles, startGatewayProcess, startPlainUpstream } from '../helpers/gateway-process.js'

// Issue 17, item 6: `portcullis start --workers 2` through the real CLI, with workers killed by
// SIGKILL, a config file broken on disk, and a worker that cannot start at all.

interface WorkerView { slot: number, pid: number | null, state: string, ready: boolean, restarts: number, last_exit: { code: number | null, signal: string | null } | null, config_hash: string | null }
interface Status { config: { hash: string }, workers: WorkerView[] }

const sleep = async (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

async function startWorkers (t: Test, extra = '') {
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

t.test('kill -9 one worker: the other keeps answering, /readyz stays 200, a new worker takes its place', async t => {
  const w = await startWorkers(t)
  const before = await w.status()
  const victim = before.workers[0]!.pid!
  process.kill(victim, 'SIGKILL')
  await w.gw.waitForLog(/worker exited/)

  const r = await w.readyz()
  t.equal(r.code, 200, 'ready while one worker serves')
  t.match(r.status, /^(ready|degraded)$/)
  t.same(await w.statuses(8), Array(8).fill(200), 'every request answered')

  const after = await w.until('a new worker listening', w.status, s => w.listening(s).length === 2)
  t.notOk(after.workers.some(x => x.pid === victim), 'the killed worker is gone')
  const replaced = after.workers.find(x => x.slot === before.workers[0]!.slot)!
  t.not(replaced.pid, victim, 'a new process in the slot')
  t.equal(replaced.restarts, 1)
  t.match(replaced.last_exit, { code: null, signal: 'SIGKILL' }, '/status says how the last one ended')
  t.equal((await w.readyz()).status, 'ready')
  t.match((await w.admin.send(`${w.gw.adminUrl}/metrics`)).text, /^portcullis_worker_restarts_total 1$/m, 'counted on the primary')
  t.same(await w.statuses(4), Array(4).fill(200))

  w.gw.child.kill('SIGTERM')
  t.equal(await w.gw.exited, 0)
})

t.test('a config broken on disk is refused on SIGHUP; a worker started afterwards runs the last good config', async t => {
  const w = await startWorkers(t, 'lifecycle: { watch: false }')
  const good = (await w.status()).config.hash

  writeFileSync(w.files.configFile, `${readFileSync(w.files.configFile, 'utf8')}\nbogus: 1\nalsoBogus: 2\n`)
  w.gw.child.kill('SIGHUP')
  await w.gw.waitForLog(/config reload refused/)
  t.match(w.gw.log(), /unknown property \\"bogus\\"[^\n]*unknown property \\"alsoBogus\\"/, 'every problem logged')
  t.same(await w.statuses(4), Array(4).fill(200), 'the previous config keeps serving')
  t.match((await w.admin.send(`${w.gw.adminUrl}/metrics`)).text, /^portcullis_config_reloads_total\{result="failure"\} 1$/m, 'the refusal counted once')

  const victim = (await w.status()).workers[0]!.pid!
  process.kill(victim, 'SIGKILL')
  await w.gw.waitForLog(/worker exited/)
  const after = await w.until('a new worker listening', w.status, s => w.listening(s).length === 2 && !s.workers.some(x => x.pid === victim))
  t.same(after.workers.map(x => x.config_hash), [good, good], 'both workers run the last good config')
  t.equal(after.config.hash, good)
  t.same(await w.statuses(6), Array(6).fill(200), 'the new worker serves')
  t.equal(w.exits(), 1, 'no worker exited but the one killed (no exit-2 loop)')
  t.equal((await w.readyz()).status, 'ready')

  w.gw.child.kill('SIGTERM')
  t.equal(await w.gw.exited, 0)
})

t.test('a worker that cannot start is restarted with growing delays while the other serves', async t => {
  const w = await startWorkers(t, 'lifecycle: { watch: false }')
  // A key no TLS server can use: every new worker fails to start (exit 1). The running ones read
  // theirs at start and keep serving.
  writeFileSync(join(w.files.dir, 'gw.key'), 'not a key\n')
  const victim = (await w.status()).workers[0]!.pid!
  process.kill(victim, 'SIGKILL')
  await w.gw.waitForLog(/worker exited/)

  // Back-off from 100 ms doubling: however fast a worker fails, at most 8 exits fit in 20 s
  // (0, 0.1, 0.3, 0.7, 1.5, 3.1, 6.3, 12.7 s); without a back-off they come as fast as a worker boots.
  const window = 20_000
  const start = performance.now()
  const answers: number[] = []
  const readiness = new Set<string>()
  while (performance.now() - start < window) {
    answers.push(...await w.statuses(2))
    const r = await w.readyz()
    readiness.add(`${r.code} ${r.status}`)
    await sleep(1000)
  }
  const exits = w.exits()
  t.ok(answers.length > 0 && answers.every(s => s === 200), `every request answered (${answers.length})`)
  t.same([...readiness], ['200 degraded'], '/readyz: ready (one worker serves), and says it is degraded')
  t.ok(exits >= 3, `the failing worker is tried again (${exits} exits)`)
  t.ok(exits <= 8, `restarts are spaced out (${exits} exits in ${window} ms)`)
  const delays = [...w.gw.log().matchAll(/"restart_in_ms":(\d+)/g)].map(m => Number(m[1]))
  t.ok(delays.length >= 3 && delays.every((d, i) => i === 0 || d >= delays[i - 1]!) && delays.at(-1)! > delays[0]!, `delays grow: ${delays.join(', ')}`)
  t.match(w.gw.log(), /"code":1[^\n]*worker exited/, 'the new workers exit 1 (cannot start)')
  const slot = (await w.status()).workers.find(x => x.restarts >= 3)
  t.ok(slot !== undefined, '/status counts the slot\'s restarts')
  t.match(slot?.last_exit, { code: 1 })
  const metric = /^portcullis_worker_restarts_total (\d+)$/m.exec((await w.admin.send(`${w.gw.adminUrl}/metrics`)).text)
  t.ok(Number(metric?.[1]) >= 3, 'counted in portcullis_worker_restarts_total')

  // Once the key is good again, the next attempt starts a worker.
  await w.files.writeListenerCert('gw-2')
  await w.until('the slot serves again', w.status, s => w.listening(s).length === 2, 60_000)
  t.equal((await w.readyz()).status, 'ready')

  w.gw.child.kill('SIGTERM')
  t.equal(await w.gw.exited, 0)
})
