import t from 'tap'
import { startWorkers } from '../helpers/workers.js'

// Issue 17, item 6: `portcullis start --workers 2` through the real CLI (test/helpers/workers.ts).
// A worker killed with SIGKILL.

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
