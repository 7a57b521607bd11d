#!/usr/bin/env node
// The pinned OPA CLI: every machine must compile policies with the same OPA, because the WASM it
// emits is what the gateway runs. Usage:
//   node scripts/opa.mjs path                 print the opa binary (installing it if needed)
//   node scripts/opa.mjs run <args...>        run opa with <args>
//   node scripts/opa.mjs check                opa check --strict with the input schema and capabilities
//   node scripts/opa.mjs build [--out <file>] check, then compile policies/ to a WASM bundle
import { execFile, spawn } from 'node:child_process'
import { access, constants, mkdir, readdir, rename, rm, stat } from 'node:fs/promises'
import { homedir, constants as osConstants } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

export const OPA_VERSION = '1.22.4'

const SELF = fileURLToPath(import.meta.url)
const ROOT = path.resolve(path.dirname(SELF), '..')
export const DEFAULT_POLICIES_DIR = path.join(ROOT, 'policies')
export const DEFAULT_BUNDLE = path.join(ROOT, 'build', 'bundle.tar.gz')
// The entrypoint compiled from any policies folder, and, for the repository's own policies/, every
// policy of the library too (policies/library/, each used by config/library/).
export const GATEWAY_ENTRYPOINT = 'gateway/authz/decision'
export const DEFAULT_ENTRYPOINTS = [
  GATEWAY_ENTRYPOINT,
  ...['rbac', 'tenant_isolation', 'device_admin', 'network_time', 'tiers', 'scopes_data'].map((p) => `library/${p}/decision`)
]
// opa loads every .json file under a directory as data, so without these the input schema and
// the capabilities file would be compiled into the bundle's data document.
const IGNORED = ['*_test.rego', '*.schema.json', 'capabilities.json', 'schemas']

const run = promisify(execFile)

async function isExecutable (file) {
  try {
    await access(file, constants.X_OK)
    return (await stat(file)).isFile()
  } catch {
    return false
  }
}

async function which (name) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && (await isExecutable(path.join(dir, name)))) return path.join(dir, name)
  }
  return undefined
}

async function reportsPinnedVersion (bin) {
  try {
    const { stdout } = await run(bin, ['version'])
    return stdout.split('\n', 1)[0].trim() === `Version: ${OPA_VERSION}`
  } catch {
    return false
  }
}

export function cachedOpaPath () {
  const cache = process.env.XDG_CACHE_HOME || path.join(homedir(), '.cache')
  return path.join(cache, 'portcullis', `opa-v${OPA_VERSION}`, 'opa')
}

async function install (bin) {
  const go = await which('go')
  if (!go) {
    throw new Error(
      `OPA v${OPA_VERSION} is neither on PATH nor at ${bin}, and Go is not installed to build it: ` +
        `install Go (https://go.dev/dl/) or put opa v${OPA_VERSION} on PATH.`
    )
  }
  process.stderr.write(`installing OPA v${OPA_VERSION} into ${path.dirname(bin)} with go install (takes ~3 minutes)\n`)
  // stdout goes to stderr too: `path` prints the result on stdout and must print nothing else.
  const child = spawn(go, ['install', `github.com/open-policy-agent/opa@v${OPA_VERSION}`], {
    env: { ...process.env, GOBIN: path.dirname(bin) },
    stdio: ['ignore', 2, 2]
  })
  const code = await new Promise((resolve, reject) => child.on('error', reject).on('close', resolve))
  if (code !== 0 || !(await isExecutable(bin))) throw new Error(`go install of OPA v${OPA_VERSION} failed (exit ${code})`)
}

let resolving
/** Absolute path of the pinned opa binary; installs it into the user cache on first use. */
export function resolveOpa () {
  resolving ??= (async () => {
    const onPath = await which('opa')
    if (onPath && (await reportsPinnedVersion(onPath))) return onPath
    const bin = cachedOpaPath()
    if (!(await isExecutable(bin))) await install(bin)
    return bin
  })()
  // A failed install must not poison later calls in a long-lived process (tests).
  resolving.catch(() => (resolving = undefined))
  return resolving
}

// Directory mtimes count too, so deleting a policy file also triggers a rebuild.
async function newestMtime (dir) {
  let newest = (await stat(dir)).mtimeMs
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    newest = Math.max(newest, (await stat(path.join(entry.parentPath ?? entry.path, entry.name))).mtimeMs)
  }
  return newest
}

async function mtimeOf (file) {
  return stat(file).then((s) => s.mtimeMs, () => -Infinity)
}

/** The file `name` in the folder when it has one, else the repository's (policies/<name>). */
function ownOrDefault (policiesDir, name) {
  return mtimeOf(path.join(policiesDir, name)).then((t) => (t > -Infinity ? path.join(policiesDir, name) : path.join(DEFAULT_POLICIES_DIR, name)))
}

/**
 * `opa check --strict` against the documented input (input.schema.json) and the gateway's builtins
 * (capabilities.json), the folder's own files when it has them: a typo such as `input.principal.claim`
 * or a builtin the gateway cannot run is refused here, before anything is built.
 * Rejects with opa's messages when the check fails.
 */
export async function checkPolicies ({ policiesDir = DEFAULT_POLICIES_DIR, schema, capabilities } = {}) {
  const args = ['check', '--strict',
    '--schema', schema ?? (await ownOrDefault(policiesDir, 'input.schema.json')),
    '--capabilities', capabilities ?? (await ownOrDefault(policiesDir, 'capabilities.json')),
    ...IGNORED.filter((p) => p !== '*_test.rego').flatMap((p) => ['--ignore', p]), '.']
  try {
    await run(await resolveOpa(), args, { cwd: policiesDir })
  } catch (err) {
    const detail = [err.stdout, err.stderr].filter((s) => typeof s === 'string' && s.trim()).join('\n').trim()
    throw new Error(`opa check of ${policiesDir} failed (strict, against input.schema.json and capabilities.json), nothing was built:\n${detail || err.message}`, { cause: err })
  }
}

/**
 * Compiles a directory of Rego to an OPA WASM bundle, with `capabilities` (default: the folder's own
 * capabilities.json, when there is one) passed to `opa build --capabilities`. Skipped (`built: false`) when `out` is newer
 * than every file under `policiesDir` and than this script, which holds the pinned version.
 * With `check` (the default for the repository's policies/, and for `npm run policy:build` and
 * `portcullis policy build`), runs checkPolicies first, so a bundle that would fail
 * `npm run policy:check` is never built. Rejects with opa's own error output when either fails.
 */
export async function buildBundle ({
  policiesDir = DEFAULT_POLICIES_DIR,
  out = DEFAULT_BUNDLE,
  entrypoints = policiesDir === DEFAULT_POLICIES_DIR ? DEFAULT_ENTRYPOINTS : [GATEWAY_ENTRYPOINT],
  capabilities = path.join(policiesDir, 'capabilities.json'),
  force = false,
  check = policiesDir === DEFAULT_POLICIES_DIR
} = {}) {
  const sources = Math.max(await newestMtime(policiesDir), await mtimeOf(SELF))
  if (!force && (await mtimeOf(out)) > sources) return { out, built: false }
  if (check) await checkPolicies({ policiesDir, ...((await mtimeOf(capabilities)) > -Infinity ? { capabilities } : {}) })

  const args = ['build', '-t', 'wasm', ...entrypoints.flatMap((e) => ['-e', e])]
  if ((await mtimeOf(capabilities)) > -Infinity) args.push('--capabilities', capabilities)
  args.push(...IGNORED.flatMap((p) => ['--ignore', p]))
  // Written beside the target and renamed, so a reader never sees a half-written bundle.
  const tmp = `${out}.${process.pid}.tmp`
  await mkdir(path.dirname(out), { recursive: true })
  try {
    // Relative to policiesDir so the sources inside the bundle do not embed this machine's paths.
    await run(await resolveOpa(), [...args, '-o', path.resolve(tmp), '.'], { cwd: policiesDir })
    await rename(tmp, out)
  } catch (err) {
    await rm(tmp, { force: true })
    // opa prints compile errors on stdout, other failures on stderr.
    const detail = [err.stdout, err.stderr].filter((s) => typeof s === 'string' && s.trim()).join('\n').trim()
    throw new Error(`opa build of ${policiesDir} failed:\n${detail || err.message}`, { cause: err })
  }
  return { out, built: true }
}

async function main ([command, ...args]) {
  if (command === 'path') {
    process.stdout.write(`${await resolveOpa()}\n`)
  } else if (command === 'run') {
    const child = spawn(await resolveOpa(), args, { stdio: 'inherit' })
    const [code, signal] = await new Promise((resolve, reject) =>
      child.on('error', reject).on('close', (c, s) => resolve([c, s]))
    )
    process.exitCode = code ?? (signal ? 128 + (osConstants.signals[signal] ?? 0) : 1)
  } else if (command === 'check') {
    await checkPolicies()
  } else if (command === 'build') {
    const i = args.indexOf('--out')
    if (i !== -1 && !args[i + 1]) throw new Error('--out needs a file name')
    const out = i === -1 ? DEFAULT_BUNDLE : path.resolve(args[i + 1])
    const { built } = await buildBundle({ out, check: true })
    process.stdout.write(built ? `built ${path.relative(process.cwd(), out) || out}\n` : 'bundle up to date\n')
  } else {
    throw new Error('usage: node scripts/opa.mjs path | run <args...> | check | build [--out <file>]')
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === SELF) {
  main(process.argv.slice(2)).catch((err) => {
    process.stderr.write(`${err.message}\n`)
    process.exitCode = 1
  })
}
