import { mkdir, writeFile } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { buildBundle } from '../scripts/opa.mjs'
import { createCa } from '../src/tls/pki.js'
import { cpuSeconds, start, stopAll, waitForPort } from './lib/procs.js'
import { runWrk } from './lib/load.js'
import { median, spread, type Sample } from './lib/report.js'
import { LOAD_CPU, SUT_CPU } from './lib/stack.js'
import { GATEWAY_NODE_ARGS } from './lib/setup.js'
import { pinned, resolveTools } from './lib/tools.js'

/*
 * npm run bench:upstream: what the hop to the function costs the gateway. One Portcullis process
 * forwards to the same nginx over five upstreams: plain HTTP (the plain forward), TLS, mutual TLS
 * over pooled keep-alive connections (the normal case), the same with a gateway assertion minted
 * and attached per request, and mutual TLS where the function closes every connection (a handshake
 * per request, with session resumption as undici and nginx do it).
 * Public routes and an allow-all policy, so the forward is the only difference. Interleaved rounds,
 * medians with min-max; writes bench/UPSTREAM-TLS.md and bench/upstream-tls.json.
 */

const HERE = fileURLToPath(new URL('.', import.meta.url))
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const { values: opts } = parseArgs({
  options: { rounds: { type: 'string', default: '3' }, duration: { type: 'string', default: '2' }, connections: { type: 'string', default: '20' } }
})
const ROUNDS = Number(opts.rounds)
const SECONDS = Number(opts.duration)
const CONNECTIONS = Number(opts.connections)
const command = `npm run bench:upstream -- --rounds ${ROUNDS} --duration ${SECONDS} --connections ${CONNECTIONS}`

async function freePort (): Promise<number> {
  const s = createServer()
  await new Promise<void>(resolve => s.listen(0, '127.0.0.1', resolve))
  const { port } = s.address() as AddressInfo
  await new Promise(resolve => s.close(resolve))
  return port
}

const dir = `${HERE}.work/upstream-tls`
await mkdir(dir, { recursive: true })
const ports = { plain: 0, tls: 0, mtls: 0, mtlsClose: 0, gateway: 0, admin: 0 }
for (const k of Object.keys(ports) as Array<keyof typeof ports>) ports[k] = await freePort()

const ca = await createCa('Portcullis upstream bench CA')
const local = { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] }
const files: Record<string, string> = { 'ca.crt': ca.cert }
for (const [name, usage] of [['upstream', 'server'], ['gateway', 'server'], ['client', 'client']] as const) {
  const pair = await ca.issue({ commonName: name, ...local, usage })
  files[`${name}.crt`] = pair.cert
  files[`${name}.key`] = pair.key
}
const RESPONDER = `location / { default_type application/json; return 200 '{"ok":true}\\n'; }`
const tlsServer = (port: number, extra: string): string => `server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${dir}/upstream.crt; ssl_certificate_key ${dir}/upstream.key;
    ${extra}
    ${RESPONDER}
  }`
const mtls = `ssl_client_certificate ${dir}/ca.crt; ssl_verify_client on;`
files['nginx.conf'] = `worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx.log warn;
${process.getuid?.() === 0 ? 'user root;' : ''}
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fcgi;
  uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  keepalive_requests 10000000;
  server { listen 127.0.0.1:${ports.plain}; ${RESPONDER} }
  ${tlsServer(ports.tls, '')}
  ${tlsServer(ports.mtls, mtls)}
  ${tlsServer(ports.mtlsClose, `${mtls} keepalive_requests 1;`)}
}
`
files['gateway/authz.rego'] = 'package gateway.authz\n\ndecision := {"allow": true}\n'
const upstream = (id: string, port: number, tls: string, extra = ''): string =>
  `  - { id: ${id}, url: "${tls === '' ? 'http' : 'https'}://127.0.0.1:${port}", ${tls === '' ? 'plaintext: true' : `tls: { ${tls} }`}${extra} }\n`
const MTLS = 'ca: ca.crt, cert: client.crt, key: client.key, servername: localhost'
files['portcullis.yaml'] = `listen: { host: 127.0.0.1, port: ${ports.gateway}, tls: { cert: gateway.crt, key: gateway.key } }
admin: { host: 127.0.0.1, port: ${ports.admin} }
logging: { level: info }
issuers:
  - { id: unused, issuer: "https://unused.bench.test", audiences: [bench], algorithms: [HS256], secret: "${'x'.repeat(32)}" }
policy: { bundle: bundle.tar.gz }
upstreams:
${upstream('plain', ports.plain, '')}${upstream('tls', ports.tls, 'ca: ca.crt, servername: localhost')}${upstream('mtls', ports.mtls, MTLS)}${upstream('mtls-assertion', ports.mtls, MTLS, ', credentials: { assertion: {} }')}${upstream('mtls-close', ports.mtlsClose, MTLS)}
routes:
${['plain', 'tls', 'mtls', 'mtls-assertion', 'mtls-close'].map(id => `  - { id: ${id}, prefix: /${id}, methods: [GET], upstream: ${id}, authentication: public }\n`).join('')}`
await mkdir(`${dir}/gateway`, { recursive: true })
for (const [name, content] of Object.entries(files)) await writeFile(`${dir}/${name}`, content, { mode: name.endsWith('.key') ? 0o600 : 0o644 })
await buildBundle({ policiesDir: `${dir}/gateway`, out: `${dir}/bundle.tar.gz`, force: true })

const tools = await resolveTools()
const nginx = start('nginx', pinned(tools, LOAD_CPU, [tools.nginx, '-c', `${dir}/nginx.conf`, '-p', dir, '-e', `${dir}/nginx.log`]))
const gateway = start('portcullis', pinned(tools, SUT_CPU, [process.execPath, ...GATEWAY_NODE_ARGS, `${ROOT}dist/cli.js`, 'start', '-c', `${dir}/portcullis.yaml`]))
const scenarios = [
  { id: 'plain', label: 'plain HTTP to the function (the plain forward)' },
  { id: 'tls', label: 'TLS, pooled keep-alive connections' },
  { id: 'mtls', label: 'mutual TLS, pooled keep-alive connections' },
  { id: 'mtls-assertion', label: 'mutual TLS, pooled, plus a gateway assertion (ES256) minted per request' },
  { id: 'mtls-close', label: 'mutual TLS, a new connection per request' }
]
const log = (m: string): void => { process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`) }
try {
  for (const p of [ports.plain, ports.tls, ports.mtls, ports.mtlsClose, ports.gateway]) await waitForPort(p)
  const url = (id: string): string => `https://127.0.0.1:${ports.gateway}/${id}`
  for (const s of scenarios) {
    const warm = await runWrk(tools, LOAD_CPU, url(s.id), {}, 1, CONNECTIONS)
    if (warm.requests === 0 || warm.non2xx > 0) throw new Error(`${s.id}: warm-up got ${warm.non2xx} non-2xx of ${warm.requests}`)
  }
  const samples = new Map<string, Sample[]>(scenarios.map(s => [s.id, []]))
  for (let round = 1; round <= ROUNDS; round++) {
    for (const s of scenarios) {
      const before = cpuSeconds(gateway.pids())
      const r = await runWrk(tools, LOAD_CPU, url(s.id), {}, SECONDS, CONNECTIONS)
      const cpu = cpuSeconds(gateway.pids()) - before
      samples.get(s.id)!.push({ rps: r.rps, p50_us: r.p50_us, p99_us: r.p99_us, p999_us: r.p999_us, cpu_us_per_req: cpu * 1e6 / r.requests, errors: r.errors + r.non2xx })
      log(`round ${round}/${ROUNDS} ${s.id}: ${Math.round(r.rps)} req/s, p99 ${r.p99_us} us, errors ${r.errors + r.non2xx}`)
    }
  }
  const of = (id: string, k: Exclude<keyof Sample, 'failure'>): number[] => samples.get(id)!.map(x => x[k])
  const plainRps = median(of('plain', 'rps'))
  const plainCpu = median(of('plain', 'cpu_us_per_req'))
  const rows = scenarios.map(s => `| ${s.label} | ${spread(of(s.id, 'rps'))} | ` +
    `${(median(of(s.id, 'p50_us')) / 1000).toFixed(2)} | ${(median(of(s.id, 'p99_us')) / 1000).toFixed(2)} | ` +
    `${median(of(s.id, 'cpu_us_per_req')).toFixed(0)} | ${(median(of(s.id, 'rps')) / plainRps).toFixed(2)} | ` +
    `${(median(of(s.id, 'cpu_us_per_req')) - plainCpu).toFixed(0)} | ${of(s.id, 'errors').reduce((a, b) => a + b, 0)} |`)
  const md = `# Upstream hop: plain forward, TLS and mutual TLS

Generated by \`${command}\` on ${new Date().toISOString().slice(0, 10)}. One Portcullis process on CPU ${SUT_CPU}
(public routes, allow-all policy, access log at info) forwards to one nginx on CPU ${LOAD_CPU}; \`wrk\`
(${CONNECTIONS} keep-alive connections, TLS to the gateway) on CPU ${LOAD_CPU}. Interleaved rounds;
medians with min-max over ${ROUNDS} rounds of ${SECONDS} s. Ratios are against the plain forward in the
same run; the absolute numbers depend on this (shared, noisy) machine.

| upstream | requests/s | p50 ms | p99 ms | gateway CPU µs/req | × plain | CPU µs/req over plain | errors |
|---|---|---|---|---|---|---|---|
${rows.join('\n')}

The pooled rows are the normal case: one handshake per pooled connection, then only record
encryption. The last row pays a handshake per request (the function closes every connection), which
is what a function that refuses keep-alive, or a cold pool, costs.
`
  await writeFile(`${HERE}UPSTREAM-TLS.md`, md)
  await writeFile(`${HERE}upstream-tls.json`, JSON.stringify({ command, samples: Object.fromEntries(samples) }, null, 2) + '\n')
  process.stdout.write(md)
} finally {
  await stopAll([gateway, nginx])
}
