import type { ConfigProblem } from '../config/load.js'
import type { Config } from '../config/schema.js'

/*
 * Settings fixed when the sockets were opened. A reload that changes one is refused (the running
 * config stays) rather than half-applied: the operator restarts to change them.
 */
const FIXED: Array<[string, (c: Config) => unknown]> = [
  ['/listen/host', c => c.listen.host],
  ['/listen/port', c => c.listen.port],
  ['/listen/plaintext', c => c.listen.plaintext],
  ['/listen/tls', c => c.listen.tls !== undefined],
  // Whether clients are asked for a certificate is a server option; the CA itself reloads.
  ['/listen/tls/clientCa', c => c.listen.tls?.clientCa !== undefined],
  ['/limits/maxHeaderBytes', c => c.limits.maxHeaderBytes],
  // HTTP/2 is offered, and its settings sent, by the server made when the socket opened.
  ['/listen/http2', c => c.listen.http2],
  ['/limits/http2', c => c.listen.http2 ? JSON.stringify(c.limits.http2) : null],
  ['/admin/host', c => c.admin.host],
  ['/admin/port', c => c.admin.port],
  ['/admin/tls', c => c.admin.tls !== undefined],
  ['/admin/tls/clientCa', c => c.admin.tls?.clientCa !== undefined]
]

export function restartOnlyChanges (active: Config, next: Config): ConfigProblem[] {
  return FIXED
    .filter(([, get]) => get(active) !== get(next))
    .map(([path]) => ({ path, message: 'cannot change on reload; restart the gateway to apply it' }))
}

/*
 * With --workers, the cluster primary serves the admin listener and the admin API (its own mirror of
 * the shared revocations and bans) from the config it started with. A reload that changed what they
 * depend on would leave the API writing where the workers no longer read: refused, with every path.
 */
const PRIMARY: Array<[string, (c: Config) => unknown]> = [
  ['/admin', c => c.admin],
  ['/rateLimit/store', c => c.rateLimit.store],
  ['/revocation', c => c.revocation],
  ['/bans/keyPrefix', c => c.bans.keyPrefix]
]

export function primaryOnlyChanges (active: Config, next: Config): ConfigProblem[] {
  return PRIMARY
    .filter(([, get]) => JSON.stringify(get(active)) !== JSON.stringify(get(next)))
    .map(([path]) => ({ path, message: 'with --workers the primary serves the admin listener and API from the config it started with; restart to change it' }))
}
