import { spawn, type ChildProcess } from 'node:child_process'
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { writeFileSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Test } from 'tap'
import { importJWK, SignJWT } from 'jose'
import { buildBundle, DEFAULT_BUNDLE } from '../../scripts/opa.mjs'
import { createCa, type CertificateAuthority } from '../../src/tls/pki.js'
import { httpsClient } from './http.js'
import { startRedis } from './redis.js'

// The CLI as a user runs it: the built bin (npm test builds before running tap).
const CLI = new URL('../../dist/cli.js', import.meta.url).pathname

export interface PlainUpstream {
  url: string
  /** Requests whose path contains "hold" wait here until released. */
  held: Array<{ req: IncomingMessage, release: () => void }>
  onHeld: (fn: () => void) => void
}

/** A plain-HTTP function on loopback that names itself in every answer; "hold" requests wait. */
export async function startPlainUpstream (t: Test, name: string): Promise<PlainUpstream> {
  const held: PlainUpstream['held'] = []
  let notify: (() => void) | undefined
  const answer = (res: ServerResponse, path: string | undefined): void => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ server: name, path }))
  }
  const server = createServer((req, res) => {
    req.resume()
    if (req.url?.includes('hold') === true) {
      held.push({ req, release: () => answer(res, req.url) })
      notify?.()
      return
    }
    answer(res, req.url)
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, held, onHeld: fn => { notify = fn } }
}

/** The head of a test config in a gatewayFiles() folder: the TLS listener, admin, and the local issuer (jwks.json). */
export const BASE_CONFIG = `listen: { host: 127.0.0.1, port: 0, tls: { cert: gw.crt, key: gw.key } }
admin: { host: 127.0.0.1, port: 0 }
issuers:
  - { id: local, issuer: https://idp.test, audiences: [api], algorithms: [ES256], jwks: { file: jwks.json } }`

export interface GatewayFiles {
  dir: string
  ca: CertificateAuthority
  caFile: string
  configFile: string
  /** Writes gateway.yaml: a "hello" route to `upstream`, plus `extra` YAML appended at the top level. */
  writeConfig: (upstream: string, extra?: string) => Promise<void>
  /** Issues a fresh listener certificate into gw.crt/gw.key. */
  writeListenerCert: (commonName: string) => Promise<void>
  token: () => Promise<string>
}

/** A config folder: CA, listener certificate, a JWKS file with a key only the test holds. */
export async function gatewayFiles (t: Test): Promise<GatewayFiles> {
  const dir = t.testdir()
  const ca = await createCa('Lifecycle Test CA')
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  await writeFile(join(dir, 'ca.crt'), ca.cert)
  await writeFile(join(dir, 'jwks.json'), JSON.stringify({ keys: [{ ...publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'ES256' }] }))
  await buildBundle({})
  const files: GatewayFiles = {
    dir,
    ca,
    caFile: join(dir, 'ca.crt'),
    configFile: join(dir, 'gateway.yaml'),
    async writeConfig (upstream, extra = '') {
      await writeFile(join(dir, 'gateway.yaml'), `
listen: { host: 127.0.0.1, port: 0, tls: { cert: gw.crt, key: gw.key } }
admin: { host: 127.0.0.1, port: 0 }
issuers:
  - id: local
    issuer: https://idp.test
    audiences: [api]
    algorithms: [ES256]
    jwks: { file: jwks.json }
policy: { bundle: "${DEFAULT_BUNDLE}" }
upstreams:
  - id: fn
    url: ${upstream}
    plaintext: true
routes:
  - id: hello
    prefix: /hello
    methods: [GET]
    upstream: fn
${extra}
`)
    },
    async writeListenerCert (commonName) {
      const pair = await ca.issue({ commonName, ipAddresses: ['127.0.0.1'], usage: 'server' })
      await writeFile(join(dir, 'gw.key'), pair.key)
      await writeFile(join(dir, 'gw.crt'), pair.cert)
    },
    token: async () => signToken(privateKey)
  }
  await files.writeListenerCert('gw-1')
  return files
}

async function signToken (key: KeyObject): Promise<string> {
  return new SignJWT({ roles: ['reader'] })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .setIssuer('https://idp.test').setAudience('api').setSubject('carol').setExpirationTime('10m')
    .sign(await importJWK({ ...key.export({ format: 'jwk' }) }, 'ES256'))
}

export interface GatewayProcess {
  child: ChildProcess
  url: string
  adminUrl: string
  /** Everything the process wrote to stdout and stderr so far. */
  log: () => string
  exited: Promise<number | null>
  /** Resolves once the log matches. */
  waitForLog: (pattern: RegExp) => Promise<void>
}

/**
 * `portcullis start -c <configFile>` as a child process, killed at teardown if still running.
 * `launcher`: what runs dist/cli.js (default: this Node, without flags).
 */
export async function startGatewayProcess (t: Test, configFile: string, args: string[] = [], launcher: readonly string[] = [process.execPath]): Promise<GatewayProcess> {
  const child = spawn(launcher[0]!, [...launcher.slice(1), CLI, 'start', '-c', configFile, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  t.teardown(() => { child.kill('SIGKILL') })
  let log = ''
  const waiters: Array<() => void> = []
  const onData = (d: Buffer): void => { log += String(d); for (const w of waiters.splice(0)) w() }
  child.stdout.on('data', onData)
  child.stderr.on('data', onData)
  const exited = new Promise<number | null>(resolve => child.once('exit', resolve))
  const waitForLog = async (pattern: RegExp): Promise<void> => {
    while (!pattern.test(log)) {
      const more = new Promise<void>(resolve => waiters.push(resolve))
      const result = await Promise.race([more.then(() => 'data'), exited.then(() => 'exit')])
      if (result === 'exit' && !pattern.test(log)) throw new Error(`gateway exited before ${String(pattern)}:\n${log}`)
    }
  }
  await waitForLog(/portcullis is listening/)
  const url = /"url":"(https:\/\/[^"]+)"/.exec(log)![1]!
  const adminUrl = /"admin":"(https?:\/\/[^"]+)"/.exec(log)![1]!
  return { child, url, adminUrl, log: () => log, exited, waitForLog }
}

/** SIGHUP, then wait until the gateway says the reload was applied. */
export async function reloadAndWait (gw: GatewayProcess): Promise<void> {
  const count = (): number => gw.log().split('\n').filter(l => l.includes('config reloaded')).length
  const before = count()
  gw.child.kill('SIGHUP')
  for (let i = 0; i < 200 && count() === before; i++) await new Promise(resolve => setTimeout(resolve, 50))
  if (count() === before) throw new Error(`no reload:\n${gw.log()}`)
}

/**
 * One config for every replica (or every worker): a real Redis as the rate-limit store, through which
 * revocations and bans are shared, and the admin API with its token.
 */
export async function sharedStoreSetup (t: Test, extra = '') {
  const redis = await startRedis(t)
  const files = await gatewayFiles(t)
  const fn = await startPlainUpstream(t, 'fn')
  const adminToken = randomBytes(32).toString('base64url')
  const tokenFile = join(files.dir, 'admin-token')
  writeFileSync(tokenFile, adminToken)
  writeFileSync(files.configFile, `
listen: { host: 127.0.0.1, port: 0, tls: { cert: gw.crt, key: gw.key } }
admin: { host: 127.0.0.1, port: 0, tokenFile: admin-token }
issuers:
  - { id: local, issuer: https://idp.test, audiences: [api], algorithms: [ES256], jwks: { file: jwks.json } }
policy: { bundle: "${DEFAULT_BUNDLE}" }
rateLimit: { store: { type: redis, url: "${redis.url}", commandTimeoutMs: 2000 } }
upstreams: [{ id: fn, url: "${fn.url}", plaintext: true }]
routes:
  - { id: hello, prefix: /hello, methods: [GET], upstream: fn }
  # Failures here never ban (the id is one the repository's policy lets readers GET).
  - { id: orders, prefix: /quiet, methods: [GET], upstream: fn, ban: { enabled: false } }
${extra}`)
  return { files, adminToken, tokenFile, client: httpsClient(t, files.caFile) }
}
