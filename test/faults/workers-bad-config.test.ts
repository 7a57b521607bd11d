import t from 'tap'
import { readFileSync, writeFileSync } from 'node:fs'
import { startWorkers } from '../helpers/workers.js'

// Issue 17, item 6: `portcullis start --workers 2` through the real CLI (test/helpers/workers.ts).
// The config file broken on disk, then a worker killed.

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

  // A good file again, with one more route: SIGHUP sends it to every worker.
  const fixed = readFileSync(w.files.configFile, 'utf8').replace('\nbogus: 1\nalsoBogus: 2\n', '')
    .replace('routes:\n', 'routes:\n  - { id: more, prefix: /more, methods: [GET], upstream: fn }\n')
  writeFileSync(w.files.configFile, fixed)
  w.gw.child.kill('SIGHUP')
  // The primary's line, once every worker has answered (each worker logs its own "config reloaded" first).
  await w.gw.waitForLog(/"workers_applied":\d+,"workers":\d+,"msg":"config reloaded"/)
  const reloaded = await w.status() as Awaited<ReturnType<typeof w.status>> & { routes: Array<{ id: string }> }
  t.not(reloaded.config.hash, good, 'a new last good config')
  t.same(reloaded.workers.map(x => x.config_hash), [reloaded.config.hash, reloaded.config.hash], 'every worker runs it')
  t.same(reloaded.routes.map(r => r.id), ['more', 'hello'])

  w.gw.child.kill('SIGTERM')
  t.equal(await w.gw.exited, 0)
})
