import t from 'tap'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { sleep, startWorkers } from '../helpers/workers.js'

// Issue 17, item 6: `portcullis start --workers 2` through the real CLI (test/helpers/workers.ts).
// A worker that cannot start at all.

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
  t.ok(exits >= 2, `the failing worker is tried again (${exits} exits)`)
  t.ok(exits <= 8, `restarts are spaced out (${exits} exits in ${window} ms)`)
  const delays = [...w.gw.log().matchAll(/"restart_in_ms":(\d+)/g)].map(m => Number(m[1]))
  t.ok(delays.length >= 2 && delays.every((d, i) => i === 0 || d >= delays[i - 1]!) && delays.at(-1)! > delays[0]!, `delays grow: ${delays.join(', ')}`)
  t.match(w.gw.log(), /"code":1[^\n]*worker exited/, 'the new workers exit 1 (cannot start)')
  const slot = (await w.status()).workers.find(x => x.restarts >= 2)
  t.ok(slot !== undefined, '/status counts the slot\'s restarts')
  t.match(slot?.last_exit, { code: 1 })
  const metrics = (await w.admin.send(`${w.gw.adminUrl}/metrics`)).text
  t.ok(Number(/^portcullis_worker_restarts_total (\d+)$/m.exec(metrics)?.[1]) >= 2, 'counted in portcullis_worker_restarts_total')
  t.match(metrics, /^portcullis_workers\{state="listening"\} 1$/m, 'one worker slot listening')

  // Once the key is good again, the next attempt starts a worker.
  await w.files.writeListenerCert('gw-2')
  await w.until('the slot serves again', w.status, s => w.listening(s).length === 2)
  t.equal((await w.readyz()).status, 'ready')

  w.gw.child.kill('SIGTERM')
  t.equal(await w.gw.exited, 0)
})
