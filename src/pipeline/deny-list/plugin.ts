import { BlockList, isIPv6 } from 'node:net'
import fp from 'fastify-plugin'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { BanRuleConfig, Config } from '../../config/schema.js'
import { GW_ERR_AUTHN_REVOCATION_UNAVAILABLE, GW_ERR_AUTHN_REVOKED, GW_ERR_RATE_BANNED } from '../../errors.js'
import { meaningOf } from '../../error-codes.js'
import type { Metrics } from '../../observability/metrics.js'
import { clientBucketIp } from '../../util/client-network.js'
import type { Ban, BanList } from './bans.js'
import type { RevocationList } from './revocations.js'
import { routeOf, syncHook } from '../types.js'

/*
 * The deny list, in two places on the request path. Before authentication: a banned client IP is
 * refused before any token is looked at. After authentication and before the policy: a revoked
 * token id, subject or client certificate is refused (401), and so is a banned subject (429). The
 * policy never sees these requests, so no permissive policy can let them through.
 *
 * After each response, refused authentications and policy denials count towards a ban of the
 * client IP (never one in bans.trustedNetworks) and of the subject, under the route's ban rule.
 */

export interface DenyListOptions {
  config: Config
  metrics: Metrics
  revocations: RevocationList
  bans: BanList
  /** False while the shared revocation set has never been read: then nothing is let through. */
  revocationsReady: () => boolean
  /** Hands a ban this replica imposed to the others (through Redis), when they share one. */
  shareBan: (ban: Ban) => void
}

function trustedNetworks (entries: readonly string[]): (ip: string) => boolean {
  const list = new BlockList()
  for (const entry of entries) {
    const [address, bits] = entry.split('/') as [string, string | undefined]
    const type = isIPv6(address) ? 'ipv6' : 'ipv4'
    if (bits === undefined) list.addAddress(address, type)
    else list.addSubnet(address, Number(bits), type)
  }
  return ip => {
    if (ip === '') return false
    // normalizeIP groups IPv6 clients by /64 ("2001:db8::/64"): check the network's first address.
    const address = ip.split('/')[0]!
    return list.check(address, isIPv6(address) ? 'ipv6' : 'ipv4')
  }
}

function refuseBanned (reply: FastifyReply, ban: Ban): never {
  const seconds = Math.max(1, Math.ceil((ban.until - Date.now()) / 1000))
  reply.header('retry-after', String(seconds))
  throw new GW_ERR_RATE_BANNED(seconds)
}

const denyList: FastifyPluginAsync<DenyListOptions> = async (app, opts) => {
  const { metrics, revocations, bans, config } = opts
  const trusted = trustedNetworks(config.bans.trustedNetworks)
  const rules = new Map<string, BanRuleConfig | null>(config.routes.map(r => {
    const rule = r.ban ?? config.bans.default
    return [r.id, rule?.enabled === true ? rule : null]
  }))
  const ipOf = (request: FastifyRequest): string | null => {
    const ip = clientBucketIp(request)
    return trusted(ip) ? null : ip
  }

  // Before authentication (registered ahead of it): banned client IPs. The hooks are synchronous
  // (syncHook in pipeline/types.ts: no promise per request); a throw is the refusal.
  const refuseBannedIp = (request: FastifyRequest, reply: FastifyReply): void => {
    const route = routeOf(request)
    if (route === undefined) return
    // Looked up first, the trusted networks only then: almost every request has no ban, and the
    // network check (a BlockList lookup) costs more than the ban table's.
    const ip = clientBucketIp(request)
    const ban = ip !== '' ? bans.banned('ip', ip) : null
    if (ban === null || trusted(ip)) return
    metrics.bannedRequests.inc({ route: route.id, scope: 'ip' })
    refuseBanned(reply, ban)
  }
  app.addHook('onRequest', syncHook(refuseBannedIp))

  const countFailure = (request: FastifyRequest): void => {
    const route = routeOf(request)
    const code = request.errorCode
    if (route === undefined || code === null) return
    // Which failures are the caller's (a bad identity, a policy refusal) is the code table's to say.
    const kind = meaningOf(code)?.ban ?? null
    const rule = rules.get(route.id)
    if (kind === null || rule == null || !rule.on.includes(kind)) return
    const ip = ipOf(request)
    const subject = request.principal?.subject ?? ''
    const imposed = [
      ip !== null ? bans.fail('ip', ip, rule) : null,
      subject !== '' ? bans.fail('sub', subject, rule) : null
    ]
    for (const ban of imposed) {
      if (ban === null) continue
      metrics.bansImposed.inc({ scope: ban.scope })
      opts.shareBan(ban)
      request.log.warn({ ban: { scope: ban.scope, until: new Date(ban.until).toISOString(), strikes: ban.strikes }, route_id: route.id }, 'client banned after repeated failures')
    }
  }
  app.addHook('onResponse', (request, _reply, done) => { countFailure(request); done() })
}

/** Registered right after authentication: revocations and banned subjects, before the policy. */
const revocationCheck: FastifyPluginAsync<DenyListOptions> = async (app, { metrics, revocations, bans, revocationsReady }) => {
  const refuseRevoked = (request: FastifyRequest, reply: FastifyReply): void => {
    const route = routeOf(request)
    if (route === undefined || request.principal === null) return
    // Fail closed: a replica that could never read the shared set cannot tell who is revoked.
    if (!revocationsReady()) throw new GW_ERR_AUTHN_REVOCATION_UNAVAILABLE()
    const revoked = revocations.match(request.principal, request.clientCertificate)
    if (revoked !== null) {
      metrics.revokedRequests.inc({ route: route.id, kind: revoked.kind })
      request.authnReason = 'revoked'
      reply.header('www-authenticate', 'Bearer realm="portcullis", error="invalid_token"')
      throw new GW_ERR_AUTHN_REVOKED()
    }
    const subject = request.principal.subject
    const ban = subject !== '' ? bans.banned('sub', subject) : null
    if (ban === null) return
    metrics.bannedRequests.inc({ route: route.id, scope: 'sub' })
    refuseBanned(reply, ban)
  }
  app.addHook('onRequest', syncHook(refuseRevoked))
}

export const clientBanPlugin = fp(denyList, { name: 'gateway-client-ban', fastify: '5.x', dependencies: ['gateway-guard'] })
export const revocationPlugin = fp(revocationCheck, { name: 'gateway-revocation', fastify: '5.x', dependencies: ['gateway-authenticate'] })
