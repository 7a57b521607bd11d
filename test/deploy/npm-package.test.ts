import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { parse, stringify } from 'yaml'
import { ROOT } from '../helpers/deploy-tools.js'
import { httpsClient } from '../helpers/http.js'
import { freePort } from '../helpers/ports.js'

/*
 * The npm package as a user gets it: `npm pack`, installed into an empty project (dependencies from
 * the npm cache where it has them). There `npx portcullis` runs, `portcullis check` accepts a config,
 * and a function of the user's own, importing `portcullis/verify`, serves behind `portcullis demo run`,
 * which builds the policy bundle it needs when the package's copy is gone.
 */

const exec = promisify(execFile)
const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { version: string }

// The user's function: mutual TLS with the demo's function certificate, every request's gateway
// assertion verified by portcullis/verify against the JWKS file the gateway writes.
const FUNCTION = `
import { createServer } from 'node:https'
import { readFileSync } from 'node:fs'
import { createAssertionVerifier, AssertionError } from 'portcullis/verify'
const [state, port, issuer] = process.argv.slice(2)
const file = name => readFileSync(state + '/' + name)
const verifier = createAssertionVerifier({ issuer, audience: 'https://127.0.0.1:' + port, jwks: { file: state + '/gateway-jwks.json' } })
createServer({ cert: file('function.crt'), key: file('function.key'), ca: file('ca.crt'), requestCert: true, rejectUnauthorized: true }, async (req, res) => {
  const chunks = []
  for await (const chunk of req) chunks.push(chunk)
  try {
    const who = await verifier.verify(req, Buffer.concat(chunks))
    res.setHeader('content-type', 'application/json').end(JSON.stringify({ from: 'scratch-function', sub: who.sub, path: who.path }))
  } catch (err) {
    res.writeHead(err instanceof AssertionError ? 401 : 500).end(String(err.reason ?? err))
  }
}).listen(Number(port), '127.0.0.1', () => console.log('listening'))
`

t.test('npm pack: what the tarball carries', async t => {
  const dir = t.testdir()
  // --ignore-scripts: the suite has built dist/ and the bundle already (prepack would rebuild them).
  const { stdout } = await exec('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT, maxBuffer: 16 << 20 })
  const files = (JSON.parse(stdout) as Array<{ files: Array<{ path: string }> }>)[0]!.files.map(f => f.path)
  for (const needed of ['package.json', 'README.md', 'CHANGELOG.md', 'dist/cli.js', 'dist/verify/index.js', 'dist/verify/index.d.ts',
    'build/bundle.tar.gz', 'policies/gateway/authz.rego', 'policies/capabilities.json', 'scripts/opa.mjs', 'config/example.yaml']) {
    t.ok(files.includes(needed), `carries ${needed}`)
  }
  const unwanted = files.filter(f => /^(src|test|bench|docker|\.ci|\.portcullis-demo|node_modules)\//.test(f) || /\.(key|pem|crt|map)$|(^|\/)\.env/.test(f))
  t.same(unwanted, [], 'no sources, tests, source maps, keys, certificates or local state')
})

t.test('installed into a scratch project: the CLI, check, and a function using portcullis/verify behind the demo gateway', { timeout: 600_000 }, async t => {
  const dir = t.testdir({ project: { 'package.json': JSON.stringify({ name: 'scratch', private: true, type: 'module' }), 'function.mjs': FUNCTION } })
  const project = join(dir, 'project')
  const { stdout: packed } = await exec('npm', ['pack', '--ignore-scripts', '--silent', '--pack-destination', dir], { cwd: ROOT })
  await exec('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--omit=dev', join(dir, packed.trim())], { cwd: project, maxBuffer: 16 << 20 })
  const npx = async (...args: string[]) => exec('npx', ['--no-install', 'portcullis', ...args], { cwd: project, maxBuffer: 16 << 20 })

  t.equal((await npx('--version')).stdout.trim(), pkg.version, 'npx portcullis --version')

  const state = join(project, '.portcullis-demo')
  const [gatewayPort, adminPort, issuerPort, demoFnPort, fnPort] = await Promise.all([0, 1, 2, 3, 4].map(async () => freePort()))
  const ports = [gatewayPort, adminPort, issuerPort, demoFnPort].join(',')
  // The demo config, saved as the README says, its route pointed at the user's function.
  const config = parse((await npx('demo', 'config', '--ports', ports)).stdout) as Record<string, any>
  config.upstreams[0].url = `https://127.0.0.1:${fnPort}`
  await writeFile(join(project, 'gateway.yaml'), stringify(config))
  const check = await npx('check', '-c', 'gateway.yaml')
  t.match(check.stdout, /^gateway.yaml: ok /, 'portcullis check accepts it')

  const fn = spawn(process.execPath, [join(project, 'function.mjs'), state, String(fnPort), config.assertion.issuer], { cwd: project, stdio: ['ignore', 'pipe', 'inherit'] })
  const fnExited = new Promise(resolve => fn.once('exit', resolve))
  t.teardown(async () => { fn.kill(); await fnExited })
  await new Promise(resolve => fn.stdout.once('data', resolve))

  // The package's own bundle removed: without OPA or Go, `demo run` says how to build it and stops...
  const bundle = join(project, 'node_modules/portcullis/build/bundle.tar.gz')
  await rm(bundle)
  const bare = join(dir, 'bare')
  await mkdir(join(bare, 'bin'), { recursive: true })
  await symlink(process.execPath, join(bare, 'bin', 'node'))
  const without = await exec(join(project, 'node_modules/.bin/portcullis'), ['demo', 'run', '-c', 'gateway.yaml', '--ports', ports],
    { cwd: project, env: { ...process.env, PATH: join(bare, 'bin'), XDG_CACHE_HOME: join(bare, 'cache') } })
    .then(() => ({ code: 0, stderr: '' }), (err: { code: number, stderr: string }) => err)
  t.not(without.code, 0, 'demo run without OPA or Go stops')
  t.match(without.stderr, /policy bundle .* is missing and could not be built/, 'it says the bundle is missing')
  t.match(without.stderr, /Build it with `node .*scripts\/opa\.mjs build`/, 'and how to build it')
  // ...and with them (this machine's cached OPA), it builds the bundle from the package's policies.
  let out = ''
  const demo = spawn('npx', ['--no-install', 'portcullis', 'demo', 'run', '-c', 'gateway.yaml', '--ports', ports], { cwd: project, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  demo.stdout.on('data', (d: Buffer) => { out += String(d) })
  demo.stderr.on('data', (d: Buffer) => { out += String(d) })
  const demoExited = new Promise(resolve => demo.once('exit', resolve))
  t.teardown(async () => { process.kill(-demo.pid!, 'SIGTERM'); await demoExited })
  // Bounded generously (a cold OPA install takes minutes); a gateway waiting for a bundle that never comes fails here.
  for (const started = Date.now(); ;) {
    if (demo.exitCode !== null) throw new Error(`demo run exited:\n${out}`)
    if (Date.now() - started > 400_000) throw new Error(`demo never became ready:\n${out}`)
    const ready = await fetch(`http://127.0.0.1:${adminPort}/readyz`).then(r => r.status, () => 0)
    if (ready === 200) break
    await new Promise(resolve => setTimeout(resolve, 250))
  }
  t.match(out, /building the demo's policy bundle/, 'the missing bundle was built')
  t.ok((await readFile(bundle)).length > 0, 'into the package\'s build/bundle.tar.gz')

  const client = httpsClient(t, join(state, 'ca.crt'))
  const token = (await npx('demo', 'token', '--sub', 'alice', '--role', 'reader')).stdout.trim()
  const res = await client.send(`https://127.0.0.1:${gatewayPort}/hello/pkg`, { token })
  t.equal(res.status, 200, res.text)
  t.same(res.json(), { from: 'scratch-function', sub: 'alice', path: '/hello/pkg' }, 'the user\'s function verified the gateway assertion with portcullis/verify')
  t.equal((await client.send(`https://127.0.0.1:${gatewayPort}/hello/pkg`)).status, 401, 'no token, no call')
})
