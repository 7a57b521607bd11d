import { access, readFile } from 'node:fs/promises'
import { constants } from 'node:fs'
import { dirname, isAbsolute, resolve } from 'node:path'
import { Ajv, type ErrorObject } from 'ajv'
import addFormatsModule from 'ajv-formats'
import { parseDocument } from 'yaml'
import { ConfigSchema, type Config } from './schema.js'

// ajv-formats is CommonJS with a default export; under NodeNext the callable sits on .default.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default

export interface ConfigProblem { path: string, message: string }

/** A config that cannot run. `problems` lists every issue found, each with its JSON pointer. */
export class ConfigError extends Error {
  readonly code = 'GW_ERR_CONFIG_INVALID'
  constructor (readonly source: string, readonly problems: ConfigProblem[]) {
    super(`invalid configuration in ${source}:\n` + problems.map(p => `- ${p.path || '/'}: ${p.message}`).join('\n'))
    this.name = 'ConfigError'
  }
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: false, coerceTypes: false })
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
  const value = substituteEnv(structuredClone(raw), '', opts.env ?? process.env, problems)
  if (!validateSchema(value)) {
    problems.push(...describeAjvErrors(validateSchema.errors ?? []))
    throw new ConfigError(source, problems)
  }
  const config = value
  problems.push(...checkReferences(config))
  problems.push(...await resolveFiles(config, opts.baseDir))
  if (problems.length > 0) throw new ConfigError(source, problems)
  return deepFreeze(config)
}

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g

function substituteEnv (node: unknown, path: string, env: NodeJS.ProcessEnv, problems: ConfigProblem[]): unknown {
  if (typeof node === 'string') {
    return node.replace(ENV_REF, (_match, name: string, fallback: string | undefined) => {
      const v = env[name]
      if (v !== undefined) return v
      if (fallback !== undefined) return fallback
      problems.push({ path, message: `environment variable ${name} is not set` })
      return ''
    })
  }
  if (Array.isArray(node)) return node.map((v, i) => substituteEnv(v, `${path}/${i}`, env, problems))
  if (node !== null && typeof node === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(node)) out[k] = substituteEnv(v, `${path}/${escapePointer(k)}`, env, problems)
    return out
  }
  return node
}

function escapePointer (key: string): string {
  return key.replaceAll('~', '~0').replaceAll('/', '~1')
}

function describeAjvErrors (errors: ErrorObject[]): ConfigProblem[] {
  // anyOf failures repeat each branch's complaint; keep one readable line per distinct location.
  const seen = new Set<string>()
  const out: ConfigProblem[] = []
  for (const e of errors) {
    let message = e.message ?? 'is invalid'
    if (e.keyword === 'additionalProperties') message = `unknown property "${String(e.params.additionalProperty)}"`
    if (e.keyword === 'required') message = `missing required property "${String(e.params.missingProperty)}"`
    if (e.keyword === 'anyOf') message = 'does not match any allowed form'
    if (e.keyword === 'pattern' && e.parentSchema?.description !== undefined) message = `must be ${String(e.parentSchema.description)}`
    const key = `${e.instancePath}|${message}`
    if (seen.has(key)) continue
    seen.add(key)
    out.push({ path: e.instancePath, message })
  }
  return out
}

function checkReferences (config: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const dupes = (items: Array<{ id: string }>, where: string): void => {
    const seen = new Set<string>()
    items.forEach((item, i) => {
      if (seen.has(item.id)) problems.push({ path: `/${where}/${i}/id`, message: `duplicate id "${item.id}"` })
      seen.add(item.id)
    })
  }
  dupes(config.issuers, 'issuers')
  dupes(config.upstreams, 'upstreams')
  dupes(config.routes, 'routes')
  const upstreams = new Set(config.upstreams.map(u => u.id))
  const issuers = new Set(config.issuers.map(i => i.id))
  const prefixes = new Map<string, number>()
  config.routes.forEach((route, i) => {
    if (!upstreams.has(route.upstream)) problems.push({ path: `/routes/${i}/upstream`, message: `unknown upstream "${route.upstream}"` })
    route.issuers?.forEach((id, j) => {
      if (!issuers.has(id)) problems.push({ path: `/routes/${i}/issuers/${j}`, message: `unknown issuer "${id}"` })
    })
    for (const m of route.methods) {
      const key = `${m} ${route.prefix}`
      const other = prefixes.get(key)
      if (other !== undefined) problems.push({ path: `/routes/${i}/prefix`, message: `${key} is already served by /routes/${other}` })
      prefixes.set(key, i)
    }
  })
  config.upstreams.forEach((u, i) => {
    if (u.url.startsWith('http://') && !u.plaintext) {
      problems.push({ path: `/upstreams/${i}/url`, message: 'must be an https URL (set plaintext: true only for local development)' })
    }
    if (u.url.startsWith('https://') && u.plaintext) {
      problems.push({ path: `/upstreams/${i}/plaintext`, message: 'plaintext is only meaningful for an http:// URL' })
    }
    const url = new URL(u.url)
    if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
      problems.push({ path: `/upstreams/${i}/url`, message: 'must not carry credentials, a query or a fragment' })
    }
  })
  config.issuers.forEach((iss, i) => {
    if (!iss.issuer.startsWith('https://')) problems.push({ path: `/issuers/${i}/issuer`, message: 'must be an https URL' })
    if ('url' in iss.jwks && !iss.jwks.url.startsWith('https://')) problems.push({ path: `/issuers/${i}/jwks/url`, message: 'must be an https URL' })
  })
  if (config.listen.tls === undefined && !config.listen.plaintext) {
    problems.push({ path: '/listen/tls', message: 'is required (set listen.plaintext: true only behind a TLS-terminating proxy)' })
  }
  if (config.listen.tls !== undefined && config.listen.plaintext) {
    problems.push({ path: '/listen/plaintext', message: 'cannot be combined with listen.tls' })
  }
  return problems
}

/** Makes every file path absolute (relative to the config file) and checks that it can be read. */
async function resolveFiles (config: Config, baseDir: string): Promise<ConfigProblem[]> {
  const problems: ConfigProblem[] = []
  const fix = async (holder: Record<string, unknown>, key: string, path: string): Promise<void> => {
    const v = holder[key]
    if (typeof v !== 'string') return
    const abs = isAbsolute(v) ? v : resolve(baseDir, v)
    holder[key] = abs
    try {
      await access(abs, constants.R_OK)
    } catch {
      problems.push({ path, message: `file not readable: ${abs}` })
    }
  }
  if (config.listen.tls !== undefined) {
    await fix(config.listen.tls, 'cert', '/listen/tls/cert')
    await fix(config.listen.tls, 'key', '/listen/tls/key')
  }
  for (const [i, iss] of config.issuers.entries()) {
    if ('file' in iss.jwks) await fix(iss.jwks, 'file', `/issuers/${i}/jwks/file`)
    await fix(iss, 'ca', `/issuers/${i}/ca`)
  }
  for (const [i, u] of config.upstreams.entries()) {
    if (u.tls === undefined) continue
    for (const k of ['ca', 'cert', 'key'] as const) await fix(u.tls, k, `/upstreams/${i}/tls/${k}`)
  }
  // The bundle is a build output that may appear after start; only its path is resolved here.
  config.policy.bundle = isAbsolute(config.policy.bundle) ? config.policy.bundle : resolve(baseDir, config.policy.bundle)
  return problems
}

function deepFreeze<T> (value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}
