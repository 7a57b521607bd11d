import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { createServer, type AddressInfo } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { startDemoFunction } from '../../src/demo/function.js'
import { GATEWAY_SPIFFE_ID } from '../../src/demo/state.js'
import { createCa } from '../../src/tls/pki.js'
import { httpsClient } from '../helpers/http.js'
import { makeKey, sign } from '../helpers/idp.js'

/*
 * The real image, built from the unmodified Dockerfile with Podman on top of locally built stand-ins
 * for its base images (scripts/container-stand-ins.sh, run first by `npm run test:container`), then
 * run as a user would: read-only root, its own non-root user, config mounted, no capabilities.
 * The container shares the host's network namespace so that all traffic stays on loopback.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const IMAGE = 'localhost/portcullis:container-test'
// Must match the drain deadline in src/server.ts (closeOnSignals): podman kills after this long.
const DRAIN_SECONDS = 10
const env = { ...process.env, CONTAINERS_CONF: process.env.CONTAINERS_CONF ?? join(ROOT, 'test/container/containers.conf') }
const exec = promisify(execFile)

async function podman (args: string[]): Promise<{ code: number, stdout: string, stderr: string }> {
  try {
    const { stdout, stderr } = await exec('podman', args, { env, maxBuffer: 64 << 20 })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number, stdout: string, stderr: string }
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) }
  }
}

/** Runs a throw-away container of the image, offline, with node as entrypoint and its default user. */
async function nodeInImage (script: string): Promise<string> {
  const res = await podman(['run', '--rm', '--network=none', '--entrypoint', 'node', IMAGE, '-e', script])
  if (res.code !== 0) throw new Error(`node in image failed: ${res.stderr}`)
  return res.stdout
}

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise(resolve => server.close(resolve))
  return port
}

async function waitFor<T> (what: string, probe: () => Promise<T | undefined>, attempts = 120): Promise<T> {
  for (let i = 0; i < attempts; i++) {
    const value = await probe().catch(() => undefined)
    if (value !== undefined) return value
    await new Promise(resolve => setTimeout(resolve, 500))
  }
  throw new Error(`gave up waiting for ${what}`)
}

// Docker's image format: the OCI format has no HEALTHCHECK.
const build = await podman(['build', '--pull=never', '--network=host', '--format=docker', '-f', join(ROOT, 'Dockerfile'), '-t', IMAGE, ROOT])
if (build.code !== 0) throw new Error(`podman build failed:\n${build.stderr.slice(-4000)}`)

t.test('the image: pinned bases, non-root user, two ports, healthcheck, production files only', async t => {
  const inspect = await podman(['image', 'inspect', IMAGE])
  t.equal(inspect.code, 0, inspect.stderr)
  const [image] = JSON.parse(inspect.stdout) as Array<{ Config: Record<string, any> }>
  const config = image!.Config
  t.equal(config.User, '1000:1000', 'runs as the unprivileged node user, numerically')
  t.same(Object.keys(config.ExposedPorts ?? {}).sort(), ['8443/tcp', '9090/tcp'], 'only the public and admin ports')
  t.same(config.Entrypoint, ['node', 'dist/cli.js'])
  t.same(config.Cmd, ['start', '-c', '/etc/portcullis/config.yaml'])
  t.equal(config.StopSignal, 'SIGTERM')
  t.match(config.Healthcheck?.Test?.join(' '), /\/healthz/, 'HEALTHCHECK probes the admin listener')

  const facts = JSON.parse(await nodeInImage(`
    const fs = require('node:fs')
    const has = p => fs.existsSync(p)
    console.log(JSON.stringify({
      node: process.versions.node, uid: process.getuid(),
      bundle: fs.statSync('/app/build/bundle.tar.gz').size,
      app: fs.readdirSync('/app').sort(),
      devDeps: ['typescript', 'tap', 'tsx', 'autocannon'].filter(d => has('/app/node_modules/' + d)),
      prodDeps: ['fastify', 'undici', 'jose', '@open-policy-agent/opa-wasm'].filter(d => has('/app/node_modules/' + d)),
      appWritable: (() => { try { fs.accessSync('/app', fs.constants.W_OK); return true } catch { return false } })()
    }))`)) as Record<string, any>
  t.match(facts.node, /^24\./, 'Node 24 LTS')
  t.equal(facts.uid, 1000)
  t.ok(facts.bundle > 0, 'the policy bundle compiled by the OPA stage is in the image')
  t.same(facts.app, ['build', 'dist', 'node_modules', 'package.json'], 'no sources, tests or lockfile in the runtime')
  t.same(facts.devDeps, [], 'no dev dependencies')
  t.same(facts.prodDeps, ['fastify', 'undici', 'jose', '@open-policy-agent/opa-wasm'])
  t.equal(facts.appWritable, false, 'the app folder belongs to root')
})

t.test('the dockerfile pins the OPA the project pins', async t => {
  const { readFile } = await import('node:fs/promises')
  const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8')
  const { OPA_VERSION } = await import('../../scripts/opa.mjs')
  t.match(dockerfile, new RegExp(`^ARG OPA_IMAGE=openpolicyagent/opa:${OPA_VERSION.replaceAll('.', '\\.')}$`, 'm'))
})

interface Running { name: string, url: string, adminUrl: string, dir: string, token: string, logs: () => Promise<string> }

/** Certificates, keys and config made now; an mTLS-only function on the host; the image run on them. */
async function runGateway (t: Test): Promise<Running> {
  const ca = await createCa('Container test CA')
  const server = await ca.issue({ commonName: 'gateway', ipAddresses: ['127.0.0.1'], usage: 'server' })
  const client = await ca.issue({ commonName: 'gateway-client', uris: [GATEWAY_SPIFFE_ID], usage: 'client' })
  const fnCert = await ca.issue({ commonName: 'function', dnsNames: ['localhost'], usage: 'server' })
  const key = makeKey('ES256')
  const [port, adminPort] = [await freePort(), await freePort()]
  const dir = t.testdir({
    tls: {
      'ca.crt': ca.cert, 'gateway.crt': server.cert, 'gateway.key': server.key, 'gateway-client.crt': client.cert, 'gateway-client.key': client.key
    },
    'jwks.json': JSON.stringify({ keys: [key.publicJwk] }),
    'fn.crt': fnCert.cert,
    'fn.key': fnCert.key,
    // The same shape as docker/config/gateway.yaml: files under /etc/portcullis, the rest from env.
    'config.yaml': `
listen:
  host: 127.0.0.1
  port: \${PORTCULLIS_PORT}
  tls: { cert: tls/gateway.crt, key: tls/gateway.key }
admin: { host: 127.0.0.1, port: \${PORTCULLIS_ADMIN_PORT} }
issuers:
  - id: test
    issuer: https://idp.test
    audiences: [portcullis]
    algorithms: [ES256]
    jwks: { file: jwks.json }
policy: { bundle: /app/build/bundle.tar.gz }
upstreams:
  - id: fn
    url: \${FUNCTION_URL}
    tls: { ca: tls/ca.crt, cert: tls/gateway-client.crt, key: tls/gateway-client.key, servername: localhost }
routes:
  - id: hello
    prefix: /hello
    methods: [GET]
    upstream: fn
`
  })
  const fn = await startDemoFunction({
    host: '127.0.0.1', port: 0, cert: join(dir, 'fn.crt'), key: join(dir, 'fn.key'), clientCa: join(dir, 'tls/ca.crt'), allowedClient: GATEWAY_SPIFFE_ID
  })
  t.teardown(fn.close)
  const name = `portcullis-test-${randomUUID().slice(0, 8)}`
  const run = await podman([
    'run', '--detach', '--name', name,
    '--network=host', '--read-only', '--read-only-tmpfs=false',
    '--cap-drop=all', '--security-opt=no-new-privileges',
    '--volume', `${dir}:/etc/portcullis:ro`,
    '--env', `PORTCULLIS_PORT=${port}`, '--env', `PORTCULLIS_ADMIN_PORT=${adminPort}`, '--env', `FUNCTION_URL=${fn.url}`,
    IMAGE
  ])
  t.equal(run.code, 0, run.stderr)
  t.teardown(async () => { await podman(['rm', '--force', '--time', '0', name]) })
  const logs = async (): Promise<string> => { const l = await podman(['logs', name]); return l.stdout + l.stderr }
  const adminUrl = `http://127.0.0.1:${adminPort}`
  const state = await waitFor('/readyz', async () => {
    const status = (await podman(['inspect', '--format', '{{.State.Status}}', name])).stdout.trim()
    if (status !== 'running') return status
    const res = await fetch(`${adminUrl}/readyz`)
    return res.status === 200 ? status : undefined
  }).catch((err: Error) => err.message)
  if (state !== 'running') throw new Error(`gateway container not ready (${state}):\n${await logs()}`)
  const token = await sign(key, { iss: 'https://idp.test', aud: 'portcullis', sub: 'alice', roles: ['reader'] })
  return { name, url: `https://127.0.0.1:${port}`, adminUrl, dir, token, logs }
}

t.test('read-only, non-root, mounted config: ready, 200 with a token, 401 without, clean exit on SIGTERM', async t => {
  const gw = await runGateway(t)
  const ready = await fetch(`${gw.adminUrl}/readyz`)
  t.equal(ready.status, 200)
  t.match(await ready.json(), { status: 'ready', checks: { policy: true, 'issuer:test': true } })
  t.equal((await podman(['healthcheck', 'run', gw.name])).code, 0, 'the image HEALTHCHECK passes')

  const client = httpsClient(t, join(gw.dir, 'tls/ca.crt'))
  const ok = await client.send(`${gw.url}/hello`, { token: gw.token })
  t.equal(ok.status, 200, ok.text)
  t.match(ok.json(), { path: '/hello', gateway: { verified: true, uri_sans: [GATEWAY_SPIFFE_ID] } }, 'the function saw the gateway over mTLS')
  const refused = await client.send(`${gw.url}/hello`)
  t.equal(refused.status, 401)
  t.match(refused.headers['www-authenticate'], /^Bearer/)

  const inside = async (script: string): Promise<string> => {
    const res = await podman(['exec', gw.name, 'node', '-e', script])
    return res.code === 0 ? res.stdout.trim() : `failed: ${res.stderr}`
  }
  t.equal(await inside('process.stdout.write(String(process.getuid()))'), '1000', 'processes run as uid 1000')
  t.match(await inside("process.stdout.write(require('fs').readFileSync('/proc/1/cmdline','utf8').split('\\0').join(' '))"),
    /^node dist\/cli\.js start/, 'the gateway is PID 1, no shell in between')
  for (const path of ['/app/x', '/tmp/x', '/home/node/x']) {
    t.match(await inside(`try { require('fs').writeFileSync('${path}', 'x'); process.stdout.write('wrote') } catch (e) { process.stdout.write(e.code) }`),
      /^(EROFS|EACCES)$/, `${path} is not writable`)
  }

  const stop = await podman(['stop', '--time', String(DRAIN_SECONDS), gw.name])
  t.equal(stop.code, 0, stop.stderr)
  const state = JSON.parse((await podman(['inspect', '--format', '{{json .State}}', gw.name])).stdout) as { ExitCode: number, OOMKilled: boolean }
  t.equal(state.ExitCode, 0, 'SIGTERM drained and exited 0 before the stop timeout (a kill would be 137)')
  const log = await gw.logs()
  t.match(log, /shutting down: draining in-flight requests/)
  t.notMatch(log, gw.token.split('.')[2]!, 'the token never appears in the logs')
})
