import t from 'tap'
import { readdirSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { join } from 'node:path'
import { DEFAULT_BUNDLE, buildBundle } from '../../scripts/opa.mjs'
import { createGateway } from '../../src/app.js'
import { validateConfig } from '../../src/config/load.js'
import { demoConfig } from '../../src/demo/run.js'
import { ensureDemoState } from '../../src/demo/state.js'

// A gateway whose build fails part way (here: the upstream's client key vanished after the config
// was checked, as in a reload racing a secret rotation) must not leave behind what it had built
// already: the policy watcher, issuer key refreshes, the assertion key timer, the decision log.
// Otherwise every refused reload would leak timers and file handles into the running process.

t.test('a build that fails part way closes what it had opened', async t => {
  await buildBundle({})
  const paths = await ensureDemoState(t.testdir())
  const raw = demoConfig(paths, 'https://127.0.0.1:1', 'https://127.0.0.1:2', { dir: paths.dir, bundle: DEFAULT_BUNDLE, ports: { gateway: 0, admin: 0, issuer: 0, fn: 0 }, logLevel: 'silent' }) as Record<string, any>
  raw.decisionLog = { file: join(paths.dir, 'decisions.jsonl') } // an open file: a leak shows as a file descriptor
  const config = await validateConfig(raw, { baseDir: paths.dir })
  await rm(paths.gatewayClientKey)

  // Open file descriptors and active handles: what a half-built gateway would keep open.
  const resources = (): string[] => [...readdirSync('/proc/self/fd').map(() => 'fd'), ...process.getActiveResourcesInfo().filter(r => r !== 'TTYWrap')].sort()
  const before = resources()
  await t.rejects(createGateway(config, { bundleWatchIntervalMs: 50 }), /ENOENT|gateway-client\.key/, 'the build fails')
  // Anything still open keeps a timer or handle alive; give closes a moment to settle.
  await new Promise(resolve => setTimeout(resolve, 200))
  const left = [...resources()]
  for (const r of before) { const i = left.indexOf(r); if (i !== -1) left.splice(i, 1) }
  t.strictSame(left, [], 'no timer, watcher or handle left behind')
})
