import type { ConfigProblem } from '../errors.js'
import { cipherProblems } from '../tls/server-tls.js'
import type { Config } from './schema.js'

/* The rules of the listen and admin sections the schema cannot state (config/load.ts runs them). */

/**
 * Cipher strings OpenSSL understands whole, an HSTS preload request browsers would accept, and TLS or
 * plaintext on the public listener (with a client CA where routes ask for client certificates).
 */
export function checkListeners (config: Config): ConfigProblem[] {
  const problems: ConfigProblem[] = []
  for (const [path, tls] of [['/listen/tls', config.listen?.tls], ['/admin/tls', config.admin?.tls]] as const) {
    if (tls === undefined || typeof tls.ciphers !== 'string') continue
    for (const message of cipherProblems(tls.ciphers, tls.minVersion)) problems.push({ path: `${path}/ciphers`, message })
  }
  const hsts = config.listen?.tls?.hsts
  if (hsts?.preload === true && (!hsts.includeSubDomains || hsts.maxAgeSeconds < 31_536_000)) {
    problems.push({ path: '/listen/tls/hsts/preload', message: 'needs includeSubDomains: true and maxAgeSeconds of at least 31536000 (the preload lists refuse less)' })
  }
    if (config.listen === undefined) return problems
  ;(Array.isArray(config.routes) ? config.routes.filter(r => r !== null && typeof r === 'object') : []).forEach((route, i) => {
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

