import t from 'tap'
import { execFile, spawn } from 'node:child_process'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { list } from 'tar'
import { Agent } from 'undici'
import { parse } from 'yaml'
import { DEFAULT_BUNDLE, buildBundle, resolveOpa } from '../../scripts/opa.mjs'
import { loadConfig } from '../../src/config/load.js'
import { startDemoFunction } from '../../src/demo/function.js'
import { GATEWAY_SPIFFE_ID } from '../../src/demo/state.js'
import { startGateway } from '../../src/server.js'
import { httpsClient } from '../helpers/http.js'
import { ROOT } from '../helpers/deploy-tools.js'
import { freePort } from '../helpers/ports.js'

/*
 * docker-compose.yml cannot be started here (no Docker engine, no registry images), so its parts are
 * proven one by one: the file's promises (loopback ports, hardening, pinned images), the cert script
 * and the gateway config it mounts (a real gateway on them, in front of the demo function over mTLS,
 * with a token from `portcullis demo token --dir`), the signed-bundle command run by the real OPA, and
 * the nginx server block served by Debian's nginx.
 * test/container runs the same config and certificates in the real image.
 */

const exec = promisify(execFile)
const CLI = join(ROOT, 'dist/cli.js')
const compose = parse(await readFile(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, Record<string, any>> }
const services = compose.services

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
  t.match(services.gateway!.volumes, ['./docker/config/gateway.yaml:/etc/portcullis/config.yaml:ro', './docker/certs:/etc/portcullis/tls:ro'])
  t.ok(parseInt(services.gateway!.stop_grace_period) > 10, 'compose waits longer than the gateway drains')
  for (const s of Object.values(services)) {
    for (const v of (s.volumes ?? []) as string[]) {
      const source = v.split(':')[0]!
      if (source.startsWith('./') && source !== './docker/certs') t.ok(await readFile(join(ROOT, source)).then(() => true, (e: NodeJS.ErrnoException) => e.code === 'EISDIR'), `${source} exists`)
    }
  }
  const prometheus = parse(await readFile(join(ROOT, 'docker/prometheus/prometheus.yml'), 'utf8')) as { scrape_configs: Array<{ static_configs: Array<{ targets: string[] }> }> }
  t.same(prometheus.scrape_configs[0]!.static_configs[0]!.targets, ['gateway:9090'], 'Prometheus scrapes the admin listener')
})

t.test('make-certs + the compose gateway config: a real gateway in front of the mTLS function', async t => {
  // The layout the gateway container sees: config.yaml beside tls/ (docker/certs).
  const root = t.testdir()
  const certs = join(root, 'tls')
  await exec('bash', [join(ROOT, 'docker/make-certs.sh'), certs])
  await buildBundle({})
  const config = (await readFile(join(ROOT, 'docker/config/gateway.yaml'), 'utf8')).replace('/app/build/bundle.tar.gz', DEFAULT_BUNDLE)
  await writeFile(join(root, 'config.yaml'), config)
  const fn = await startDemoFunction({
    host: '127.0.0.1', port: 0, cert: join(certs, 'function.crt'), key: join(certs, 'function.key'), clientCa: join(certs, 'ca.crt'), allowedClient: GATEWAY_SPIFFE_ID
  })
  t.teardown(fn.close)
  const env = { PORTCULLIS_PORT: '0', PORTCULLIS_ADMIN_PORT: '0', PORTCULLIS_LOG_LEVEL: 'warn', FUNCTION_URL: fn.url }
  const gateway = await startGateway(await loadConfig(join(root, 'config.yaml'), env), { bundleWatchIntervalMs: 0 })
  t.teardown(gateway.close)

  const token = (await exec(process.execPath, [CLI, 'demo', 'token', '--dir', certs, '--sub', 'bob', '--role', 'writer'])).stdout.trim()
  const client = httpsClient(t, join(certs, 'ca.crt'))
  const ok = await client.send(`${gateway.url}/orders`, { method: 'POST', token, body: '{}' })
  t.equal(ok.status, 201, ok.text)
  t.match(ok.json(), { path: '/orders', gateway: { verified: true, uri_sans: [GATEWAY_SPIFFE_ID] } })
  t.equal((await client.send(`${gateway.url}/orders`)).status, 401)
})

t.test('the compose bundle step builds a signed bundle with the pinned OPA', async t => {
  const dir = t.testdir()
  const certs = join(dir, 'certs')
  await exec('bash', [join(ROOT, 'docker/make-certs.sh'), certs])
  await mkdir(join(dir, 'out'))
  const args = (services.bundle!.command as string[]).map(a => a.replace('/certs/', `${certs}/`).replace('/srv/bundles/', `${dir}/out/`))
  await exec(await resolveOpa(), args, { cwd: join(ROOT, 'policies') })
  const entries: string[] = []
  await list({ file: join(dir, 'out/bundle.tar.gz'), onReadEntry: e => { entries.push(e.path.replace(/^\//, '')) } })
  t.ok(entries.includes('.signatures.json'), 'signed')
  t.ok(entries.includes('policy.wasm'), 'compiled to WASM')
  t.notOk(entries.some(e => e.endsWith('_test.rego')), 'no policy tests in the bundle')
})

t.test('the nginx bundle server config serves the signed bundle over TLS, with ETags, and nothing else', async t => {
  const dir = t.testdir({ out: {} })
  const certs = join(dir, 'certs')
  await exec('bash', [join(ROOT, 'docker/make-certs.sh'), certs])
  const args = (services.bundle!.command as string[]).map(a => a.replace('/certs/', `${certs}/`).replace('/srv/bundles/', `${dir}/out/`))
  await exec(await resolveOpa(), args, { cwd: join(ROOT, 'policies') })
  // Debian's nginx runs the compose file's server block as is, with paths and port moved here.
  const port = await freePort()
  const server = (await readFile(join(ROOT, 'docker/nginx/bundles.conf'), 'utf8'))
    .replace('listen 8446 ssl;', `listen 127.0.0.1:${port} ssl;`)
    .replaceAll('/certs/', `${certs}/`).replaceAll('/srv/bundles/', `${dir}/out/`)
  t.not(server.indexOf(`127.0.0.1:${port}`), -1, 'the listen line was found')
  await writeFile(join(dir, 'nginx.conf'), `daemon off; pid ${dir}/nginx.pid; error_log stderr;
events {}
http { access_log off; client_body_temp_path ${dir}/tmp; proxy_temp_path ${dir}/tmp; fastcgi_temp_path ${dir}/tmp;
  uwsgi_temp_path ${dir}/tmp; scgi_temp_path ${dir}/tmp; ${server} }
`)
  const nginx = spawn('nginx', ['-e', 'stderr', '-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  nginx.stderr.on('data', (d: Buffer) => { stderr += String(d) })
  t.teardown(() => { nginx.kill('SIGQUIT') })
  const dispatcher = new Agent({ connect: { ca: await readFile(join(certs, 'ca.crt'), 'utf8'), servername: 'bundles' } })
  t.teardown(() => dispatcher.close())
  const get = async (path: string, headers: Record<string, string> = {}) => {
    for (let i = 0; ; i++) {
      try {
        const res = await dispatcher.request({ origin: `https://127.0.0.1:${port}`, path, method: 'GET', headers })
        return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) }
      } catch (err) {
        if (i >= 50 || nginx.exitCode !== null) throw new Error(`nginx not answering: ${String(err)}\n${stderr}`)
        await new Promise(resolve => setTimeout(resolve, 100))
      }
    }
  }
  const bundle = await get('/bundles/bundle.tar.gz')
  t.equal(bundle.status, 200)
  t.same(bundle.body, await readFile(join(dir, 'out/bundle.tar.gz')), 'the signed bundle, byte for byte')
  const etag = bundle.headers.etag
  t.type(etag, 'string', 'an ETag for cheap polling')
  t.equal((await get('/bundles/bundle.tar.gz', { 'if-none-match': String(etag) })).status, 304)
  t.equal((await get('/bundles/')).status, 404, 'no listing')
  t.equal((await get('/policies/gateway/authz.rego')).status, 404)
})

