import proxyAddr from '@fastify/proxy-addr'
import type { ConfigProblem } from '../errors.js'
import type { Config } from './schema.js'

/* The rules of the rateLimit and bans sections the schema cannot state (config/load.ts runs them). */

/** Checks an address entry the way the gateway will read it (@fastify/proxy-addr); the problem, or null. */
function addressProblem (entry: string): string | null {
  try {
    proxyAddr.compile([entry])
    return null
  } catch (err) {
    return (err as Error).message
  }
}

export function checkLimits (config: Config): ConfigProblem[] {
  return [...checkRateLimit(config.rateLimit), ...checkBans(config)]
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
      const problem = typeof entry === 'string' ? addressProblem(entry) : null
      if (problem !== null) problems.push({ path: `/rateLimit/trustedProxies/${i}`, message: `must be an IP address or CIDR (${problem})` })
    })
  }
  return problems
}

function checkBans (config: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  ;(Array.isArray(config.bans?.trustedNetworks) ? config.bans.trustedNetworks : []).forEach((entry, i) => {
    const problem = typeof entry === 'string' ? addressProblem(entry) : null
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

