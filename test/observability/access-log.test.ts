import t from 'tap'
import { spawn } from 'node:child_process'
import { join, resolve } from 'node:path'
import { mintDemoToken } from '../../src/demo/token.js'
import { ensureDemoState } from '../../src/demo/state.js'
import { httpsClient } from '../helpers/http.js'
import { freePort } from '../helpers/ports.js'

// The access log is read by machines: one JSON object per line. Whatever a caller controls that ends
// up in it (here the token's subject, which the issuer signs but the caller may choose, and a path)
// must stay inside its JSON string, so nobody can start a line of their own and forge an entry.

const CLI = resolve(import.meta.dirname, '../../dist/cli.js')

t.test('a hostile subject and path cannot forge an access-log line', async t => {
  const dir = t.testdir()
  const ports = [await freePort(), await freePort(), await freePort(), await freePort()]
  let out = ''
  const demo = spawn(process.execPath, [CLI, 'demo', 'run', '--dir', join(dir, 'state'), '--ports', ports.join(',')], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  demo.stdout.on('data', (d: Buffer) => { out += String(d) })
  demo.stderr.on('data', (d: Buffer) => { out += String(d) })
  const exited = new Promise(resolve => demo.once('exit', resolve))
  t.teardown(async () => { demo.kill('SIGTERM'); await exited })
  while (!out.includes('Portcullis demo is running')) {
    if (demo.exitCode !== null) throw new Error(out)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  const paths = await ensureDemoState(join(dir, 'state'))
  const forged = '{"level":30,"access":true,"subject":"root","status":200,"msg":"request completed"}'
  const client = httpsClient(t, paths.caCert)
  const url = `https://127.0.0.1:${ports[0]}`
  // A subject with line breaks: refused outright (it would also go upstream as a header).
  const broken = await mintDemoToken(paths, { sub: `alice\n${forged}\r\n`, roles: ['reader'], ttl: 60, claims: {} })
  const refused = await client.send(`${url}/hello`, { token: broken })
  t.equal(refused.status, 401, 'a subject with control characters is refused')
  t.match(refused.json(), { code: 'GW_ERR_AUTHN_INVALID' })
  // Quotes and braces are legal in a subject: served, and kept inside the JSON string.
  const quoted = `alice","subject":"root","x":"`
  const res = await client.send(`${url}/hello/%7B%22forged%22%3Atrue%7D`, { token: await mintDemoToken(paths, { sub: quoted, roles: ['reader'], ttl: 60, claims: {} }) })
  t.equal(res.status, 200, `served: ${res.text}`)
  await new Promise(resolve => setTimeout(resolve, 300)) // the access line is written as the response ends

  const lines = out.split('\n').filter(l => l.startsWith('{'))
  const parsed = lines.map(l => { try { return JSON.parse(l) as Record<string, unknown> } catch { return null } })
  t.equal(parsed.filter(p => p === null).length, 0, 'every log line is one whole JSON object')
  const access = parsed.filter(p => p?.access === true)
  t.equal(access.length, 2, 'exactly one access line per request')
  t.match(access[0], { status: 401, subject: null, authn_reason: 'invalid_claims' }, 'the refusal, without the hostile subject')
  t.equal(access[1]?.subject, quoted, 'the quoted subject is kept whole, inside its string')
  t.equal(access[1]?.path, '/hello/%7B%22forged%22%3Atrue%7D', 'the path as the canonical, still-encoded bytes')
  t.notOk(out.includes(forged), 'the forged line appears nowhere in the output')
  t.notOk(parsed.some(p => p?.subject === 'root'), 'no forged entry')
})
