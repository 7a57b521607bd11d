import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DEFAULT_BUNDLE } from '../../scripts/opa.mjs'
import { createCa } from '../../src/tls/pki.js'
import { makeKey, type SigningKey } from '../../test/helpers/idp.js'
import { freePort } from '../../test/helpers/ports.js'
import { managed, startGateway, stopGateway, type GatewayProc, type Managed } from './chaos-procs.js'

/*
 * The system `npm run chaos` runs: a real redis-server, the stand-in IdP of the fault tests
 * (test/helpers/idp-server.mjs: HTTPS discovery and a JWKS read from a file on every request), a
 * function behind mutual TLS, and two gateway replicas through the real CLI sharing Redis (rate
 * limits, revocations), one of them with two cluster workers. Everything on loopback, certificates
 * and keys made for this run.
 */

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const CLI = join(ROOT, 'dist/cli.js')
const IDP_SERVER = join(ROOT, 'test/helpers/idp-server.mjs')
const FUNCTION_SERVER = join(ROOT, 'bench/servers/chaos-function.mjs')

/** The upstream's timeouts and circuit: short, so a dead function costs seconds, not the defaults' 30 s. */
export const UPSTREAM = { connectTimeoutMs: 1000, headersTimeoutMs: 2000, openMs: 2000 }
/** The store's deadline (the default, written out so that the judge can use it). */
export const STORE = { commandTimeoutMs: 200 }
export const ISSUER = { jwksCacheSeconds: 10, fetchTimeoutMs: 2000, unknownKidWaitMs: 1500 }

export interface Replica { name: 'A' | 'B', url: string, admin: string, proc: GatewayProc }

export interface ChaosStack {
  dir: string
  caPem: string
  issuer: string
  redis: Managed
  idp: Managed
  fn: Managed
  replicas: Replica[]
  /** Publishes exactly these keys at the IdP (read on every JWKS request). */
  publish: (keys: SigningKey[]) => Promise<void>
  /** Every IdP answer waits `ms` (0: none). */
  slowIdp: (ms: number) => Promise<void>
  firstKey: SigningKey
  stop: () => Promise<void>
}

function gatewayConfig (o: { port: number, admin: number, issuer: string, redis: number, fn: number }): string {
  return `# Written by bench/chaos.ts for one run.
listen: { host: 127.0.0.1, port: ${o.port}, tls: { cert: gw.crt, key: gw.key } }
admin: { host: 127.0.0.1, port: ${o.admin} }
logging: { level: warn }
issuers:
  - id: idp
    issuer: "${o.issuer}"
    audiences: [api]
    algorithms: [ES256]
    jwks: { discovery: true, unknownKidWaitMs: ${ISSUER.unknownKidWaitMs} }
    ca: idp-ca.crt
    jwksCacheSeconds: ${ISSUER.jwksCacheSeconds}
    fetchTimeoutMs: ${ISSUER.fetchTimeoutMs}
policy: { bundle: "${DEFAULT_BUNDLE}" }
rateLimit:
  store: { type: redis, url: "redis://127.0.0.1:${o.redis}", commandTimeoutMs: ${STORE.commandTimeoutMs} }
upstreams:
  - id: fn
    url: https://127.0.0.1:${o.fn}
    tls: { ca: ca.crt, cert: gw-client.crt, key: gw-client.key }
    connectTimeoutMs: ${UPSTREAM.connectTimeoutMs}
    headersTimeoutMs: ${UPSTREAM.headersTimeoutMs}
    circuitBreaker: { failures: 5, openMs: ${UPSTREAM.openMs} }
routes:
  # Route ids the repository's policy knows: hello lets any authenticated caller in, orders (GET)
  # needs the reader role, so a token without roles is denied there.
  - { id: hello, prefix: /local, methods: [GET], upstream: fn, rateLimit: { max: 100000, windowSeconds: 60, onStoreError: local } }
  - { id: orders, prefix: /strict, methods: [GET], upstream: fn, rateLimit: { max: 100000, windowSeconds: 60, onStoreError: fail-closed } }
`
}

export async function startChaosStack (dir: string): Promise<ChaosStack> {
  await rm(dir, { recursive: true, force: true })
  await mkdir(dir, { recursive: true })
  const ca = await createCa('Portcullis chaos CA')
  const local = { ipAddresses: ['127.0.0.1'] }
  const [gw, client, fnPair, idpPair] = await Promise.all([
    ca.issue({ commonName: 'gateway', ...local, usage: 'server' }),
    ca.issue({ commonName: 'gateway-client', usage: 'client' }),
    ca.issue({ commonName: 'function', ...local, usage: 'server' }),
    ca.issue({ commonName: 'idp', ...local, usage: 'server' })
  ])
  const file = (name: string): string => join(dir, name)
  await Promise.all([
    writeFile(file('ca.crt'), ca.cert), writeFile(file('idp-ca.crt'), ca.cert),
    writeFile(file('gw.crt'), gw.cert), writeFile(file('gw.key'), gw.key),
    writeFile(file('gw-client.crt'), client.cert), writeFile(file('gw-client.key'), client.key),
    writeFile(file('fn.crt'), fnPair.cert), writeFile(file('fn.key'), fnPair.key),
    writeFile(file('idp.crt'), idpPair.cert), writeFile(file('idp.key'), idpPair.key)
  ])
  const ports = { redis: await freePort(), idp: await freePort(), fn: await freePort(), a: await freePort(), aAdmin: await freePort(), b: await freePort(), bAdmin: await freePort() }
  const issuer = `https://127.0.0.1:${ports.idp}`
  const jwksFile = file('jwks.json')
  const publish = async (keys: SigningKey[]): Promise<void> => writeFile(jwksFile, JSON.stringify({ keys: keys.map(k => k.publicJwk) }))
  const slowIdp = async (ms: number): Promise<void> => writeFile(`${jwksFile}.delay`, String(ms))
  const firstKey = makeKey('ES256', 'k0')
  await publish([firstKey])

  const redis = managed('redis', ['redis-server', '--port', String(ports.redis), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], ports.redis, file('redis.log'))
  const idp = managed('idp', [process.execPath, IDP_SERVER, String(ports.idp), file('idp.crt'), file('idp.key'), jwksFile, issuer], ports.idp, file('idp.log'))
  const fn = managed('fn', [process.execPath, FUNCTION_SERVER, String(ports.fn), file('fn.crt'), file('fn.key'), file('ca.crt')], ports.fn, file('fn.log'))
  const replicas: Replica[] = []
  const stop = async (): Promise<void> => {
    await Promise.all(replicas.map(async r => stopGateway(r.proc)))
    for (const m of [redis, idp, fn]) { m.resume(); await m.kill() }
  }
  try {
    await Promise.all([redis.start(), idp.start(), fn.start()])
    for (const [name, port, admin, args] of [['A', ports.a, ports.aAdmin, []], ['B', ports.b, ports.bAdmin, ['--workers', '2']]] as const) {
      const config = file(`gateway-${name}.yaml`)
      await writeFile(config, gatewayConfig({ port, admin, issuer, redis: ports.redis, fn: ports.fn }))
      const adminUrl = `http://127.0.0.1:${admin}`
      const proc = await startGateway(`gateway ${name}`, CLI, config, [...args], file(`gateway-${name}.log`), adminUrl)
      replicas.push({ name, url: `https://127.0.0.1:${port}`, admin: adminUrl, proc })
    }
  } catch (err) {
    await stop()
    throw err
  }
  return { dir, caPem: ca.cert, issuer, redis, idp, fn, replicas, publish, slowIdp, firstKey, stop }
}
