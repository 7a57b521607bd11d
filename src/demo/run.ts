import { relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { stringify } from 'yaml'
import { loadConfig, validateConfig } from '../config/load.js'
import type { Config } from '../config/schema.js'
import { startGateway, type RunningGateway } from '../server.js'
import { ensureDemoBundle } from './bundle.js'
import { startDemoFunction, type DemoFunction } from './function.js'
import { startDemoIssuer, type DemoIssuer } from './issuer.js'
import { DEMO_AUDIENCE, ensureDemoState, GATEWAY_SPIFFE_ID, type DemoPaths } from './state.js'

export const DEMO_BUNDLE = fileURLToPath(new URL('../../build/bundle.tar.gz', import.meta.url))

/** The demo's rate limit: per subject and route. Documented in the README. */
export const DEMO_RATE_LIMIT = { max: 10, windowSeconds: 10 }

/** The `iss` of the demo gateway's assertions, which the demo function verifies. */
export const DEMO_ASSERTION_ISSUER = 'https://portcullis.demo/gateway'

export interface DemoOptions {
  dir: string
  host?: string
  ports?: { gateway: number, admin: number, issuer: number, fn: number }
  bundle?: string
  logLevel?: Config['logging']['level']
  bundleWatchIntervalMs?: number
  /** A config file to run instead of the embedded one (start from `portcullis demo config`). */
  config?: string
  /** Adjusts the demo config (a plain object, before validation); tests use it to try other setups. */
  configure?: (config: Record<string, any>, paths: DemoPaths) => void
}

export interface RunningDemo {
  paths: DemoPaths
  /** The config the gateway started with (the embedded one or `config`'s file). */
  config: Config
  gateway: RunningGateway
  issuer: DemoIssuer
  fn: DemoFunction
  close: () => Promise<void>
}

/** The embedded default config: three routes in front of the demo function, one demo issuer. */
export function demoConfig (paths: DemoPaths, issuer: string, fnUrl: string, opts: DemoOptions): unknown {
  return {
    listen: { host: opts.host ?? '127.0.0.1', port: opts.ports?.gateway ?? 8443, tls: { cert: paths.gatewayCert, key: paths.gatewayKey } },
    admin: { host: opts.host ?? '127.0.0.1', port: opts.ports?.admin ?? 9090 },
    logging: { level: opts.logLevel ?? 'info' },
    issuers: [{
      id: 'demo',
      issuer,
      audiences: [DEMO_AUDIENCE],
      algorithms: ['ES256'],
      jwks: { discovery: true },
      ca: paths.caCert
    }],
    policy: { bundle: opts.bundle ?? DEMO_BUNDLE, entrypoint: 'gateway/authz/decision' },
    rateLimit: { default: DEMO_RATE_LIMIT },
    upstreams: [{
      id: 'demo-function',
      url: fnUrl,
      tls: { ca: paths.caCert, cert: paths.gatewayClientCert, key: paths.gatewayClientKey, servername: 'localhost' },
      credentials: { assertion: { bindBody: true } }
    }],
    assertion: { issuer: DEMO_ASSERTION_ISSUER, keysFile: paths.assertionKeys, jwksFile: paths.assertionJwks, claims: ['roles'] },
    routes: [
      { id: 'hello', prefix: '/hello', methods: ['GET'], upstream: 'demo-function' },
      { id: 'orders', prefix: '/orders', methods: ['GET', 'POST', 'PUT', 'DELETE'], upstream: 'demo-function' },
      { id: 'admin', prefix: '/admin', methods: ['GET', 'POST', 'DELETE'], upstream: 'demo-function' }
    ]
  }
}

/**
 * The embedded config as a YAML file to start from (`portcullis demo config > my-gateway.yaml`): the
 * demo's issuer and function URLs, and its files relative to `baseDir`, where the file will be saved.
 * Routes come last, so a route can be added by appending to the file.
 */
export function demoConfigYaml (paths: DemoPaths, opts: DemoOptions, baseDir: string): string {
  const host = opts.host ?? '127.0.0.1'
  const local = (file: string): string => relative(baseDir, file) || '.'
  const rel: DemoPaths = Object.fromEntries(Object.entries(paths).map(([k, v]) => [k, local(v)])) as unknown as DemoPaths
  const config = demoConfig(rel, `https://${host}:${opts.ports?.issuer ?? 8444}`, `https://${host}:${opts.ports?.fn ?? 8445}`,
    { ...opts, bundle: local(opts.bundle ?? DEMO_BUNDLE) })
  return [
    '# The Portcullis demo config: run it with `npx portcullis demo run --config <this file>`, which starts',
    '# the demo issuer and function too. Paths are relative to this file. Reference: docs/configuration.md',
    stringify(config, { lineWidth: 0 })
  ].join('\n')
}

/** Starts the demo issuer, the demo function behind mutual TLS, and the gateway in front of it. */
export async function startDemo (opts: DemoOptions): Promise<RunningDemo> {
  const host = opts.host ?? '127.0.0.1'
  const paths = await ensureDemoState(opts.dir)
  const issuer = await startDemoIssuer(paths, host, opts.ports?.issuer ?? 8444)
  const closers: Array<() => Promise<void>> = [issuer.close]
  try {
    const fn = await startDemoFunction({
      host,
      port: opts.ports?.fn ?? 8445,
      cert: paths.functionCert,
      key: paths.functionKey,
      clientCa: paths.caCert,
      allowedClient: GATEWAY_SPIFFE_ID,
      assertion: { issuer: DEMO_ASSERTION_ISSUER, jwksFile: paths.assertionJwks }
    })
    closers.unshift(fn.close)
    const config = opts.config !== undefined
      ? await loadConfig(opts.config)
      : await embeddedConfig(paths, issuer.url, fn.url, opts)
    // The demo's own bundle (also in a config saved from `portcullis demo config`) is built if missing.
    if (config.policy.bundle === DEMO_BUNDLE) await ensureDemoBundle(DEMO_BUNDLE, line => process.stderr.write(`${line}\n`))
    const gateway = await startGateway(config, { bundleWatchIntervalMs: opts.bundleWatchIntervalMs ?? 2000 })
    closers.unshift(gateway.close)
    return { paths, config, gateway, issuer, fn, close: async () => { for (const c of closers) await c() } }
  } catch (err) {
    for (const c of closers) await c()
    throw err
  }
}

async function embeddedConfig (paths: DemoPaths, issuer: string, fnUrl: string, opts: DemoOptions): Promise<Config> {
  const raw = demoConfig(paths, issuer, fnUrl, opts) as Record<string, any>
  opts.configure?.(raw, paths)
  return validateConfig(raw, { baseDir: paths.dir, source: '<demo config>' })
}
