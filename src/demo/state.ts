import { generateKeyPairSync, randomUUID } from 'node:crypto'
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { createCa, loadCa } from '../tls/pki.js'

/*
 * The demo's local state: a CA, the certificates of each demo party and the demo issuer's signing
 * key, all made on first start and kept in one folder (default `.portcullis-demo/`, git-ignored) so
 * tokens minted later by `portcullis demo token` match the running demo. Demo only: never ship these.
 */

export const DEFAULT_DEMO_DIR = '.portcullis-demo'
export const DEMO_AUDIENCE = 'portcullis-demo'
export const GATEWAY_SPIFFE_ID = 'spiffe://portcullis.demo/gateway'

export interface DemoPaths {
  dir: string
  caCert: string
  gatewayCert: string
  gatewayKey: string
  gatewayClientCert: string
  gatewayClientKey: string
  functionCert: string
  functionKey: string
  issuerCert: string
  issuerKey: string
  signingKey: string
  issuerInfo: string
  /** The gateway's assertion signing keys (private) and their public JWKS, which the function reads. */
  assertionKeys: string
  assertionJwks: string
}

export function demoDir (dir?: string): string {
  return resolve(dir ?? process.env.PORTCULLIS_DEMO_DIR ?? DEFAULT_DEMO_DIR)
}

function pathsIn (dir: string): DemoPaths {
  const p = (f: string): string => join(dir, f)
  return {
    dir,
    caCert: p('ca.crt'),
    gatewayCert: p('gateway.crt'),
    gatewayKey: p('gateway.key'),
    gatewayClientCert: p('gateway-client.crt'),
    gatewayClientKey: p('gateway-client.key'),
    functionCert: p('function.crt'),
    functionKey: p('function.key'),
    issuerCert: p('issuer.crt'),
    issuerKey: p('issuer.key'),
    signingKey: p('issuer-signing-key.json'),
    issuerInfo: p('issuer.json'),
    assertionKeys: p('gateway-assertion-keys.json'),
    assertionJwks: p('gateway-jwks.json')
  }
}

async function exists (file: string): Promise<boolean> {
  return readFile(file).then(() => true, () => false)
}

async function writeSecret (file: string, content: string): Promise<void> {
  await writeFile(file, content, { mode: 0o600 })
  await chmod(file, 0o600)
}

/**
 * Creates whatever part of the demo state is missing and returns where everything is. `progress`
 * hears once, before the keys are made (seconds on a busy machine), what is being waited for.
 */
export async function ensureDemoState (dir: string, progress?: (message: string) => void): Promise<DemoPaths> {
  const paths = pathsIn(dir)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const caKeyFile = join(dir, 'ca.key')
  const present = await Promise.all([caKeyFile, paths.signingKey, ...[paths.gatewayCert, paths.gatewayClientCert, paths.functionCert, paths.issuerCert]].map(exists))
  if (present.includes(false)) progress?.(`making the demo CA, certificates and keys in ${dir} (first run only)`)
  const ca = await exists(caKeyFile)
    ? await loadCa({ cert: await readFile(paths.caCert, 'utf8'), key: await readFile(caKeyFile, 'utf8') })
    : await createCa('Portcullis Demo CA')
  if (!await exists(caKeyFile)) {
    await writeFile(paths.caCert, ca.cert)
    await writeSecret(caKeyFile, ca.key)
  }
  const local = { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1', '::1'] }
  const leaves: Array<[string, string, Parameters<typeof ca.issue>[0]]> = [
    [paths.gatewayCert, paths.gatewayKey, { commonName: 'portcullis-demo-gateway', ...local, usage: 'server' }],
    [paths.gatewayClientCert, paths.gatewayClientKey, { commonName: 'portcullis-gateway', uris: [GATEWAY_SPIFFE_ID], usage: 'client' }],
    [paths.functionCert, paths.functionKey, { commonName: 'demo-function', ...local, usage: 'server' }],
    [paths.issuerCert, paths.issuerKey, { commonName: 'demo-issuer', ...local, usage: 'server' }]
  ]
  for (const [certFile, keyFile, opts] of leaves) {
    if (await exists(certFile) && await exists(keyFile)) continue
    const pair = await ca.issue(opts)
    await writeFile(certFile, pair.cert)
    await writeSecret(keyFile, pair.key)
  }
  if (!await exists(paths.signingKey)) {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' })
    const jwk = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'ES256', use: 'sig' }
    await writeSecret(paths.signingKey, JSON.stringify(jwk, null, 2) + '\n')
  }
  return paths
}
