import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdir, readdir, readFile, rm, stat, symlink } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { list } from 'tar'
import { Agent } from 'undici'
import { parse } from 'yaml'
import { resolveOpa } from '../../scripts/opa.mjs'
import { loadConfig } from '../../src/config/load.js'
import { startDemoFunction } from '../../src/demo/function.js'
import { GATEWAY_SPIFFE_ID } from '../../src/demo/state.js'
import { startGateway } from '../../src/server.js'
import { compose, composeMounts } from '../helpers/compose.js'
import { httpsClient } from '../helpers/http.js'
import { ROOT } from '../helpers/deploy-tools.js'
import { startBundleNginx } from '../helpers/nginx.js'
import { startRedis } from '../helpers/redis.js'
import { systemTool } from '../helpers/system-tools.js'

/*
 * docker-compose.yml cannot be started here (no Docker engine, no registry images), so its parts are
 * proven one by one: the file's promises (loopback ports, hardening, pinned images), the cert script
 * and the gateway config it mounts (two real gateways on them, with the signed bundle from the
 * compose bundle step served by Debian's nginx running the compose server block, a real Redis, the
 * demo function over mTLS, and tokens from `portcullis demo token --dir`).
 * test/container runs the same config and certificates in the real image.
 */

const exec = promisify(execFile)
const CLI = join(ROOT, 'dist/cli.js')
const services = compose.services
const networksOf = (name: string): string[] => {
  const n = services[name]!.networks ?? []
  return (Array.isArray(n) ? [...n] : Object.keys(n)).sort()
}

t.test('the stack: gateway, mTLS function, Redis, signed bundle server, Prometheus', async t => {
  t.same(Object.keys(services).sort(), ['bundle', 'bundles', 'function', 'gateway', 'prometheus', 'redis'])
  for (const [name, s] of Object.entries(services)) {
    for (const port of (s.ports ?? []) as string[]) t.match(port, /^127\.0\.0\.1:\d+:\d+$/, `${name} publishes ${port} on loopback only`)
    t.equal(s.read_only, true, `${name} has a read-only root`)
    t.same(s.cap_drop, ['ALL'], `${name} drops all capabilities`)
    t.ok((s.security_opt as string[]).includes('no-new-privileges:true'), `${name} cannot gain privileges`)
    if (s.build === undefined) t.match(s.image, /^[\w./-]+:(v?\d+\.\d+\.\d+[\w.-]*|local)$/, `${name} image pinned by version`)
  }
  t.same(services.function!.ports, undefined, 'the function is not published: only the gateway reaches it')
  const dockerfile = await readFile(join(ROOT, 'Dockerfile'), 'utf8')
  t.equal(services.bundle!.image, /^ARG OPA_IMAGE=(.+)$/m.exec(dockerfile)?.[1], 'the bundle step uses the Dockerfile\'s OPA')
  const entrypoints = (args: string[]): string[] => args.flatMap((a, i) => args[i - 1] === '-e' ? [a] : [])
  const imageBuild = JSON.parse(/RUN (\["\/opa", "build".*?\])\n/s.exec(dockerfile.replaceAll('\\\n', ''))![1]!) as string[]
  t.same(entrypoints(services.bundle!.command), entrypoints(imageBuild), 'the served bundle has the image\'s entrypoints')
  t.same(services.gateway!.volumes, ['./docker/config/gateway.yaml:/etc/portcullis/config.yaml:ro', './docker/certs/gateway:/etc/portcullis/tls:ro', 'gateway-state:/var/lib/portcullis'],
    'config and the gateway\'s certificates read-only; a volume for the last good bundle where the config keeps it')
  const config = await readFile(join(ROOT, 'docker/config/gateway.yaml'), 'utf8')
  t.match(config, 'persistDirectory: ${PORTCULLIS_STATE_DIR:-/var/lib/portcullis}')
  for (const neighbour of ['${FUNCTION_URL:-https://function:8445}', '${BUNDLE_URL:-https://bundles:8446/bundles/bundle.tar.gz}', '${REDIS_URL:-redis://redis:6379}']) {
    t.ok(config.includes(neighbour), `the config reaches its neighbour by service name: ${neighbour}`)
  }
  t.match(services.bundles!.healthcheck.test.join(' '), 'https://bundles:8446/', 'the bundle server listens where the gateway looks')
  t.ok(parseInt(services.gateway!.stop_grace_period) > 10, 'compose waits longer than the gateway drains')

  // Each service mounts its own folder of docker/certs; the CA key and the issuer's key stay on the host.
  const certMounts = Object.fromEntries(Object.entries(services).map(([name, s]) =>
    [name, ((s.volumes ?? []) as string[]).map(v => v.split(':')[0]!).filter(source => source.startsWith('./docker/certs'))]))
  t.same(certMounts, {
    gateway: ['./docker/certs/gateway'], function: ['./docker/certs/function'], bundles: ['./docker/certs/bundles'], bundle: ['./docker/certs/signing'], redis: [], prometheus: []
  }, 'no container is given another service\'s keys')
  for (const s of Object.values(services)) {
    for (const v of (s.volumes ?? []) as string[]) {
      const source = v.split(':')[0]!
      if (source.startsWith('./') && !source.startsWith('./docker/certs')) t.ok(await readFile(join(ROOT, source)).then(() => true, (e: NodeJS.ErrnoException) => e.code === 'EISDIR'), `${source} exists`)
    }
  }

  // Networks: each one joins the gateway to one neighbour, so the function reaches nothing else.
  t.same(networksOf('gateway'), ['edge', 'functions', 'policy', 'state'])
  t.same(networksOf('function'), ['functions'])
  t.same(networksOf('redis'), ['state'])
  t.same(networksOf('bundles'), ['policy'])
  t.same(networksOf('prometheus'), ['edge'], 'Prometheus reaches the admin listener over the edge network only')
  // The admin listener is bound to the gateway's address on edge, so no other network reaches it.
  const adminHost = '${PORTCULLIS_ADMIN_HOST:-172.30.90.10}'
  t.equal(services.gateway!.environment?.PORTCULLIS_ADMIN_HOST, adminHost, 'the gateway binds its admin listener to its edge address')
  t.equal(services.gateway!.networks.edge.ipv4_address, adminHost, 'which is fixed')
  t.equal(compose.networks.edge?.ipam?.config[0]?.subnet, '${PORTCULLIS_EDGE_SUBNET:-172.30.90.0/24}')
  t.match(services.gateway!.healthcheck.test.join(' '), 'process.env.PORTCULLIS_ADMIN_HOST', 'the health check asks it there')
  t.equal(services.bundle!.network_mode, 'none', 'the bundle step needs no network')
  for (const n of ['functions', 'state', 'policy']) t.equal(compose.networks[n]?.internal, true, `${n} is internal (no route out)`)

  const prometheus = parse(await readFile(join(ROOT, 'docker/prometheus/prometheus.yml'), 'utf8')) as { scrape_configs: Array<{ static_configs: Array<{ targets: string[] }> }> }
  t.same(prometheus.scrape_configs[0]!.static_configs[0]!.targets, ['gateway:9090'], 'Prometheus scrapes the admin listener')
})

t.test('make-certs: each folder holds what its service needs, readable by that service\'s user only', async t => {
  const certs = join(t.testdir(), 'certs')
  await exec('bash', [join(ROOT, 'docker/make-certs.sh'), certs])
  const list = async (dir: string) => (await readdir(join(certs, dir))).sort()
  t.same(await list('.'), ['bundles', 'ca.crt', 'ca.key', 'function', 'gateway', 'issuer-signing-key.json', 'issuer.json', 'signing'])
  t.same(await list('gateway'), ['bundle-signing.pem', 'ca.crt', 'gateway-client.crt', 'gateway-client.key', 'gateway.crt', 'gateway.key', 'jwks.json'])
  t.same(await list('function'), ['ca.crt', 'function.crt', 'function.key'])
  t.same(await list('bundles'), ['bundles.crt', 'bundles.key', 'ca.crt'])
  t.same(await list('signing'), ['bundle-signing.key'])
  const mode = async (path: string) => (await stat(join(certs, path))).mode & 0o777
  const group = async (path: string) => (await stat(join(certs, path))).gid
  for (const key of ['ca.key', 'issuer-signing-key.json', 'bundles/bundles.key', 'signing/bundle-signing.key']) t.equal(await mode(key), 0o600, `${key}: owner only`)
  for (const key of ['gateway/gateway.key', 'gateway/gateway-client.key', 'function/function.key']) {
    t.equal(await mode(key), 0o640, `${key}: owner and group`)
    t.equal(await group(key), 1000, `${key}: group 1000, the container user's`)
  }
  const pem = async (path: string) => readFile(join(certs, path), 'utf8')
  t.equal(await pem('gateway/ca.crt'), await pem('ca.crt'))
  // Run again: everything kept, and certificates still chain to the CA.
  const before = await pem('gateway/gateway.key')
  await exec('bash', [join(ROOT, 'docker/make-certs.sh'), certs])
  t.equal(await pem('gateway/gateway.key'), before, 'a second run keeps the keys')
  await exec(systemTool('openssl'), ['verify', '-CAfile', join(certs, 'ca.crt'), join(certs, 'gateway/gateway.crt'), join(certs, 'function/function.crt'), join(certs, 'bundles/bundles.crt')])
  // A new CA (its key deleted) reissues every certificate under it.
  await rm(join(certs, 'ca.key'))
  await exec('bash', [join(ROOT, 'docker/make-certs.sh'), certs])
  t.not(await pem('gateway/gateway.key'), before, 'new leaf keys under a new CA')
  await exec(systemTool('openssl'), ['verify', '-CAfile', join(certs, 'ca.crt'), join(certs, 'gateway/gateway.crt'), join(certs, 'gateway/gateway-client.crt'), join(certs, 'function/function.crt')])
  t.equal(await pem('function/ca.crt'), await pem('ca.crt'), 'and the copies of the CA follow')
})

/**
 * What compose mounts, made in `dir`: `certs/` by docker/make-certs.sh (docker/certs), and
 * `bundles/` by the compose `bundle` step's command run with the pinned OPA (the bundles volume).
 */
async function composeFiles (dir: string): Promise<{ certs: string, bundles: string }> {
  const certs = join(dir, 'certs')
  const bundles = join(dir, 'bundles')
  await exec('bash', [join(ROOT, 'docker/make-certs.sh'), certs])
  await mkdir(bundles, { recursive: true })
  const hostPath = Object.fromEntries(composeMounts('bundle', { certs, volumes: { bundles } }).map(m => [m.target, m.source]))
  const args = (services.bundle!.command as string[]).map(a => a.replace('/certs/', `${hostPath['/certs']}/`).replace('/srv/bundles/', `${bundles}/`))
  await exec(await resolveOpa(), args, { cwd: hostPath['/policies'] })
  return { certs, bundles }
}

/**
 * A service's filesystem as compose gives it, under `dir`: each mount a symbolic link at its target
 * path, so that paths in the service's config and command resolve as they do in the container.
 */
async function mountedAt (dir: string, service: string, where: Parameters<typeof composeMounts>[1]): Promise<string> {
  for (const m of composeMounts(service, where)) {
    await mkdir(dirname(join(dir, m.target)), { recursive: true })
    await symlink(m.source, join(dir, m.target))
  }
  return dir
}

t.test('make-certs + the compose gateway config: two replicas on the signed bundle server and one Redis, in front of the mTLS function', async t => {
  const root = t.testdir({ state: {} })
  const { certs, bundles } = await composeFiles(root)
  const nginx = await startBundleNginx(t, { certs: join(certs, 'bundles'), bundles })
  const redis = await startRedis(t)
  // The demo function with the compose command's paths, on what compose mounts for it.
  const fnRoot = await mountedAt(join(root, 'function'), 'function', { certs })
  const arg = (name: string): string => join(fnRoot, (services.function!.command as string[])[(services.function!.command as string[]).indexOf(name) + 1]!)
  const fn = await startDemoFunction({ host: '127.0.0.1', port: 0, cert: arg('--cert'), key: arg('--key'), clientCa: arg('--client-ca'), allowedClient: GATEWAY_SPIFFE_ID })
  t.teardown(fn.close)
  // The gateway's filesystem as compose mounts it; service names moved to this machine's loopback.
  const gwRoot = await mountedAt(join(root, 'gateway'), 'gateway', { certs, volumes: { 'gateway-state': join(root, 'state') } })
  const bundleUrl = `${nginx.origin}/bundles/bundle.tar.gz`
  const env = {
    PORTCULLIS_PORT: '0', PORTCULLIS_ADMIN_PORT: '0', PORTCULLIS_LOG_LEVEL: 'warn', FUNCTION_URL: fn.url,
    BUNDLE_URL: bundleUrl, REDIS_URL: redis.url, PORTCULLIS_STATE_DIR: join(gwRoot, 'var/lib/portcullis')
  }
  const start = async () => {
    const gateway = await startGateway(await loadConfig(join(gwRoot, 'etc/portcullis/config.yaml'), env), { bundleWatchIntervalMs: 0 })
    t.teardown(gateway.close)
    return gateway
  }
  const replicas = [await start(), await start()]
  const client = httpsClient(t, join(certs, 'ca.crt'))
  for (const gateway of replicas) {
    const ready = await client.send(`${gateway.adminUrl}/readyz`)
    t.equal(ready.status, 200, ready.text)
    t.match(ready.json(), { checks: { policy: true, rate_limit_store: true } })
    t.match((await client.send(`${gateway.adminUrl}/status`)).json(), {
      policy: { origin: 'source', source: bundleUrl, signed_by: 'default' },
      rate_limit_store: { type: 'redis', up: true }
    }, 'the policy came signed from nginx; limits are counted in Redis')
  }

  const token = async (sub: string, role: string) => (await exec(process.execPath, [CLI, 'demo', 'token', '--dir', certs, '--sub', sub, '--role', role])).stdout.trim()
  const writer = await token('bob', 'writer')
  const ok = await client.send(`${replicas[0]!.url}/orders`, { method: 'POST', token: writer, body: '{}' })
  t.equal(ok.status, 201, ok.text)
  t.match(ok.json(), { path: '/orders', gateway: { verified: true, uri_sans: [GATEWAY_SPIFFE_ID] } })
  t.equal((await client.send(`${replicas[1]!.url}/orders`)).status, 401)

  // 10 per 10 s per caller and route, whichever replica answers: the 11th request is refused.
  const reader = await token('alice', 'reader')
  const statuses: number[] = []
  for (let i = 0; i < 14; i++) statuses.push((await client.send(`${replicas[i % 2]!.url}/hello`, { token: reader })).status)
  t.same(statuses, [...Array(10).fill(200), ...Array(4).fill(429)], 'one budget shared by both replicas')

  // A restart while the bundle server is down starts on the last good bundle, kept in the state folder.
  await nginx.stop()
  await Promise.all(replicas.map(async g => g.close()))
  const restarted = await start()
  t.equal((await client.send(`${restarted.adminUrl}/readyz`)).status, 200, 'ready without the bundle server')
  t.match((await client.send(`${restarted.adminUrl}/status`)).json(), { policy: { origin: 'persisted', signed_by: 'default' } })
  t.equal((await client.send(`${restarted.url}/orders`, { method: 'POST', token: writer, body: '{}' })).status, 201)
})

t.test('the compose bundle step builds a signed bundle with the pinned OPA', async t => {
  const { bundles } = await composeFiles(t.testdir())
  const entries: string[] = []
  await list({ file: join(bundles, 'bundle.tar.gz'), onReadEntry: e => { entries.push(e.path.replace(/^\//, '')) } })
  t.ok(entries.includes('.signatures.json'), 'signed')
  t.ok(entries.includes('policy.wasm'), 'compiled to WASM')
  t.notOk(entries.some(e => e.endsWith('_test.rego')), 'no policy tests in the bundle')
})

t.test('the nginx bundle server config serves the signed bundle over TLS, with ETags, and nothing else', async t => {
  const { certs, bundles } = await composeFiles(t.testdir())
  const nginx = await startBundleNginx(t, { certs: join(certs, 'bundles'), bundles })
  const dispatcher = new Agent({ connect: { ca: await readFile(join(certs, 'ca.crt'), 'utf8'), servername: 'bundles' } })
  t.teardown(() => dispatcher.close())
  const get = async (path: string, headers: Record<string, string> = {}) => {
    const res = await dispatcher.request({ origin: nginx.origin, path, method: 'GET', headers })
    return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) }
  }
  const bundle = await get('/bundles/bundle.tar.gz')
  t.equal(bundle.status, 200)
  t.same(bundle.body, await readFile(join(bundles, 'bundle.tar.gz')), 'the signed bundle, byte for byte')
  const etag = bundle.headers.etag
  t.type(etag, 'string', 'an ETag for cheap polling')
  t.equal((await get('/bundles/bundle.tar.gz', { 'if-none-match': String(etag) })).status, 304)
  t.equal((await get('/bundles/')).status, 404, 'no listing')
  t.equal((await get('/policies/gateway/authz.rego')).status, 404)
})
