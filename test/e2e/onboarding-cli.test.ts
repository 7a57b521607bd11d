import t from 'tap'
import { execFile } from 'node:child_process'
import { createServer } from 'node:net'
import type { AddressInfo } from 'node:net'
import { promisify } from 'node:util'
import { freePort } from '../helpers/ports.js'

// Issue #25, what a new user meets first: a busy port and the first token, with the built CLI.
const CLI = new URL('../../dist/cli.js', import.meta.url).pathname
const run = promisify(execFile)
const cli = async (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> =>
  run(process.execPath, [CLI, ...args], { timeout: 90_000 }).then(r => ({ code: 0, ...r }), (e: { code: number, stdout: string, stderr: string }) => e)

t.test('a busy port stops the demo with the option that moves it', async t => {
  const busy = createServer()
  await new Promise<void>(resolve => busy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => busy.close())
  const port = (busy.address() as AddressInfo).port
  const ports = [await freePort(), await freePort(), port, await freePort()].join(',') // the issuer's is taken
  const res = await cli(['demo', 'run', '--dir', t.testdir(), '--ports', ports])
  t.equal(res.code, 1)
  t.match(res.stderr, `127.0.0.1:${port} is already in use; choose free ones with --ports gateway,admin,issuer,function`)
  t.notMatch(res.stderr, /^\s+at /m, 'no stack trace')
})

t.test('demo token says what it waits for the first time, and nothing after', async t => {
  const dir = t.testdir()
  const first = await cli(['demo', 'token', '--dir', dir])
  t.equal(first.code, 0, first.stderr)
  t.match(first.stdout, /^ey[\w-]+\.[\w-]+\.[\w-]+\n$/)
  t.equal(first.stderr, `making the demo CA, certificates and keys in ${dir} (first run only)\n`)
  const second = await cli(['demo', 'token', '--dir', dir])
  t.equal(second.code, 0)
  t.equal(second.stderr, '', 'the keys are there: nothing to wait for')
})
