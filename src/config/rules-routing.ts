import type { ConfigProblem } from '../errors.js'
import { passClientHeaderProblem } from '../util/header-names.js'
import type { Config } from './schema.js'

/* The rules of the issuers, upstreams and routes sections the schema cannot state (config/load.ts runs them). */

/**
 * Issuers, upstreams and routes: ids unique, references that resolve, one route per method and
 * prefix, upstream URLs and TLS that go together, issuer algorithms that cannot be confused.
 */
export function checkRouting (input: Config): ConfigProblem[] {
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
  return problems
}
