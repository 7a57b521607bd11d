import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { rename, rm } from 'node:fs/promises'
import { join, relative, resolve } from 'node:path'
import { createGateway } from './app.js'
import type { Config } from './config/schema.js'
import { readBundleFile } from './pipeline/authorize/bundle.js'
import { toDecision } from './pipeline/authorize/decision.js'
import { createPolicyEngine } from './pipeline/authorize/policy-engine.js'

/*
 * Tools for policy authors. `portcullis policy build|test`: the pinned OPA CLI (scripts/opa.mjs)
 * with the gateway's settings, then the gateway's own loader, so a bundle that builds here also
 * loads in the gateway. `portcullis eval`: one request judged by the real gateway, not forwarded.
 */

interface OpaScript {
  DEFAULT_POLICIES_DIR: string
  DEFAULT_BUNDLE: string
  DEFAULT_ENTRYPOINTS: string[]
  GATEWAY_ENTRYPOINT: string
  resolveOpa: () => Promise<string>
  buildBundle: (opts: { policiesDir?: string, out?: string, entrypoints?: string[], capabilities?: string, force?: boolean, check?: boolean }) => Promise<{ out: string }>
}

// Loaded at run time: the script lives outside src/ and is shared with npm scripts and tests.
const opaScript = async (): Promise<OpaScript> => import(new URL('../scripts/opa.mjs', import.meta.url).href) as Promise<OpaScript>

export interface PolicyBuildOptions { dir?: string, out?: string, entrypoints?: string[] }

/**
 * Checks as `npm run policy:check` does (strict, input schema, capabilities), compiles, then loads the
 * result as the gateway would; nothing is left at `out` if any of them fails.
 */
export async function buildPolicies (opts: PolicyBuildOptions): Promise<{ out: string, revision: string, entrypoints: string[] }> {
  const opa = await opaScript()
  const out = resolve(opts.out ?? opa.DEFAULT_BUNDLE)
  const dir = resolve(opts.dir ?? opa.DEFAULT_POLICIES_DIR)
  // As npm run policy:build: the repository's policies with the library's entrypoints, any other
  // folder with the gateway's one.
  const entrypoints = opts.entrypoints !== undefined && opts.entrypoints.length > 0
    ? opts.entrypoints
    : dir === resolve(opa.DEFAULT_POLICIES_DIR) ? opa.DEFAULT_ENTRYPOINTS : [opa.GATEWAY_ENTRYPOINT]
  const tmp = `${out}.${process.pid}.check`
  try {
    // The folder's own capabilities.json if it has one, else the gateway's (policies/capabilities.json).
    const own = join(dir, 'capabilities.json')
    const capabilities = existsSync(own) ? own : join(opa.DEFAULT_POLICIES_DIR, 'capabilities.json')
    const bundle = await pointToBuiltinDocs(async () => {
      await opa.buildBundle({ policiesDir: dir, out: tmp, entrypoints, capabilities, force: true, check: true })
      const bundle = await readBundleFile(tmp)
      await createPolicyEngine(bundle, entrypoints)
      return bundle
    })
    await rename(tmp, out)
    return { out, revision: bundle.revision, entrypoints }
  } finally {
    await rm(tmp, { force: true })
  }
}

// opa's "undefined function x" and the loader's "builtins the gateway does not provide" both mean
// a builtin the gateway refuses: say where the list of refused builtins, and their reasons, is.
const UNSUPPORTED_BUILTIN = /undefined function [\w.]+|builtins the gateway does not provide/
const BUILTIN_DOCS = 'builtins a gateway policy may not call, and why: docs/policy-authoring.md#builtins'

async function pointToBuiltinDocs<T> (build: () => Promise<T>): Promise<T> {
  try {
    return await build()
  } catch (err) {
    if (err instanceof Error && UNSUPPORTED_BUILTIN.test(err.message)) err.message += `\n${BUILTIN_DOCS}`
    throw err
  }
}

/**
 * `opa test` over the policies, then their coverage; resolves to the exit code. Without `verbose` a
 * failure prints only opa's short list (each failing test with its file and line, then the counts)
 * and how to see more, not every test's trace.
 */
export async function testPolicies (opts: { dir?: string, verbose?: boolean, write: (s: string) => void }): Promise<number> {
  const opa = await opaScript()
  const bin = await opa.resolveOpa()
  const dir = resolve(opts.dir ?? opa.DEFAULT_POLICIES_DIR)
  const ignore = ['--ignore', '*.schema.json', '--ignore', 'capabilities.json']
  const code = await runOpa(bin, ['test', ...ignore, ...(opts.verbose === true ? ['-v'] : []), dir], 'inherit')
  if (code !== 0) {
    if (opts.verbose !== true) opts.write('Each FAIL above names a test and its file:line; `portcullis policy test --verbose` prints every test with the trace of the failing ones.\n')
    return code
  }
  const { stdout } = await runOpa(bin, ['test', ...ignore, '--coverage', '--format', 'json', dir], 'pipe')
  const report = JSON.parse(stdout) as { coverage?: number, files?: Record<string, { coverage?: number }> }
  for (const [file, c] of Object.entries(report.files ?? {})) opts.write(`coverage ${(c.coverage ?? 0).toFixed(1)}%  ${relative(process.cwd(), file) || file}\n`)
  opts.write(`coverage ${(report.coverage ?? 0).toFixed(1)}% in total\n`)
  return 0
}

function runOpa (bin: string, args: string[], stdio: 'inherit'): Promise<number>
function runOpa (bin: string, args: string[], stdio: 'pipe'): Promise<{ code: number, stdout: string }>
async function runOpa (bin: string, args: string[], stdio: 'inherit' | 'pipe'): Promise<number | { code: number, stdout: string }> {
  const child = spawn(bin, args, { stdio: stdio === 'inherit' ? 'inherit' : ['ignore', 'pipe', 'inherit'] })
  let stdout = ''
  child.stdout?.on('data', (c: Buffer) => { stdout += c.toString('utf8') })
  const code = await new Promise<number>((resolve, reject) => child.on('error', reject).on('close', c => resolve(c ?? 1)))
  return stdio === 'inherit' ? code : { code, stdout }
}

export interface EvalRequest { request: string, token?: string, headers: Record<string, string> }

export interface EvalReport {
  request: string
  /** What the gateway would answer; 200 means it would forward to the function. */
  status: number
  /** Every stage passed: the gateway would forward it to the function. */
  would_forward: boolean
  code: string | null
  route: string | null
  decision_id: string | null
  entrypoint: string | null
  input: unknown
  result: unknown
  reasons: string[] | null
}

/**
 * `portcullis eval`: one request through the real gateway built from `config` (route match,
 * authentication, policy), answered by a stand-in instead of the function. Nothing is forwarded.
 */
export async function evaluateRequest (config: Config, req: EvalRequest): Promise<EvalReport> {
  const m = /^([A-Z]+)\s+(\/\S*)$/.exec(req.request.trim())
  if (m === null) throw new Error(`--request must look like 'GET /orders/7', not '${req.request}'`)
  let seen: { entrypoint: string, input: unknown, result: unknown } | undefined
  const gateway = await createGateway({ ...config, logging: { level: 'silent' } }, {
    bundleWatchIntervalMs: 0,
    evaluateOnly: {
      handler: async (_request, reply) => reply.code(200).send({ forwarded: false }),
      onEvaluated: (_request, evaluation) => { seen = evaluation }
    }
  })
  try {
    const headers: Record<string, string> = { host: config.listen.hosts?.[0] ?? 'localhost', ...req.headers }
    if (req.token !== undefined) headers.authorization = `Bearer ${req.token}`
    const res = await gateway.app.inject({ method: m[1] as 'GET', url: m[2]!, headers })
    let code: string | null = null
    try { code = (res.json() as { code?: string }).code ?? null } catch {}
    const decision = seen !== undefined ? toDecision(seen.result) : null
    const id = res.headers['x-portcullis-decision-id']
    return {
      request: `${m[1]} ${m[2]}`,
      status: res.statusCode,
      would_forward: res.statusCode === 200 && code === null,
      code,
      route: (seen?.input as { route?: { id?: string } } | undefined)?.route?.id ?? null,
      decision_id: typeof id === 'string' ? id : null,
      entrypoint: seen?.entrypoint ?? null,
      input: seen?.input ?? null,
      result: seen?.result ?? null,
      reasons: decision?.reasons ?? null
    }
  } finally {
    await gateway.close()
  }
}
