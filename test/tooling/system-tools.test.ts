import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { symlink } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { ROOT } from '../helpers/deploy-tools.js'
import { startRedis } from '../helpers/redis.js'
import { systemTool } from '../helpers/system-tools.js'
import { findTool } from '../../scripts/test-deps.mjs'

/*
 * A machine without the suite's tools: `npm test`'s first step names the Debian packages to install
 * (and exits non-zero rather than install when it may not), and a helper that needs a missing tool
 * fails with the package's name, never `spawn redis-server ENOENT`.
 */

const exec = promisify(execFile)

/** A PATH holding only node and go: what a fresh machine has. */
async function barePath (t: Test): Promise<string> {
  const dir = t.testdir()
  await symlink(process.execPath, join(dir, 'node'))
  await symlink(findTool('go') ?? findTool('opa')!, join(dir, 'go'))
  return dir
}

t.test('test-deps --check lists the exact apt-get command for what is missing and exits 1', async t => {
  const path = await barePath(t)
  const res = await exec(process.execPath, [join(ROOT, 'scripts/test-deps.mjs'), '--check'], { env: { ...process.env, PATH: path } })
    .then(() => ({ code: 0, stderr: '' }), (err: { code: number, stderr: string }) => err)
  t.equal(res.code, 1)
  const line = /apt-get install -y --no-install-recommends (.+)/.exec(res.stderr)?.[1]?.split(' ') ?? []
  for (const pkg of ['redis-server', 'redis-tools', 'prometheus', 'chromium', 'sslscan', 'curl']) t.ok(line.includes(pkg), `names ${pkg}`)
  t.equal(new Set(line).size, line.length, 'each package once (prometheus ships both prometheus and promtool)')
})

t.test('the same check passes on this machine, where the suite runs', async t => {
  const res = await exec(process.execPath, [join(ROOT, 'scripts/test-deps.mjs'), '--check'])
    .then(() => ({ code: 0, stderr: '' }), (err: { code: number, stderr: string }) => err)
  t.equal(res.code, 0, res.stderr)
})

t.test('a helper whose tool is missing names the Debian package instead of ENOENT', async t => {
  const saved = process.env.PATH
  process.env.PATH = await barePath(t)
  t.teardown(() => { process.env.PATH = saved })
  t.throws(() => systemTool('chromium'), /chromium is not installed: apt-get install chromium/)
  await t.rejects(startRedis(t), /redis-server is not installed: apt-get install redis-server/)
  t.throws(() => systemTool('no-such-tool'), /not in the table of scripts\/test-deps\.mjs/)
})
