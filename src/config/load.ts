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
import { checkTrustedProxies } from '../pipeline/rate-limit/keys.js'
import { passClientHeaderProblem } from '../pipeline/forward/headers.js'
import { cipherProblems } from '../tls/server-tls.js'

// ajv-formats is CommonJS with a default export; under NodeNext the callable sits on .default.
const addFormats = addFormatsModule as unknown as typeof addFormatsModule.default

// The config error lives with the others; re-exported here, where its callers have always found it.
export { ConfigError, type ConfigProblem } from '../errors.js'

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
  const value = substituteEnv(structuredClone(raw), '', opts.env ?? process.env, problems)
  const valid = validateSchema(value)
  if (!valid) problems.push(...describeAjvErrors(validateSchema.errors ?? []))
  // The cross-reference and file checks also run on a config that failed the schema, so that one
  // run lists every problem; on a shape they cannot read they just find less.
  const config = value as Config
  problems.push(...bestEffort(() => checkReferences(config)))
  problems.push(...bestEffort(() => checkCredentials(config, opts.env ?? process.env)))
  problems.push(...bestEffort(() => checkBans(config)))
  problems.push(...bestEffort(() => checkListenerTls(config)))
  problems.push(...await bestEffortAsync(async () => resolveFiles(config, opts.baseDir)))
  if (!valid || problems.length > 0) throw new ConfigError(source, problems)
  return deepFreeze(config)
}

function bestEffort (check: () => ConfigProblem[]): ConfigProblem[] {
  try { return check() } catch { return [] }
}

async function bestEffortAsync (check: () => Promise<ConfigProblem[]>): Promise<ConfigProblem[]> {
  try { return await check() } catch { return [] }
}

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g

function substituteEnv (node: unknown, path: string, env: NodeJS.ProcessEnv, problems: ConfigProblem[]): unknown {
  if (typeof node === 'string') {
    return node.replace(ENV_REF, (_match, name: string, fallback: string | undefined) => {
      const v = env[name]
      // As in the shell: ${NAME:-default} takes the default when NAME is unset or empty.
      if (v !== undefined && (v !== '' || fallback === undefined)) return v
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
    if (e.keyword === 'format' && typeof e.parentSchema?.description === 'string') message = `must be an ${e.parentSchema.description}`
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

function checkReferences (input: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  // The config may have failed the schema: read only what has the right shape.
  const list = <T>(v: T[] | undefined): T[] => Array.isArray(v) ? v.filter(x => x !== null && typeof x === 'object') : []
  const strings = (v: unknown): string[] => Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : []
  const config = { ...input, issuers: list(input.issuers), upstreams: list(input.upstreams), routes: list(input.routes) }
  const dupes = (items: Array<{ id: string }>, where: string): void => {
    const seen = new Set<string>()
    items.forEach((item, i) => {
      if (seen.has(item.id)) problems.push({ path: `/${where}/${i}/id`, message: `duplicate id "${item.id}"` })
      seen.add(item.id)
    })
  }
  dupes(config.issuers, 'issuers')
  config.issuers.forEach((issuer, i) => {
    // Keys are refreshed every jwksCacheSeconds; a shorter stale bound would throw usable keys away.
    const stale = (issuer.jwks as { maxStaleSeconds?: unknown } | undefined)?.maxStaleSeconds
    if (typeof stale === 'number' && typeof issuer.jwksCacheSeconds === 'number' && stale < issuer.jwksCacheSeconds) {
      problems.push({ path: `/issuers/${i}/jwks/maxStaleSeconds`, message: `must be at least jwksCacheSeconds (${issuer.jwksCacheSeconds})` })
    }
  })
  dupes(config.upstreams, 'upstreams')
  dupes(config.routes, 'routes')
  const upstreams = new Set(config.upstreams.map(u => u.id))
  const issuers = new Set(config.issuers.map(i => i.id))
  const prefixes = new Map<string, number>()
  config.routes.forEach((route, i) => {
    if (!upstreams.has(route.upstream)) problems.push({ path: `/routes/${i}/upstream`, message: `unknown upstream "${route.upstream}"` })
    strings(route.issuers).forEach((id, j) => {
      if (!issuers.has(id)) problems.push({ path: `/routes/${i}/issuers/${j}`, message: `unknown issuer "${id}"` })
    })
    for (const m of strings(route.methods)) {
      const key = `${m} ${route.prefix}`
      const other = prefixes.get(key)
      if (other !== undefined) problems.push({ path: `/routes/${i}/prefix`, message: `${key} is already served by /routes/${other}` })
      prefixes.set(key, i)
    }
  })
  config.upstreams.forEach((u, i) => {
    if (typeof u.url !== 'string' || !URL.canParse(u.url)) return
    if (u.url.startsWith('http://') && !u.plaintext) {
      problems.push({ path: `/upstreams/${i}/url`, message: 'must be an https URL (set plaintext: true only for local development)' })
    }
    if (u.url.startsWith('https://') && u.plaintext) {
      problems.push({ path: `/upstreams/${i}/plaintext`, message: 'plaintext is only meaningful for an http:// URL' })
    }
    if (u.plaintext && u.tls !== undefined) {
      problems.push({ path: `/upstreams/${i}/tls`, message: 'is not used with a plaintext upstream; remove it' })
    }
    if (u.tls !== null && typeof u.tls === 'object' && (u.tls.cert === undefined) !== (u.tls.key === undefined)) {
      problems.push({ path: `/upstreams/${i}/tls`, message: 'cert and key go together (the client certificate for mutual TLS)' })
    }
    const url = new URL(u.url)
    if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
      problems.push({ path: `/upstreams/${i}/url`, message: 'must not carry credentials, a query or a fragment' })
    }
    ;(Array.isArray(u.passClientHeaders) ? u.passClientHeaders : []).forEach((name, j) => {
      const problem = passClientHeaderProblem(name)
      if (problem !== null) problems.push({ path: `/upstreams/${i}/passClientHeaders/${j}`, message: problem })
    })
  })
  config.issuers.forEach((iss, i) => {
    const algs = strings(iss.algorithms)
    const hmac = algs.filter(a => a.startsWith('HS'))
    if (hmac.length > 0 && hmac.length < algs.length) {
      problems.push({ path: `/issuers/${i}/algorithms`, message: 'must not mix HS* with public-key algorithms (algorithm confusion)' })
    } else if (hmac.length > 0) {
      if (iss.secret === undefined) problems.push({ path: `/issuers/${i}/secret`, message: 'is required for HS* algorithms' })
      if (iss.jwks !== undefined) problems.push({ path: `/issuers/${i}/jwks`, message: 'is not used with HS* algorithms; remove it' })
    } else if (algs.length > 0) {
      if (iss.jwks === undefined) problems.push({ path: `/issuers/${i}/jwks`, message: 'is required for public-key algorithms' })
      if (iss.secret !== undefined) problems.push({ path: `/issuers/${i}/secret`, message: 'is only for HS* algorithms; remove it' })
    }
    if (typeof iss.issuer === 'string' && !iss.issuer.startsWith('https://')) problems.push({ path: `/issuers/${i}/issuer`, message: 'must be an https URL' })
    if (iss.jwks !== null && typeof iss.jwks === 'object' && 'url' in iss.jwks && typeof iss.jwks.url === 'string' && !iss.jwks.url.startsWith('https://')) problems.push({ path: `/issuers/${i}/jwks/url`, message: 'must be an https URL' })
  })
  problems.push(...checkRateLimit(config.rateLimit))
  const policy = input.policy as Partial<Config['policy']> | undefined
  if (policy !== null && typeof policy === 'object') {
    const sources = [policy.bundle, policy.server].filter(s => s !== undefined).length
    if (sources !== 1) problems.push({ path: '/policy', message: 'needs exactly one bundle source: bundle (a file or folder) or server' })
    const server = policy.server
    if (server !== undefined && typeof server.url === 'string') {
      if (!server.url.startsWith('https://') && !server.plaintext) problems.push({ path: '/policy/server/url', message: 'must be an https URL (set plaintext: true only for local development)' })
      if ((server.tls?.cert === undefined) !== (server.tls?.key === undefined)) problems.push({ path: '/policy/server/tls', message: 'cert and key go together' })
    }
  }
  const upload = (input.decisionLog as Partial<Config['decisionLog']> | undefined)?.http
  if (upload !== undefined && typeof upload.url === 'string' && !upload.url.startsWith('https://') && upload.plaintext !== true) {
    problems.push({ path: '/decisionLog/http/url', message: 'must be an https URL (set plaintext: true only for local development)' })
  }
  if (config.listen === undefined) return problems
  config.routes.forEach((route, i) => {
    if (['mtls', 'jwt-and-mtls', 'jwt-or-mtls'].includes(route.authentication) && config.listen.tls?.clientCa === undefined) {
      problems.push({ path: `/routes/${i}/authentication`, message: `"${route.authentication}" needs listen.tls.clientCa (the CA that client certificates are verified against)` })
    }
  })
  if (config.listen.tls === undefined && !config.listen.plaintext) {
    problems.push({ path: '/listen/tls', message: 'is required (set listen.plaintext: true only behind a TLS-terminating proxy)' })
  }
  if (config.listen.tls !== undefined && config.listen.plaintext) {
    problems.push({ path: '/listen/plaintext', message: 'cannot be combined with listen.tls' })
  }
  return problems
}

/** Cipher strings OpenSSL must understand whole, and an HSTS preload request browsers would accept. */
function checkListenerTls (config: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  for (const [path, tls] of [['/listen/tls', config.listen?.tls], ['/admin/tls', config.admin?.tls]] as const) {
    if (tls === undefined || typeof tls.ciphers !== 'string') continue
    for (const message of cipherProblems(tls.ciphers, tls.minVersion)) problems.push({ path: `${path}/ciphers`, message })
  }
  const hsts = config.listen?.tls?.hsts
  if (hsts?.preload === true && (!hsts.includeSubDomains || hsts.maxAgeSeconds < 31_536_000)) {
    problems.push({ path: '/listen/tls/hsts/preload', message: 'needs includeSubDomains: true and maxAgeSeconds of at least 31536000 (the preload lists refuse less)' })
  }
  return problems
}

function checkRateLimit (rateLimit: Config['rateLimit'] | undefined): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  const store = rateLimit?.store
  if (store?.type === 'redis' && (store.url === undefined) === (store.cluster === undefined)) {
    problems.push({ path: '/rateLimit/store', message: 'a redis store needs exactly one of url or cluster' })
  }
  if (store?.type === 'memory' && (store.url !== undefined || store.cluster !== undefined)) {
    problems.push({ path: '/rateLimit/store/type', message: 'must be redis when url or cluster is set' })
  }
  if (Array.isArray(rateLimit?.trustedProxies)) {
    rateLimit.trustedProxies.forEach((entry, i) => {
      const problem = typeof entry === 'string' ? checkTrustedProxies([entry]) : null
      if (problem !== null) problems.push({ path: `/rateLimit/trustedProxies/${i}`, message: `must be an IP address or CIDR (${problem})` })
    })
  }
  return problems
}

function checkBans (config: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  ;(Array.isArray(config.bans?.trustedNetworks) ? config.bans.trustedNetworks : []).forEach((entry, i) => {
    const problem = typeof entry === 'string' ? checkTrustedProxies([entry]) : null
    if (problem !== null) problems.push({ path: `/bans/trustedNetworks/${i}`, message: `must be an IP address or CIDR (${problem})` })
  })
  const rules = [['/bans/default', config.bans?.default] as const,
    ...(Array.isArray(config.routes) ? config.routes : []).map((r, i) => [`/routes/${i}/ban`, r?.ban] as const)]
  for (const [path, rule] of rules) {
    if (typeof rule === 'object' && rule !== null && typeof rule.maxBanSeconds === 'number' && rule.maxBanSeconds < rule.banSeconds) problems.push({ path: `${path}/maxBanSeconds`, message: 'must be at least banSeconds' })
  }
  if (config.bans?.keyPrefix !== undefined && config.bans.keyPrefix === config.revocation?.keyPrefix) {
    problems.push({ path: '/bans/keyPrefix', message: 'must differ from revocation.keyPrefix (each is a Redis hash of its own)' })
  }
  return problems
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
