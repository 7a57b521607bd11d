import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { importJWK, SignJWT, type JWK } from 'jose'
import { GATEWAY_SPIFFE_ID } from '../../src/demo/state.js'
import { compose, composeMounts } from '../helpers/compose.js'
import { httpsClient } from '../helpers/http.js'
import { startBundleNginx, type BundleNginx } from '../helpers/nginx.js'
import { freePort } from '../helpers/ports.js'
import { startRedis } from '../helpers/redis.js'
import { buildImage, podman, waitFor } from '../helpers/podman.js'

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
const exec = promisify(execFile)

/** Runs a throw-away container of the image, offline, with node as entrypoint and its default user. */
async function nodeInImage (script: string): Promise<string> {
  const res = await podman(['run', '--rm', '--network=none', '--entrypoint', 'node', IMAGE, '-e', script])
  if (res.code !== 0) throw new Error(`node in image failed: ${res.stderr}`)
  return res.stdout
}

await buildImage(IMAGE)

t.test('the image: non-root user, two ports, healthcheck, production files only', async t => {
  const inspect = await podman(['image', 'inspect', IMAGE])
  t.equal(inspect.code, 0, inspect.stderr)
  // Podman reports the Docker-format HEALTHCHECK beside the OCI config, not inside it.
  const [image] = JSON.parse(inspect.stdout) as Array<{ Config: Record<string, any>, Healthcheck?: { Test: string[] } }>
  const config = image!.Config
  t.equal(config.User, '1000:1000', 'runs as the unprivileged node user, numerically')
  t.same(Object.keys(config.ExposedPorts ?? {}).sort(), ['8443/tcp', '9090/tcp'], 'only the public and admin ports')
  t.same(config.Entrypoint, ['node', 'dist/cli.js'])
  t.same(config.Cmd, ['start', '-c', '/etc/portcullis/config.yaml'])
  t.equal(config.StopSignal, 'SIGTERM')
  t.match(image!.Healthcheck?.Test.join(' '), /^CMD node -e fetch\('http:\/\/127\.0\.0\.1:.*\/healthz'/, 'HEALTHCHECK probes the admin listener')

  const facts = JSON.parse(await nodeInImage(`
    const fs = require('node:fs')
    const has = p => fs.existsSync(p)
    console.log(JSON.stringify({
      node: process.versions.node, uid: process.getuid(),
      bundle: fs.statSync('/app/build/bundle.tar.gz').size,
      app: fs.readdirSync('/app').sort(),
      devDeps: ['typescript', 'tap', 'tsx', 'autocannon'].filter(d => has('/app/node_modules/' + d)),
      prodDeps: ['fastify', 'undici', 'jose', '@open-policy-agent/opa-wasm'].filter(d => has('/app/node_modules/' + d)),
      packageManagers: ['npm', 'npx', 'corepack'].filter(b => has('/usr/local/bin/' + b) || has('/usr/local/lib/node_modules/' + b)),
      state: (() => { const s = fs.statSync('/var/lib/portcullis'); return { uid: s.uid, gid: s.gid } })(),
      appWritable: (() => { try { fs.accessSync('/app', fs.constants.W_OK); return true } catch { return false } })()
    }))`)) as Record<string, any>
  t.match(facts.node, /^24\./, 'Node 24 LTS')
  t.equal(facts.uid, 1000)
  t.ok(facts.bundle > 0, 'the policy bundle compiled by the OPA stage is in the image')
  t.same(facts.app, ['build', 'dist', 'node_modules', 'package.json'], 'no sources, tests or lockfile in the runtime')
  t.same(facts.devDeps, [], 'no dev dependencies')
  t.same(facts.prodDeps, ['fastify', 'undici', 'jose', '@open-policy-agent/opa-wasm'])
  t.same(facts.packageManagers, [], 'no npm, npx or corepack at run time')
  t.same(facts.state, { uid: 1000, gid: 1000 }, '/var/lib/portcullis belongs to the gateway\'s user, for the state volume')
  t.equal(facts.appWritable, false, 'the app folder belongs to root')
})

t.test('the dockerfile pins the OPA the project pins', async t => {
  const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8')
  const { OPA_VERSION } = await import('../../scripts/opa.mjs')
  t.match(dockerfile, new RegExp(`^ARG OPA_IMAGE=openpolicyagent/opa:${OPA_VERSION.replaceAll('.', '\\.')}$`, 'm'))
})

interface Stack { certs: string, bundleUrl: string, redisUrl: string, token: (sub: string, role: string) => Promise<string>, nginx: BundleNginx }
interface Running { name: string, url: string, adminUrl: string, logs: () => Promise<string> }

/** A compose service's mounts as podman arguments, the host side moved to this test's files. */
function volumeArgs (service: string, where: Parameters<typeof composeMounts>[1]): string[] {
  return composeMounts(service, where).flatMap(m => ['--volume', `${m.source}:${m.target}${m.readOnly ? ':ro' : ''}`])
}

/** Starts a container of the image, read-only, without capabilities, on the host's network (loopback). */
async function runContainer (t: Test, name: string, args: string[]): Promise<() => Promise<string>> {
  const run = await podman([
    'run', '--detach', '--name', name,
    '--network=host', '--read-only', '--read-only-tmpfs=false', '--cap-drop=all', '--security-opt=no-new-privileges',
    ...args
  ])
  if (run.code !== 0) throw new Error(`podman run ${name} failed: ${run.stderr}`)
  t.teardown(async () => { await podman(['rm', '--force', '--time', '0', name]) })
  return async () => { const l = await podman(['logs', name]); return l.stdout + l.stderr }
}

/**
 * What compose runs beside the gateway, on this machine's loopback: certificates from
 * docker/make-certs.sh; the compose `bundle` step run as compose runs it, in the OPA image; the signed
 * bundle served by Debian's nginx on the compose server block (no nginx image can be had here); a real
 * redis-server; the demo function as a container of the image.
 */
async function startStack (t: Test): Promise<Stack & { fnUrl: string }> {
  const dir = t.testdir({ bundles: {} })
  const certs = join(dir, 'certs')
  await exec('bash', [join(ROOT, 'docker/make-certs.sh'), certs])
  const bundle = compose.services.bundle!
  const step = await podman([
    'run', '--rm', `--network=${bundle.network_mode}`, '--read-only', '--cap-drop=all', '--security-opt=no-new-privileges', '--user', bundle.user,
    '--workdir', bundle.working_dir, ...volumeArgs('bundle', { certs, volumes: { bundles: join(dir, 'bundles') } }),
    `docker.io/${bundle.image}`, ...bundle.command
  ])
  if (step.code !== 0) throw new Error(`the compose bundle step failed: ${step.stderr}`)
  const nginx = await startBundleNginx(t, { certs: join(certs, 'bundles'), bundles: join(dir, 'bundles') })
  const redis = await startRedis(t)
  // The compose function service: its entrypoint, command and mounts, on a loopback port of its own.
  const fn = compose.services.function!
  const fnPort = await freePort()
  const command = (fn.command as string[]).map((a, i, all) => all[i - 1] === '--host' ? '127.0.0.1' : all[i - 1] === '--port' ? String(fnPort) : a)
  await runContainer(t, `portcullis-fn-${randomUUID().slice(0, 8)}`, [
    ...volumeArgs('function', { certs }), '--entrypoint', JSON.stringify(fn.entrypoint), IMAGE, ...command
  ])
  // The token `npx portcullis demo token --dir docker/certs` would print: the issuer key made by the script.
  const jwk = JSON.parse(await readFile(join(certs, 'issuer-signing-key.json'), 'utf8')) as JWK & { kid: string }
  const { issuer } = JSON.parse(await readFile(join(certs, 'issuer.json'), 'utf8')) as { issuer: string }
  const token = async (sub: string, role: string) => new SignJWT({ roles: [role] })
    .setProtectedHeader({ alg: 'ES256', kid: jwk.kid })
    .setIssuer(issuer).setAudience('portcullis-demo').setSubject(sub).setExpirationTime('5m')
    .sign(await importJWK(jwk, 'ES256'))
  return { certs, bundleUrl: `${nginx.origin}/bundles/bundle.tar.gz`, redisUrl: redis.url, token, nginx, fnUrl: `https://127.0.0.1:${fnPort}` }
}

/**
 * A gateway container as compose runs it: the compose file's mounts (docker/config/gateway.yaml, the
 * gateway's folder of certificates, the state volume at /var/lib/portcullis), the service addresses
 * from the environment (the config reads them there), so that nothing here collides. Resolves once
 * /readyz answers 200.
 */
async function runComposeGateway (t: Test, stack: Stack & { fnUrl: string }, volume: string): Promise<Running> {
  const [port, adminPort] = [await freePort(), await freePort()]
  const name = `portcullis-gw-${randomUUID().slice(0, 8)}`
  const logs = await runContainer(t, name, [
    ...volumeArgs('gateway', { certs: stack.certs, volumes: { 'gateway-state': volume } }),
    '--env', `PORTCULLIS_PORT=${port}`, '--env', `PORTCULLIS_ADMIN_PORT=${adminPort}`,
    '--env', `FUNCTION_URL=${stack.fnUrl}`, '--env', `BUNDLE_URL=${stack.bundleUrl}`, '--env', `REDIS_URL=${stack.redisUrl}`,
    IMAGE
  ])
  const adminUrl = `http://127.0.0.1:${adminPort}`
  const state = await waitFor('/readyz', async () => {
    const status = (await podman(['inspect', '--format', '{{.State.Status}}', name])).stdout.trim()
    if (status !== 'running') return status
    const res = await fetch(`${adminUrl}/readyz`)
    return res.status === 200 ? status : undefined
  }).catch((err: Error) => err.message)
  if (state !== 'running') throw new Error(`gateway container not ready (${state}):\n${await logs()}`)
  return { name, url: `https://127.0.0.1:${port}`, adminUrl, logs }
}

/** A named volume, fresh: the image's /var/lib/portcullis (owned by uid 1000) is copied up into it. */
async function stateVolume (t: Test): Promise<string> {
  const name = `portcullis-state-${randomUUID().slice(0, 8)}`
  const created = await podman(['volume', 'create', name])
  if (created.code !== 0) throw new Error(`podman volume create failed: ${created.stderr}`)
  t.teardown(async () => { await podman(['volume', 'rm', '--force', name]) })
  return name
}

t.test('read-only, non-root, compose config mounted: ready on the signed bundle and Redis, 200 through mTLS with a token, 401 without, clean exit on SIGTERM', async t => {
  const stack = await startStack(t)
  const gw = await runComposeGateway(t, stack, await stateVolume(t))
  const ready = await fetch(`${gw.adminUrl}/readyz`)
  t.equal(ready.status, 200)
  t.match(await ready.json(), { status: 'ready', checks: { policy: true, 'issuer:demo': true, rate_limit_store: true } })
  t.match(await (await fetch(`${gw.adminUrl}/status`)).json(), {
    policy: { origin: 'source', source: stack.bundleUrl, signed_by: 'default' },
    rate_limit_store: { type: 'redis', up: true }
  }, 'the policy came signed from the bundle server; limits are counted in Redis')
  t.equal((await podman(['healthcheck', 'run', gw.name])).code, 0, 'the image HEALTHCHECK passes')

  const token = await stack.token('alice', 'reader')
  const client = httpsClient(t, join(stack.certs, 'ca.crt'))
  const ok = await client.send(`${gw.url}/hello`, { token })
  t.equal(ok.status, 200, ok.text)
  t.match(ok.json(), { path: '/hello', headers: { 'x-portcullis-subject': 'alice' }, gateway: { verified: true, uri_sans: [GATEWAY_SPIFFE_ID] } },
    'the function container saw the gateway over mTLS')
  const forbidden = await client.send(`${gw.url}/orders`, { method: 'POST', token, body: '{}' })
  t.equal(forbidden.status, 403, 'the signed policy refuses a reader\'s write')
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
  t.match(await inside("process.stdout.write(require('fs').readdirSync('/var/lib/portcullis').join(','))"), /bundle/,
    'the last good bundle was written to the state volume, the one writable place')

  const stop = await podman(['stop', '--time', String(DRAIN_SECONDS), gw.name])
  t.equal(stop.code, 0, stop.code === 0 ? 'podman stop' : stop.stderr)
  const state = JSON.parse((await podman(['inspect', '--format', '{{json .State}}', gw.name])).stdout) as { ExitCode: number, OOMKilled: boolean }
  t.equal(state.ExitCode, 0, 'SIGTERM drained and exited 0 before the stop timeout (a kill would be 137)')
  const log = await gw.logs()
  t.match(log, /shutting down: draining in-flight requests/, 'the drain is logged')
  t.notMatch(log, token.split('.')[2]!, 'the token never appears in the logs')
})

t.test('two gateway containers share one Redis budget; a restart without the bundle server starts on the persisted bundle', async t => {
  const stack = await startStack(t)
  const volumes = [await stateVolume(t), await stateVolume(t)]
  const replicas = [await runComposeGateway(t, stack, volumes[0]!), await runComposeGateway(t, stack, volumes[1]!)]
  const client = httpsClient(t, join(stack.certs, 'ca.crt'))
  // The compose config allows 10 requests per 10 s per caller and route, whichever replica answers.
  const token = await stack.token('carol', 'reader')
  const statuses: number[] = []
  for (let i = 0; i < 14; i++) statuses.push((await client.send(`${replicas[i % 2]!.url}/hello`, { token })).status)
  t.same(statuses, [...Array(10).fill(200), ...Array(4).fill(429)], 'the 11th request is refused, by either replica')

  await stack.nginx.stop()
  await podman(['rm', '--force', '--time', '0', replicas[0]!.name])
  const restarted = await runComposeGateway(t, stack, volumes[0]!)
  t.match(await (await fetch(`${restarted.adminUrl}/status`)).json(), { policy: { origin: 'persisted', signed_by: 'default' } },
    'ready on the bundle its volume kept, verified again')
  const writer = await client.send(`${restarted.url}/orders`, { method: 'POST', token: await stack.token('dave', 'writer'), body: '{}' })
  t.equal(writer.status, 201, writer.status === 201 ? 'a writer\'s order goes through' : writer.text)
})
