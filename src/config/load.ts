import { createPublicKey } from 'node:crypto'
import { access, readFile } from 'node:fs/promises'
import { constants } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { Ajv, type ErrorObject } from 'ajv'
import addFormatsModule from 'ajv-formats'
import { parseDocument } from 'yaml'
import { ConfigError, type ConfigProblem } from '../errors.js'
import { FILE_USE, type FileUse } from './schema-common.js'
import { ConfigSchema, type Config } from './schema.js'
import { checkCredentials } from './schema-credentials.js'
import { checkLimits } from './rules-limits.js'
import { checkListeners } from './rules-listeners.js'
import { checkPolicy } from './rules-policy.js'
import { checkRouting } from './rules-routing.js'
import { escapePointer, onceEach, substituteEnv, UNSET, UNSET_HINT, withoutConsequences } from './env.js'

// ajv-formats is CommonJS with a default export; under NodeNext the callable sits on .default.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default

// The config error lives with the others; re-exported here, where its callers have always found it.
export { ConfigError, type ConfigProblem } from '../errors.js'

// Each section's rules, beside its schema (rules-*.ts, schema-credentials.ts). Each reads a config that
// may have failed the schema, so that one run lists every problem; on a shape it cannot read it just
// finds less.
const SECTION_CHECKS: ReadonlyArray<(config: Config, env: NodeJS.ProcessEnv) => ConfigProblem[]> = [
  checkRouting, checkLimits, checkPolicy, checkListeners, checkCredentials
]

// coerceTypes: `${PORT}` substitutes text; where the schema wants a number or boolean, text that is
// exactly one ("8443", "true") is read as such. Anything else still fails with its path.
const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false, coerceTypes: true, verbose: true })
addFormats(ajv)
const validateSchema = ajv.compile<Config>(ConfigSchema)

/** Reads a YAML config file, substitutes ${ENV}, validates, resolves paths and freezes it. */
export async function loadConfig (file: string, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  const source = resolve(file)
  let text: string
  try {
    text = await readFile(source, 'utf8')
  } catch (err) {
    throw new ConfigError(source, [{ path: '', message: `cannot read file: ${(err as Error).message}` }])
  }
  const doc = parseDocument(text, { uniqueKeys: true, prettyErrors: true })
  if (doc.errors.length > 0) {
    throw new ConfigError(source, doc.errors.map(e => ({ path: '', message: `YAML: ${e.message.split('\n')[0]}` })))
  }
  return validateConfig(doc.toJS(), { baseDir: dirname(source), source, env })
}

export interface ValidateOptions { baseDir: string, source?: string, env?: NodeJS.ProcessEnv }

/** Validates a config object (already parsed). Collects every problem before refusing. */
export async function validateConfig (raw: unknown, opts: ValidateOptions): Promise<Config> {
  const source = opts.source ?? '<config>'
  const problems: ConfigProblem[] = []
  const unset: ConfigProblem[] = []
  const value = substituteEnv(structuredClone(raw), '', opts.env ?? process.env, unset)
  problems.push(...onceEach(unset))
  const valid = validateSchema(value)
  if (!valid) problems.push(...describeAjvErrors(validateSchema.errors ?? []))
  // The section and file checks also run on a config that failed the schema (see SECTION_CHECKS).
  const config = value as Config
  const env = opts.env ?? process.env
  for (const check of SECTION_CHECKS) problems.push(...bestEffort(() => check(config, env)))
  problems.push(...await bestEffortAsync(async () => resolveFiles(config, opts.baseDir)))
  if (!valid || problems.length > 0) {
    // An unset variable is reported once, with how to set it, and not through what its empty value broke.
    const reported = withoutConsequences(problems, unset)
    throw new ConfigError(source, reported, reported.some(p => UNSET.test(p.message)) ? UNSET_HINT : undefined)
  }
  return deepFreeze(config)
}

function bestEffort (check: () => ConfigProblem[]): ConfigProblem[] {
  try { return check() } catch { return [] }
}

async function bestEffortAsync (check: () => Promise<ConfigProblem[]>): Promise<ConfigProblem[]> {
  try { return await check() } catch { return [] }
}

function describeAjvErrors (errors: ErrorObject[]): ConfigProblem[] {
  // Inside a failed anyOf, each branch adds its own complaints; the anyOf line alone says it better.
  const anyOfPaths = errors.filter(e => e.keyword === 'anyOf').map(e => e.instancePath)
  const seen = new Set<string>()
  const out: ConfigProblem[] = []
  for (const e of errors) {
    if (e.keyword !== 'anyOf' && anyOfPaths.some(p => e.instancePath === p || e.instancePath.startsWith(`${p}/`))) continue
    let message = e.message ?? 'is invalid'
    if (e.keyword === 'additionalProperties') message = `unknown property "${String(e.params.additionalProperty)}"`
    if (e.keyword === 'required') message = `missing required property "${String(e.params.missingProperty)}"`
    if (e.keyword === 'enum') message = `must be one of: ${(e.params.allowedValues as unknown[]).join(', ')}`
    if (e.keyword === 'anyOf') message = `must be one of the allowed forms${describeForms(e.parentSchema)}`
    if (e.keyword === 'pattern' && typeof e.parentSchema?.description === 'string') message = `must be ${e.parentSchema.description}`
    // Same wording as the pattern's, so a value failing both is reported once.
    if (e.keyword === 'format' && typeof e.parentSchema?.description === 'string') message = `must be ${e.parentSchema.description}`
    const key = `${e.instancePath}|${message}`
    if (seen.has(key)) continue
    seen.add(key)
    out.push({ path: e.instancePath, message })
  }
  return out
}

function describeForms (schema: unknown): string {
  const s = schema as { description?: unknown } | undefined
  return typeof s?.description === 'string' ? ` (${s.description})` : ''
}

/**
 * Makes every path absolute (relative to the config file) and checks what its use needs: the paths are
 * the strings the schema marks with FILE_USE (schema-common.ts FilePathOf), found by walking the schema
 * beside the value, so a new path option needs nothing here.
 */
async function resolveFiles (config: Config, baseDir: string): Promise<ConfigProblem[]> {
  const found: Array<{ holder: Record<string, unknown>, key: string, path: string, use: FileUse }> = []
  findPaths(ConfigSchema as SchemaNode, config, '', found)
  const problems: ConfigProblem[] = []
  const seen = new Set<string>()
  for (const { holder, key, path, use } of found) {
    if (seen.has(path)) continue // a key in two branches of a union
    seen.add(path)
    const abs = resolve(baseDir, holder[key] as string)
    holder[key] = abs
    // Written by the gateway, or a build output that may appear after start: resolved, not checked.
    if (use === 'written' || use === 'watched') continue
    try {
      await access(abs, constants.R_OK)
    } catch {
      problems.push({ path, message: `file not readable: ${abs}` })
      continue
    }
    if (use === 'public-key') {
      try {
        createPublicKey(await readFile(abs))
      } catch {
        problems.push({ path, message: 'is not a PEM public key' })
      }
    }
  }
  return problems
}

interface SchemaNode {
  [FILE_USE]?: FileUse
  properties?: Record<string, SchemaNode>
  patternProperties?: Record<string, SchemaNode>
  items?: SchemaNode
  anyOf?: SchemaNode[]
}

/** Collects the marked paths of `value` (which may have failed the schema: only what has the right shape). */
function findPaths (schema: SchemaNode, value: unknown, pointer: string, found: Array<{ holder: Record<string, unknown>, key: string, path: string, use: FileUse }>): void {
  if (value === null || typeof value !== 'object') return
  const holder = value as Record<string, unknown>
  const visit = (key: string, child: SchemaNode): void => {
    const path = `${pointer}/${escapePointer(key)}`
    const use = child[FILE_USE]
    if (use !== undefined) {
      if (typeof holder[key] === 'string') found.push({ holder, key, path, use })
    } else {
      findPaths(child, holder[key], path, found)
    }
  }
  for (const branch of schema.anyOf ?? []) findPaths(branch, value, pointer, found)
  if (Array.isArray(value)) {
    if (schema.items !== undefined) for (let i = 0; i < value.length; i++) visit(String(i), schema.items)
    return
  }
  for (const [key, child] of Object.entries(schema.properties ?? {})) if (key in holder) visit(key, child)
  // Records (policy.verification.keys): every key not named in properties.
  for (const child of Object.values(schema.patternProperties ?? {})) {
    for (const key of Object.keys(holder)) if (!(key in (schema.properties ?? {}))) visit(key, child)
  }
}

/** Freezes a config object throughout (also one that crossed a process boundary, see lifecycle/cluster-worker.ts). */
export function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}
