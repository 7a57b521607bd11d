import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SignJWT } from 'jose'
import { createCa } from '../../src/tls/pki.js'
import { SEMI_SPACE_FLAG } from '../../src/lifecycle/node-flags.js'

/*
 * Everything the benchmark serves with, generated fresh into bench/.work/ on every run: a CA, the
 * upstream's and the proxies' certificates, the proxies' client certificate for mTLS, two issuer
 * keys (RS256 and ES256), nginx configs and the Portcullis config.
 */

// Every port of npm run bench (and bench:stages) is BENCH_PORT_BASE plus a fixed offset, so that a run
// can move out of the way of another checkout's bench or demo on the same machine.
const BASE = Number(process.env.BENCH_PORT_BASE ?? 18440)
export const PORTS = {
  upstream: BASE, direct: BASE + 1, bare: BASE + 2, nginx: BASE + 3, portcullis: BASE + 4, portcullisAdmin: BASE + 5, opa: BASE + 6, baseline: BASE + 7, baselineAdmin: BASE + 8,
  // Scenario 5: the gateway assertion, the Redis store, --workers 2, and the bare proxy on two CPUs.
  assertion: BASE + 9, assertionAdmin: BASE + 10, redisStore: BASE + 11, redisStoreAdmin: BASE + 12, redis: BASE + 13, workers: BASE + 14, workersAdmin: BASE + 15, bareCluster: BASE + 16,
  // Scenario 4h (HTTP/2): scenario 4's config on a process of its own.
  h2: BASE + 17, h2Admin: BASE + 18,
  // npm run bench:stages: its own upstream and gateways, so that it can run beside npm run bench.
  stagesUpstream: BASE + 20, stagesBare: BASE + 21, stages: BASE + 22, stagesAdmin: BASE + 23, stagesAssertion: BASE + 24, stagesAssertionAdmin: BASE + 25, stagesShadow: BASE + 26, stagesShadowAdmin: BASE + 27
}
/**
 * How every gateway of the bench is started: as the image and `npm start` start it (node-flags.ts).
 * The baseline (--baseline, an older checkout) is started as it was then, without.
 */
export const GATEWAY_NODE_ARGS: readonly string[] = [SEMI_SPACE_FLAG]
export const RATE_LIMIT_MAX = 1_000_000_000 // counted on every request, never reached

export interface Workdir { dir: string, tokens: { rs256: string, es256: string } }

async function token (alg: 'RS256' | 'ES256', key: KeyObject): Promise<string> {
  return new SignJWT({ roles: ['reader'] })
    .setProtectedHeader({ alg, kid: alg.toLowerCase() })
    .setIssuer(`https://${alg.toLowerCase()}.bench.test`)
    .setAudience('bench')
    .setSubject('bench-user')
    .setIssuedAt()
    .setExpirationTime('6h')
    .sign(key)
}

function nginxConf (dir: string, name: string, server: string): string {
  return `worker_processes 1;
daemon off;
pid ${dir}/${name}.pid;
error_log ${dir}/${name}.log warn;
${process.getuid?.() === 0 ? 'user root;' : ''}
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/${name}-body;
  proxy_temp_path ${dir}/${name}-proxy;
  fastcgi_temp_path ${dir}/${name}-fcgi;
  uwsgi_temp_path ${dir}/${name}-uwsgi;
  scgi_temp_path ${dir}/${name}-scgi;
  keepalive_requests 10000000;
  ${server}
}
`
}

export interface GatewayVariant {
  port: number
  admin: number
  /** First line of the file: which scenario it is. */
  about: string
  /** The gateway assertion on every forwarded request, as in the demo (credentials: assertion, bindBody). */
  assertion?: boolean
  /** The rate-limit counters in this redis-server instead of in memory. */
  redisPort?: number
  /** Another nginx upstream than the shared one (npm run bench:stages runs its own). */
  upstreamPort?: number
  /** The active bundle also as the shadow policy, judging every request (scenario 4s). */
  shadow?: boolean
}

/**
 * The Portcullis config of the benchmark: the full pipeline on one route, variants for scenario 5.
 * Paths are relative to the work folder (the policy bundle is the one `npm run policy:build` makes).
 */
// As in the demo, but the keys are made in memory at start: the upstream does not check the assertion.
const ASSERTION = `assertion: { issuer: "https://portcullis.bench/gateway", claims: [roles] }
`

export function gatewayYaml (v: GatewayVariant): string {
  // commandTimeoutMs 2000: the cost of asking Redis is measured, not the fault path (on a loaded
  // machine the default 200 ms turns event-loop stalls into store errors; see RATELIMIT.md).
  const store = v.redisPort === undefined ? '' : `, store: { type: redis, url: "redis://127.0.0.1:${v.redisPort}", commandTimeoutMs: 2000 }`
  return `# ${v.about}
listen: { host: 127.0.0.1, port: ${v.port}, tls: { cert: gateway.crt, key: gateway.key } }
admin: { host: 127.0.0.1, port: ${v.admin} }
logging: { level: info }
issuers:
  - { id: rs, issuer: "https://rs256.bench.test", audiences: [bench], algorithms: [RS256], jwks: { file: rs256.jwks.json } }
  - { id: es, issuer: "https://es256.bench.test", audiences: [bench], algorithms: [ES256], jwks: { file: es256.jwks.json } }
policy: { bundle: ../../build/bundle.tar.gz${v.shadow === true ? ', shadow: { bundle: ../../build/bundle.tar.gz, sample: 1 }' : ''} }
rateLimit: { default: { max: ${RATE_LIMIT_MAX}, windowSeconds: 60 }${store} }
upstreams:
  - id: fn
    url: https://127.0.0.1:${v.upstreamPort ?? PORTS.upstream}
    tls: { ca: ca.crt, cert: client.crt, key: client.key, servername: localhost }
${v.assertion === true ? '    credentials: { assertion: { bindBody: true } }\n' : ''}routes:
  - { id: hello, prefix: /hello, methods: [GET], upstream: fn }
${v.assertion === true ? ASSERTION : ''}`
}

/** Scenario 5's configs (the assertion on, the Redis store, scenario 4's config for --workers 2) and 4h's. */
function scenario5Configs (): Record<string, string> {
  return {
    'portcullis-assertion.yaml': gatewayYaml({ port: PORTS.assertion, admin: PORTS.assertionAdmin, assertion: true, about: 'Scenario 5a: scenario 4 with the gateway assertion on, as in the demo.' }),
    'portcullis-redis.yaml': gatewayYaml({ port: PORTS.redisStore, admin: PORTS.redisStoreAdmin, redisPort: PORTS.redis, about: 'Scenario 5b: scenario 4 with the rate-limit counters in Redis.' }),
    'portcullis-workers.yaml': gatewayYaml({ port: PORTS.workers, admin: PORTS.workersAdmin, about: 'Scenario 5c: scenario 4\'s config, run with --workers 2.' }),
    'portcullis-h2.yaml': gatewayYaml({ port: PORTS.h2, admin: PORTS.h2Admin, about: 'Scenario 4h: scenario 4\'s config, for HTTP/2 clients (h2load).' })
  }
}

const RESPONDER = `location / { default_type application/json; return 200 '{"ok":true}\\n'; }`

export async function prepare (dir: string): Promise<Workdir> {
  await mkdir(dir, { recursive: true })
  const ca = await createCa('Portcullis bench CA')
  const local = { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] }
  const upstream = await ca.issue({ commonName: 'upstream', ...local, usage: 'server' })
  const gateway = await ca.issue({ commonName: 'gateway', ...local, usage: 'server' })
  const client = await ca.issue({ commonName: 'gateway-client', uris: ['spiffe://bench/gateway'], usage: 'client' })
  const rs = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const es = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const jwks = (alg: string, key: KeyObject) => JSON.stringify({ keys: [{ ...key.export({ format: 'jwk' }), kid: alg.toLowerCase(), alg }] })

  const files: Record<string, string> = {
    'ca.crt': ca.cert,
    'upstream.crt': upstream.cert,
    'upstream.key': upstream.key,
    'gateway.crt': gateway.cert,
    'gateway.key': gateway.key,
    'client.crt': client.cert,
    'client.key': client.key,
    'rs256.jwks.json': jwks('RS256', rs.publicKey),
    'es256.jwks.json': jwks('ES256', es.publicKey),
    'nginx-upstream.conf': nginxConf(dir, 'nginx-upstream', `server {
    listen 127.0.0.1:${PORTS.upstream} ssl;
    ssl_certificate ${dir}/upstream.crt; ssl_certificate_key ${dir}/upstream.key;
    ssl_client_certificate ${dir}/ca.crt; ssl_verify_client on;
    ${RESPONDER}
  }`),
    'nginx-direct.conf': nginxConf(dir, 'nginx-direct', `server {
    listen 127.0.0.1:${PORTS.direct} ssl;
    ssl_certificate ${dir}/upstream.crt; ssl_certificate_key ${dir}/upstream.key;
    ${RESPONDER}
  }`),
    'nginx-proxy.conf': nginxConf(dir, 'nginx-proxy', `upstream fn { server 127.0.0.1:${PORTS.upstream}; keepalive 64; }
  server {
    listen 127.0.0.1:${PORTS.nginx} ssl;
    ssl_certificate ${dir}/gateway.crt; ssl_certificate_key ${dir}/gateway.key;
    location / {
      proxy_pass https://fn;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_ssl_certificate ${dir}/client.crt; proxy_ssl_certificate_key ${dir}/client.key;
      proxy_ssl_trusted_certificate ${dir}/ca.crt; proxy_ssl_verify on; proxy_ssl_name localhost;
      proxy_ssl_session_reuse on;
    }
  }`),
    'portcullis.yaml': gatewayYaml({ port: PORTS.portcullis, admin: PORTS.portcullisAdmin, about: 'Scenario 4: the full pipeline. Logs at info (access + decision lines), as in production.' }),
    ...scenario5Configs()
  }
  // The same config for another build of the gateway (npm run bench -- --baseline <checkout>), on ports of its own.
  files['portcullis-baseline.yaml'] = gatewayYaml({ port: PORTS.baseline, admin: PORTS.baselineAdmin, about: 'Scenario 4b: scenario 4\'s config for another build.' })
  const tokens = { rs256: await token('RS256', rs.privateKey), es256: await token('ES256', es.privateKey) }
  // Also on disk, for profiling one scenario by hand (see bench/README.md).
  files['rs256.token'] = tokens.rs256
  files['es256.token'] = tokens.es256
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content, { mode: /\.(key|token)$/.test(name) ? 0o600 : 0o644 })
  return { dir, tokens }
}
