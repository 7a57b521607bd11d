import { generateKeyPairSync, type KeyObject } from 'node:crypto'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { SignJWT } from 'jose'
import { createCa } from '../../src/tls/pki.js'

/*
 * Everything the benchmark serves with, generated fresh into bench/.work/ on every run: a CA, the
 * upstream's and the proxies' certificates, the proxies' client certificate for mTLS, two issuer
 * keys (RS256 and ES256), nginx configs and the Portcullis config.
 */

export const PORTS = { upstream: 18440, direct: 18441, bare: 18442, nginx: 18443, portcullis: 18444, portcullisAdmin: 18445, opa: 18446, baseline: 18447, baselineAdmin: 18448 }
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
    'portcullis.yaml': `# Scenario 4: the full pipeline. Logs at info (access + decision lines), as in production.
listen: { host: 127.0.0.1, port: ${PORTS.portcullis}, tls: { cert: gateway.crt, key: gateway.key } }
admin: { host: 127.0.0.1, port: ${PORTS.portcullisAdmin} }
logging: { level: info }
issuers:
  - { id: rs, issuer: "https://rs256.bench.test", audiences: [bench], algorithms: [RS256], jwks: { file: rs256.jwks.json } }
  - { id: es, issuer: "https://es256.bench.test", audiences: [bench], algorithms: [ES256], jwks: { file: es256.jwks.json } }
policy: { bundle: ../../build/bundle.tar.gz }
rateLimit: { default: { max: ${RATE_LIMIT_MAX}, windowSeconds: 60 } }
upstreams:
  - id: fn
    url: https://127.0.0.1:${PORTS.upstream}
    tls: { ca: ca.crt, cert: client.crt, key: client.key, servername: localhost }
routes:
  - { id: hello, prefix: /hello, methods: [GET], upstream: fn }
`
  }
  // The same config for another build of the gateway (npm run bench -- --baseline <checkout>), on ports of its own.
  files['portcullis-baseline.yaml'] = files['portcullis.yaml']!
    .replace(`port: ${PORTS.portcullis},`, `port: ${PORTS.baseline},`).replace(`port: ${PORTS.portcullisAdmin} }`, `port: ${PORTS.baselineAdmin} }`)
  const tokens = { rs256: await token('RS256', rs.privateKey), es256: await token('ES256', es.privateKey) }
  // Also on disk, for profiling one scenario by hand (see bench/README.md).
  files['rs256.token'] = tokens.rs256
  files['es256.token'] = tokens.es256
  for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content, { mode: /\.(key|token)$/.test(name) ? 0o600 : 0o644 })
  return { dir, tokens }
}
