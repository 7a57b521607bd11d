#!/usr/bin/env node
import cluster from 'node:cluster'
import { readFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { relative } from 'node:path'
import { Command, InvalidArgumentError, Option } from 'commander'
import type { DemoOptions } from './demo/run.js'
import { demoDir, ensureDemoState, GATEWAY_SPIFFE_ID } from './demo/state.js'
import { claimProblem, mintDemoToken } from './demo/token.js'
import { callAdmin, parseDuration, type AdminCallOptions } from './admin/client.js'
import { formatReplayReport, replayDecisions } from './policy-replay.js'
import { maxSemiSpaceMiB, tuneAllocationSitePretenuring } from './lifecycle/node-flags.js'

/* Argument parsing and exit codes only: 0 ok, 1 runtime failure, 2 invalid configuration or usage. */

// The gateway's modules (Fastify, the cloud SDKs, the config schema) take seconds to load on a busy
// machine: each command loads what it uses, so `demo token` answers in well under a second.
const configLoader = async (): Promise<typeof import('./config/load.js')> => import('./config/load.js')
const server = async (): Promise<typeof import('./server.js')> => import('./server.js')
const demoRun = async (): Promise<typeof import('./demo/run.js')> => import('./demo/run.js')
const policyTools = async (): Promise<typeof import('./policy-tools.js')> => import('./policy-tools.js')

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }

function fail (err: unknown): never {
  if (err instanceof Error && err.name === 'ConfigError') {
    process.stderr.write(`${err.message}\n`)
    process.exit(2)
  }
  process.stderr.write(`portcullis: ${(err as Error).message}\n`)
  process.exit(1)
}

/** A port already taken fails with the way to choose another, not only `listen EADDRINUSE`. */
function portInUse (how: string): (err: unknown) => never {
  return err => {
    const e = err as NodeJS.ErrnoException & { address?: string, port?: number }
    if (e?.code === 'EADDRINUSE') {
      process.stderr.write(`portcullis: ${e.address ?? ''}:${e.port ?? ''} is already in use; ${how}\n`)
      process.exit(1)
    }
    return fail(err)
  }
}

function parseInteger (value: string): number {
  if (!/^-?\d+$/.test(value)) throw new InvalidArgumentError('must be an integer')
  return Number(value)
}

function parseCount (value: string): number {
  const n = parseInteger(value)
  if (n < 0) throw new InvalidArgumentError('must be 0 or more')
  return n
}

/** `--ports gateway,admin,issuer,function`, e.g. 8443,9090,8444,8445 (the defaults). */
function parsePorts (value: string): NonNullable<DemoOptions['ports']> {
  const ports = value.split(',').map(Number)
  if (ports.length !== 4 || !ports.every(p => Number.isInteger(p) && p > 0 && p < 65536)) {
    throw new InvalidArgumentError('expected four ports: gateway,admin,issuer,function')
  }
  const [gateway, admin, issuer, fn] = ports as [number, number, number, number]
  return { gateway, admin, issuer, fn }
}

function collectClaim (value: string, previous: Record<string, unknown>): Record<string, unknown> {
  const eq = value.indexOf('=')
  if (eq < 1) throw new InvalidArgumentError('expected key=value')
  const raw = value.slice(eq + 1)
  let parsed: unknown = raw
  // JSON when it parses (numbers, booleans, arrays), otherwise the plain string.
  try { parsed = JSON.parse(raw) } catch {}
  const name = value.slice(0, eq)
  // Registered claims (iss, aud, exp...) are honoured as given, so they must have their JWT type.
  const problem = claimProblem(name, parsed)
  if (problem !== null) throw new InvalidArgumentError(problem)
  return { ...previous, [name]: parsed }
}

function collectHeader (value: string, previous: Record<string, string>): Record<string, string> {
  const colon = value.indexOf(':')
  if (colon < 1) throw new InvalidArgumentError('expected "name: value"')
  return { ...previous, [value.slice(0, colon).trim().toLowerCase()]: value.slice(colon + 1).trim() }
}

const program = new Command('portcullis')
  .description('Zero Trust API gateway for serverless functions')
  .version(version)
  .showHelpAfterError()
program.exitOverride(err => process.exit(err.exitCode === 0 ? 0 : 2))

function parseWorkers (value: string): number {
  if (value === 'auto') return availableParallelism()
  const n = parseInteger(value)
  if (n < 1) throw new InvalidArgumentError('must be at least 1, or auto')
  return n
}

program.command('start')
  .description('run a gateway from a config file')
  .requiredOption('-c, --config <file>', 'YAML config file')
  .option('-w, --workers <n>', 'processes sharing the port: a number, or auto for one per CPU', parseWorkers, 1)
  .action(async (opts: { config: string, workers: number }) => {
    const pretenuring = tuneAllocationSitePretenuring() // before the request path runs (lifecycle/node-flags.ts)
    const { closeOnSignals, startGateway } = await server()
    // A worker runs the config its primary hands it, not the file (which may have changed since).
    if (cluster.isWorker && process.env.PORTCULLIS_WORKER === '1') {
      const { startWorker } = await import('./lifecycle/cluster-worker.js')
      const running = await startWorker().catch(fail)
      closeOnSignals(running, running.gateway.app.log)
      return
    }
    const config = await (await configLoader()).loadConfig(opts.config).catch(fail)
    if (opts.workers > 1) {
      const { runPrimary } = await import('./lifecycle/cluster.js')
      await runPrimary(config, opts.workers, opts.config).catch(fail)
      return
    }
    const running = await startGateway(config, { configFile: opts.config }).catch(portInUse(`change listen.port or admin.port in ${opts.config}`))
    running.gateway.app.log.info({ url: running.url, admin: running.adminUrl, config_hash: running.configHash, max_semi_space_mib: maxSemiSpaceMiB(), allocation_site_pretenuring: pretenuring }, 'portcullis is listening')
    closeOnSignals(running, running.gateway.app.log)
  })

program.command('check')
  .description('validate a config file and list every problem')
  .requiredOption('-c, --config <file>', 'YAML config file')
  .option('--skip-credentials', 'do not look for the AWS, Google or Azure credentials upstreams need (a machine without the gateway\'s identity)')
  .action(async (opts: { config: string, skipCredentials?: boolean }) => {
    const config = await (await configLoader()).loadConfig(opts.config).catch(fail)
    const { credentialProblems } = await import('./pipeline/forward/credentials/availability.js')
    const missing = opts.skipCredentials === true ? [] : await credentialProblems(config.upstreams)
    if (missing.length > 0) {
      process.stderr.write([`${opts.config}: valid, but the gateway could not call these functions (every request would be a 502):`,
        ...missing.map(m => `- ${m.path}: ${m.problem}`), '(--skip-credentials checks the config alone)', ''].join('\n'))
      process.exit(2)
    }
    process.stdout.write(`${opts.config}: ok (${config.routes.length} routes, ${config.upstreams.length} upstreams, ${config.issuers.length} issuers)\n`)
  })

const policy = program.command('policy').description('for policy authors: build and test Rego with the pinned OPA')

policy.command('build')
  .description('compile policies to a WASM bundle and load it as the gateway would')
  .option('-d, --dir <dir>', 'policies folder (default: policies/)')
  .option('-o, --out <file>', 'bundle file (default: build/bundle.tar.gz)')
  .option('-e, --entrypoint <path>', 'entrypoint (repeatable; default gateway/authz/decision, and the library\'s for policies/)', (v: string, prev: string[]) => [...prev, v], [] as string[])
  .action(async (opts: { dir?: string, out?: string, entrypoint: string[] }) => {
    const built = await (await policyTools()).buildPolicies({ ...opts, entrypoints: opts.entrypoint }).catch(fail)
    process.stdout.write(`built ${built.out} (revision ${built.revision}; entrypoints ${built.entrypoints.join(', ')})\n`)
  })

policy.command('test')
  .description('run opa test over the policies and report coverage')
  .option('-d, --dir <dir>', 'policies folder (default: policies/)')
  .option('-v, --verbose', 'list every test, with the trace of each failing one')
  .action(async (opts: { dir?: string, verbose?: boolean }) => {
    const code = await (await policyTools()).testPolicies({ ...opts, write: s => process.stdout.write(s) }).catch(fail)
    process.exitCode = code
  })

policy.command('replay')
  .description('judge the inputs of a decision log (JSONL) with another bundle and report which decisions would change')
  .requiredOption('--decisions <file>', 'decision-log file: the gateway\'s decisionLog.file, or its stdout log lines')
  .requiredOption('--bundle <file>', 'the bundle to replay them with (policy build output)')
  .option('--max-diff <n>', 'exit 1 when more decisions than this differ', parseCount, 0)
  .option('--examples <n>', 'differing decisions shown with both results', parseCount, 5)
  .addOption(new Option('--format <format>', 'report format').choices(['text', 'json']).default('text'))
  .action(async (opts: { decisions: string, bundle: string, maxDiff: number, examples: number, format: 'text' | 'json' }) => {
    const report = await replayDecisions(opts).catch(fail)
    process.stdout.write(opts.format === 'json' ? `${JSON.stringify(report, null, 2)}\n` : formatReplayReport(report))
    process.exitCode = report.passed ? 0 : 1
  })

program.command('eval')
  .description('judge one request as the gateway would (route, authentication, policy) without forwarding it; exit 1 when it could not be judged (5xx)')
  .requiredOption('-c, --config <file>', 'YAML config file')
  .requiredOption('-r, --request <request>', "method and path, e.g. 'GET /orders/7?x=1'")
  .option('-t, --token <jwt>', 'bearer token to present')
  .option('-H, --header <name: value>', 'request header (repeatable)', collectHeader, {} as Record<string, string>)
  .action(async (opts: { config: string, request: string, token?: string, header: Record<string, string> }) => {
    const config = await (await configLoader()).loadConfig(opts.config).catch(fail)
    const report = await (await policyTools()).evaluateRequest(config, { request: opts.request, headers: opts.header, ...(opts.token !== undefined ? { token: opts.token } : {}) }).catch(fail)
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`)
    // A 5xx is no verdict on the request: the gateway could not judge it (no bundle, a policy fault).
    if (report.status >= 500) {
      process.stderr.write(`portcullis eval: the gateway could not judge this request (${report.status} ${report.code ?? ''}); see docs/errors.md\n`)
      process.exitCode = 1
    }
  })

function parseTtl (value: string): number {
  const seconds = parseDuration(value)
  if (seconds === null) throw new InvalidArgumentError('expected seconds or a duration such as 90s, 15m, 12h, 7d')
  return seconds
}

const adminOptions = (cmd: Command): Command => cmd
  .option('--admin-url <url>', 'the gateway\'s admin listener', process.env.PORTCULLIS_ADMIN_URL ?? 'http://127.0.0.1:9090')
  .option('--token-file <file>', 'file holding the admin token (default: $PORTCULLIS_ADMIN_TOKEN)')
  .option('--actor <name>', 'who is acting, for the audit log (default: the login name)')
  .option('--ca <file>', 'CA file the admin listener\'s certificate chains to (admin.tls)')
  .option('--cert <file>', 'client certificate for an admin listener with admin.tls.clientCa (with --key)')
  .option('--key <file>', 'the private key of --cert')

adminOptions(program.command('revoke')
  .description('deny a token id, a subject or a client certificate until the TTL runs out (every replica, with Redis)')
  .option('--jti <id>', 'token id (jti claim)')
  .option('--sub <subject>', 'subject (sub claim, or the client certificate identity)')
  .option('--client-cert <thumbprint>', 'client certificate SHA-256 thumbprint (hex or base64url)')
  .requiredOption('--ttl <duration>', 'how long: seconds, or 90s, 15m, 12h, 7d', parseTtl)
  .option('--reason <text>', 'why, for the audit log and /admin/revocations'))
  .action(async (opts: AdminCallOptions & { jti?: string, sub?: string, clientCert?: string, ttl: number, reason?: string }) => {
    const given = ([['jti', opts.jti], ['sub', opts.sub], ['cert', opts.clientCert]] as const).filter(([, v]) => v !== undefined)
    if (given.length !== 1) {
      process.stderr.write('portcullis revoke: give exactly one of --jti, --sub, --client-cert\n')
      process.exit(2)
    }
    const [kind, value] = given[0]!
    const r = await callAdmin(opts, 'POST', '/admin/revocations', { kind, value, ttlSeconds: opts.ttl, ...(opts.reason !== undefined ? { reason: opts.reason } : {}) }).catch(fail)
    process.stdout.write(`${JSON.stringify(r)}\n`)
  })

adminOptions(program.command('unban')
  .description('lift an automatic ban of a client IP or a subject')
  .option('--ip <address>', 'client IP (IPv6: the /64 as listed by GET /admin/bans)')
  .option('--sub <subject>', 'subject'))
  .action(async (opts: AdminCallOptions & { ip?: string, sub?: string }) => {
    if ((opts.ip === undefined) === (opts.sub === undefined)) {
      process.stderr.write('portcullis unban: give exactly one of --ip, --sub\n')
      process.exit(2)
    }
    const [scope, value] = opts.ip !== undefined ? ['ip', opts.ip] : ['sub', opts.sub!]
    await callAdmin(opts, 'DELETE', `/admin/bans/${scope}/${encodeURIComponent(value)}`).catch(fail)
    process.stdout.write(`ban on ${scope} ${value} lifted\n`)
  })

const init = program.command('init').description('start something of your own from a template')

init.command('function')
  .description('a function that verifies the gateway assertion, a local runner serving it over mutual TLS as its platform would, and a gateway config fronting it')
  .requiredOption('--platform <platform>', 'aws-lambda, cloud-run, azure or node', (v: string) => {
    if (!['aws-lambda', 'cloud-run', 'azure', 'node'].includes(v)) throw new InvalidArgumentError('expected aws-lambda, cloud-run, azure or node')
    return v
  })
  .option('--name <id>', 'route and upstream id; the route is /<id>', 'my-function')
  .option('--out <folder>', 'folder to create (default: the name)')
  .option('--port <port>', 'port the function listens on locally', parseInteger, 8446)
  .option('--dir <dir>', 'demo state folder (default: $PORTCULLIS_DEMO_DIR or .portcullis-demo)')
  .option('--ports <list>', 'the demo\'s gateway,admin,issuer,function ports, if you moved them', parsePorts)
  .action(async (opts: { platform: 'aws-lambda', name: string, out?: string, port: number, dir?: string, ports?: DemoOptions['ports'] }) => {
    const { initFunction } = await import('./demo/init-function.js')
    const out = opts.out ?? opts.name
    const made = await initFunction({
      platform: opts.platform, name: opts.name, dir: out, port: opts.port, demoDir: demoDir(opts.dir), progress: m => process.stderr.write(`${m}\n`),
      ...(opts.ports !== undefined ? { ports: opts.ports } : {})
    }).catch(fail)
    process.stdout.write([
      `created ${out}/ (${opts.platform}): ${made.files.join(', ')}`,
      'next, each in its own terminal:',
      `  node ${out}/serve.mjs`,
      `  npx portcullis demo run --config ${out}/gateway.yaml`,
      ''
    ].join('\n'))
  })

const demo = program.command('demo').description('the self-contained demo: issuer, mTLS function and gateway')

demo.command('run', { isDefault: true })
  .description('start the demo (default)')
  .option('--dir <dir>', 'demo state folder (default: $PORTCULLIS_DEMO_DIR or .portcullis-demo)')
  .option('-c, --config <file>', 'run this config instead of the embedded one (start from `portcullis demo config`)')
  .option('--ports <list>', 'gateway,admin,issuer,function ports', parsePorts)
  .action(async (opts: { dir?: string, config?: string, ports?: DemoOptions['ports'] }) => {
    tuneAllocationSitePretenuring() // before the request path runs (lifecycle/node-flags.ts)
    const { startDemo } = await demoRun()
    const { demoTries } = await import('./demo/banner.js')
    const { closeOnSignals } = await server()
    const running = await startDemo({
      dir: demoDir(opts.dir),
      ...(opts.config !== undefined ? { config: opts.config } : {}),
      ...(opts.ports !== undefined ? { ports: opts.ports } : {})
    }).catch(portInUse('choose free ones with --ports gateway,admin,issuer,function, e.g. --ports 18443,19090,18444,18445'))
    const dir = relative(process.cwd(), running.paths.dir) || '.'
    const url = running.gateway.url
    const ca = `${dir}/ca.crt`
    process.stdout.write([
      '',
      `Portcullis demo is running (state in ${dir}/, a folder you may delete to start afresh)`,
      `  gateway   ${url}          (TLS, certificate from the demo CA ${ca})`,
      `  admin     ${running.gateway.adminUrl}           (/metrics /healthz /readyz /status)`,
      `  issuer    ${running.issuer.url}          (OIDC discovery + JWKS)`,
      `  function  ${running.fn.url}          (mutual TLS only: the gateway's client certificate)`,
      '',
      'Try it from another terminal in this folder:',
      ...demoTries({ url, adminUrl: running.gateway.adminUrl, ca, routes: opts.config !== undefined ? running.config.routes : null }),
      '',
      'Ctrl-C stops it.',
      ''
    ].join('\n'))
    // SIGHUP rebuilds the demo gateway from its config, re-reading certificates, keys and bundle.
    closeOnSignals({ close: running.close, reload: running.gateway.reload }, running.gateway.gateway.app.log)
  })

demo.command('config')
  .description('print the embedded demo config as YAML, to save in this folder and change')
  .option('--dir <dir>', 'demo state folder (default: $PORTCULLIS_DEMO_DIR or .portcullis-demo)')
  .option('--ports <list>', 'gateway,admin,issuer,function ports', parsePorts)
  .action(async (opts: { dir?: string, ports?: DemoOptions['ports'] }) => {
    const dir = demoDir(opts.dir)
    const paths = await ensureDemoState(dir).catch(fail)
    const { demoConfigYaml } = await demoRun()
    process.stdout.write(demoConfigYaml(paths, { dir, ...(opts.ports !== undefined ? { ports: opts.ports } : {}) }, process.cwd()))
  })

demo.command('token')
  .description('print a JWT from the demo issuer')
  .option('--sub <subject>', 'subject (sub claim)', 'alice')
  .option('--role <role>', 'role to grant (repeatable): reader, writer, admin', (v: string, prev: string[]) => [...prev, v], [] as string[])
  .option('--ttl <seconds>', 'lifetime in seconds; negative gives an expired token', parseInteger, 3600)
  .option('--claim <key=value>', 'claim to set (repeatable; JSON values are parsed); registered claims (iss, aud, sub, exp, nbf, iat, jti, and roles) replace the defaults', collectClaim, {} as Record<string, unknown>)
  .option('--dir <dir>', 'demo state folder (default: $PORTCULLIS_DEMO_DIR or .portcullis-demo)')
  .action(async (opts: { sub: string, role: string[], ttl: number, claim: Record<string, unknown>, dir?: string }) => {
    const paths = await ensureDemoState(demoDir(opts.dir), m => process.stderr.write(`${m}\n`)).catch(fail)
    const roles = opts.role.length > 0 ? opts.role : ['reader']
    const token = await mintDemoToken(paths, { sub: opts.sub, roles, ttl: opts.ttl, claims: opts.claim }).catch(fail)
    process.stdout.write(`${token}\n`)
  })

demo.command('function')
  .description('run only the demo function (mutual TLS only), e.g. as its own container')
  .requiredOption('--cert <file>', 'server certificate (PEM)')
  .requiredOption('--key <file>', 'server key (PEM)')
  .requiredOption('--client-ca <file>', 'CA that must have signed the caller\'s client certificate')
  .option('--allowed-client <uri>', 'the only caller identity (URI SAN) admitted', GATEWAY_SPIFFE_ID)
  .option('--host <host>', 'address to listen on', '127.0.0.1')
  .option('--port <port>', 'port to listen on', parseInteger, 8445)
  .action(async (opts: { cert: string, key: string, clientCa: string, allowedClient: string, host: string, port: number }) => {
    const { startDemoFunction } = await import('./demo/function.js')
    const { closeOnSignals } = await server()
    const fn = await startDemoFunction({ ...opts }).catch(fail)
    process.stdout.write(`demo function listening on ${fn.url} (mutual TLS; admits ${opts.allowedClient})\n`)
    closeOnSignals({ close: fn.close }, { info: (_o, m) => { process.stdout.write(`${m}\n`) } })
  })

await program.parseAsync(process.argv)
