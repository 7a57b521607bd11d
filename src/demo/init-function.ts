import { copyFile, mkdir, readdir, symlink, writeFile } from 'node:fs/promises'
import { join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { stringify } from 'yaml'
import { DEMO_ASSERTION_ISSUER, DEMO_BUNDLE, demoConfig, type DemoOptions } from './run.js'
import { ensureDemoState, GATEWAY_SPIFFE_ID, type DemoPaths } from './state.js'

/*
 * `portcullis init function`: a function of one's own from a template in examples/functions/, with a
 * local runner that serves it over mutual TLS as its platform would invoke it, and a gateway config
 * for `portcullis demo run --config` that fronts it on a route of its name. It uses the demo's CA and
 * keys, so the demo issuer's tokens and the demo gateway's assertions work at once.
 */

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const TEMPLATES = join(ROOT, 'examples', 'functions')

/** Per platform: the handler and the runner that invokes it as the platform does. */
export const FUNCTION_PLATFORMS = {
  'aws-lambda': { handler: 'lambda-handler.mjs', serve: 'serve-lambda.mjs' },
  'cloud-run': { handler: 'http-handler.mjs', serve: 'serve-http.mjs' },
  azure: { handler: 'azure-handler.mjs', serve: 'serve-azure.mjs' },
  node: { handler: 'http-handler.mjs', serve: 'serve-http.mjs' }
} as const

export type FunctionPlatform = keyof typeof FUNCTION_PLATFORMS

export interface InitFunctionOptions {
  platform: FunctionPlatform
  /** The route and upstream id, and the path prefix `/<name>`. */
  name: string
  /** The folder to create; it must not exist or be empty. */
  dir: string
  /** Where the function listens locally. */
  port: number
  demoDir: string
  ports?: DemoOptions['ports']
  /** Hears what is being waited for (the demo's keys, made on first use). */
  progress?: (message: string) => void
}

export async function initFunction (opts: InitFunctionOptions): Promise<{ dir: string, files: string[] }> {
  if (!/^[a-z0-9][a-z0-9_-]*$/.test(opts.name)) throw new Error(`--name ${opts.name}: use lower-case letters, digits, - and _ (it becomes a route id and /${opts.name})`)
  const dir = resolve(opts.dir)
  const existing = await readdir(dir).catch(() => [])
  if (existing.length > 0) throw new Error(`${opts.dir} exists and is not empty; choose another --dir`)
  const paths = await ensureDemoState(opts.demoDir, opts.progress)
  await mkdir(dir, { recursive: true })
  const rel = (file: string): string => relative(dir, file) || '.'
  const { handler, serve } = FUNCTION_PLATFORMS[opts.platform]
  await copyFile(join(TEMPLATES, handler), join(dir, 'handler.mjs'))
  await copyFile(join(TEMPLATES, serve), join(dir, 'serve.mjs'))
  for (const shared of ['verifier.mjs', 'local-runner.mjs']) await copyFile(join(TEMPLATES, shared), join(dir, shared))
  const url = `https://127.0.0.1:${opts.port}`
  const local = {
    platform: opts.platform,
    host: '127.0.0.1',
    port: opts.port,
    cert: rel(paths.functionCert),
    key: rel(paths.functionKey),
    ca: rel(paths.caCert),
    gateway: GATEWAY_SPIFFE_ID,
    // What the platform's settings would hold: the handler reads these from the environment.
    env: { PORTCULLIS_ASSERTION_ISSUER: DEMO_ASSERTION_ISSUER, FUNCTION_AUDIENCE: url, PORTCULLIS_JWKS: rel(paths.assertionJwks), FUNCTION_PLATFORM: opts.platform }
  }
  await writeFile(join(dir, 'local.json'), JSON.stringify(local, null, 2) + '\n')
  await writeFile(join(dir, 'gateway.yaml'), gatewayYaml(paths, opts, url, rel))
  await writeFile(join(dir, 'package.json'), JSON.stringify({
    name: opts.name,
    private: true,
    type: 'module',
    scripts: { start: 'node serve.mjs' },
    dependencies: { portcullis: `file:${rel(ROOT)}` }
  }, null, 2) + '\n')
  // What `npm install` does for that file: dependency, without the network: portcullis/verify
  // resolves to this clone's dist/verify (and its dependencies to the clone's node_modules).
  await mkdir(join(dir, 'node_modules'))
  await symlink(relative(join(dir, 'node_modules'), ROOT), join(dir, 'node_modules', 'portcullis'), 'dir')
  return { dir, files: ['handler.mjs', 'serve.mjs', 'verifier.mjs', 'local-runner.mjs', 'local.json', 'gateway.yaml', 'package.json'] }
}

/** The demo config with this function as its one upstream and `/<name>` as its one route. */
function gatewayYaml (paths: DemoPaths, opts: InitFunctionOptions, url: string, rel: (file: string) => string): string {
  const relPaths = Object.fromEntries(Object.entries(paths).map(([k, v]) => [k, rel(v)])) as unknown as DemoPaths
  const config = demoConfig(relPaths, `https://127.0.0.1:${opts.ports?.issuer ?? 8444}`, url, {
    dir: opts.demoDir, bundle: rel(DEMO_BUNDLE), ...(opts.ports !== undefined ? { ports: opts.ports } : {})
  }) as Record<string, any>
  config.upstreams = [{
    id: opts.name,
    url,
    tls: { ca: relPaths.caCert, cert: relPaths.gatewayClientCert, key: relPaths.gatewayClientKey, servername: 'localhost' },
    credentials: { assertion: { bindBody: true } }
  }]
  config.routes = [{ id: opts.name, prefix: `/${opts.name}`, methods: ['GET', 'POST'], upstream: opts.name }]
  return [
    `# The gateway in front of ${opts.name} (${opts.platform}): \`npx portcullis demo run --config <this file>\`, with`,
    '# `node serve.mjs` in this folder running. Paths are relative to this file. Reference: docs/configuration.md',
    stringify(config, { lineWidth: 0 })
  ].join('\n')
}
