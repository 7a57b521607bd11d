import fp from 'fastify-plugin'
import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { Config, PreAuthLimitConfig, RateLimitConfig } from '../../config/schema.js'
import { GW_ERR_RATE_LIMIT_TIER, GW_ERR_RATE_LIMITED } from '../../errors.js'
import type { Metrics } from '../../observability/metrics.js'
import { clientBucketIp } from '../../util/client-network.js'
import { bucketPrefix, createBucketHasher, principalIdentity } from './keys.js'
import type { LimitSpec as AlgorithmSpec } from './algorithms.js'
import { fallbackShare, storeKey, type Bucket, type RateLimitStore } from './store.js'
import { routeOf } from '../types.js'

export interface RateLimitOptions {
  metrics: Metrics
  store: RateLimitStore
  config: Pick<Config, 'rateLimit' | 'routes'>
}

interface Limit {
  /** The policy name in RateLimit / RateLimit-Policy: the route id or the tier name. */
  name: string
  max: number
  windowSeconds: number
  /** The RateLimit-Policy value: fixed per limit, built once. */
  policy: string
  /** @fastify/rate-limit's checker for this limit. */
  limiter: Limiter
}

type Limiter = ReturnType<FastifyInstance['createRateLimit']>
type LimiterAnswer = Awaited<ReturnType<Limiter>>

/**
 * The store could not decide and this limit fails closed (GW_ERR_RATE_LIMIT_STORE): the client may
 * try again in a second. The hooks await the limiter themselves and call this on a rejection, so a
 * request costs no promise beyond the hook's and the limiter's own.
 */
function storeFailed (reply: FastifyReply, err: unknown): never {
  reply.header('retry-after', '1')
  throw err
}

/** What the store should do for one configured limit. */
function bucketOf (label: string, limit: RateLimitConfig | PreAuthLimitConfig, share: number): Bucket {
  const algorithm = 'algorithm' in limit ? limit.algorithm : 'fixed-window'
  const burst = 'burst' in limit && limit.burst !== undefined ? limit.burst : limit.max
  const spec: AlgorithmSpec = { algorithm, max: limit.max, windowMs: limit.windowSeconds * 1000, burst }
  return { label, onStoreError: limit.onStoreError, spec, fallback: fallbackShare(spec, share) }
}

/** One limit to build: where the stage finds it, its name in the headers, its metric label. */
interface LimitSpec {
  /** How the stage finds it: route:<id>, tier:<name>, pre-auth. */
  id: string
  name: string
  label: string
  limit: RateLimitConfig | PreAuthLimitConfig
  key: (request: FastifyRequest) => string
}

/**
 * @fastify/rate-limit in its own scope, with the gateway's store; each configured limit becomes one
 * `createRateLimit` checker, built here at start. The stage's hooks call them, so that the order of
 * the stages stays in app.ts and the answers (headers, codes) stay the gateway's.
 */
async function buildLimits (app: FastifyInstance, store: RateLimitStore, share: number, specs: LimitSpec[]): Promise<Map<string, Limit>> {
  const limits = new Map<string, Limit>()
  await app.register(async scope => {
    await scope.register(rateLimit, { global: false, store: store.Store, skipOnError: false })
    for (const { id, name, label, limit, key } of specs) {
      const limiter = scope.createRateLimit({
        max: limit.max,
        timeWindow: limit.windowSeconds * 1000,
        keyGenerator: key,
        gateway: bucketOf(label, limit, share)
      } as Parameters<typeof scope.createRateLimit>[0])
      limits.set(id, { name, max: limit.max, windowSeconds: limit.windowSeconds, policy: `"${name}";q=${limit.max};w=${limit.windowSeconds}`, limiter })
    }
  })
  return limits
}

/** The IETF fields (draft-ietf-httpapi-ratelimit-headers): the policy, and what is left of it. */
function setHeaders (reply: FastifyReply, limit: Limit, remaining: number, ttlMs: number): void {
  reply.header('ratelimit-policy', limit.policy)
  reply.header('ratelimit', `"${limit.name}";r=${remaining};t=${Math.max(0, Math.ceil(ttlMs / 1000))}`)
}

function refuse (reply: FastifyReply, limit: Limit, ttlMs: number): never {
  const seconds = Math.max(1, Math.ceil(ttlMs / 1000))
  setHeaders(reply, limit, 0, ttlMs)
  reply.header('retry-after', String(seconds))
  throw new GW_ERR_RATE_LIMITED(seconds)
}

/**
 * Stage 1, the pre-authentication limit: per client IP, on every request, before any token is looked
 * at, so a flood of bogus tokens costs the gateway a counter, not signature checks or the policy.
 */
const preAuth: FastifyPluginAsync<RateLimitOptions> = async (app, { metrics, store, config }) => {
  const limit = config.rateLimit.preAuth
  if (limit === undefined) return
  const bucketHash = createBucketHasher()
  const prefix = bucketPrefix('ip')
  const limits = await buildLimits(app, store, config.rateLimit.store.localFallbackShare, [{
    id: 'pre-auth', name: 'pre-auth', label: 'pre_auth', limit, key: request => storeKey(bucketHash(prefix + clientBucketIp(request)), 1)
  }])
  const check = limits.get('pre-auth')!
  app.addHook('onRequest', async (request, reply) => {
    let r: LimiterAnswer
    try { r = await check.limiter(request) } catch (err) { storeFailed(reply, err) }
    if (r.isAllowed || !r.isExceeded) return // isAllowed: an allow list's pass, which is never set
    metrics.preAuthLimited.inc()
    refuse(reply, check, r.ttl)
  })
}

/**
 * Stage 5, rate limit: after authorization, so only allowed requests count. The bucket is the
 * principal on the route, under the route's limit; the policy decision may instead name a tier, a
 * bucket key (shared across routes, e.g. a tenant) and a cost per request.
 */
const limit: FastifyPluginAsync<RateLimitOptions> = async (app, { metrics, store, config }) => {
  app.decorateRequest('rateLimited', null)
  const bucketHash = createBucketHasher()
  // Each limit's key: the constant parts of its bucket names built once, the caller's identity or the
  // policy's key added per request. A route's own limit is only chosen on that route, so its names are
  // fixed; a tier may be named by any route's policy, so its names are found per route.
  const keyOf = (name: string, onRoute?: string) => {
    const keyPrefix = bucketPrefix('key', name)
    const fixed = onRoute === undefined ? undefined : bucketPrefix('route', onRoute, name)
    const perRoute = new Map<string, string>()
    return (request: FastifyRequest): string => {
      const hint = request.decision?.rateLimit
      if (hint?.key !== undefined) return storeKey(bucketHash(keyPrefix + hint.key), hint.cost ?? 1)
      let prefix = fixed
      if (prefix === undefined) {
        const route = routeOf(request)?.id ?? '-'
        prefix = perRoute.get(route)
        if (prefix === undefined) perRoute.set(route, prefix = bucketPrefix('route', route, name))
      }
      return storeKey(principalHash(request, prefix), hint?.cost ?? 1)
    }
  }
  // A token's principal comes back from the verified-token cache with the same claims object on each
  // of its requests: its bucket's hash is kept on that object (weakly), checked against the issuer,
  // subject and bucket prefix it was made for, so a remembered caller's key is found without building
  // its name and looking that up (issue #19). Other callers' names are hashed through bucketHash.
  const byClaims = new WeakMap<object, { prefix: string, issuer: string, subject: string, hash: string }>()
  const principalHash = (request: FastifyRequest, prefix: string): string => {
    const p = request.principal
    if (p === null || p.type !== 'jwt') return bucketHash(prefix + principalIdentity(request, clientBucketIp(request)))
    const known = byClaims.get(p.claims)
    if (known !== undefined && known.prefix === prefix && known.issuer === p.issuer && known.subject === p.subject) return known.hash
    const hash = bucketHash(prefix + principalIdentity(request, ''))
    byClaims.set(p.claims, { prefix, issuer: p.issuer, subject: p.subject, hash })
    return hash
  }
  const specs: LimitSpec[] = []
  for (const route of config.routes) {
    const l = route.rateLimit ?? config.rateLimit.default
    if (l !== undefined) specs.push({ id: `route:${route.id}`, name: route.id, label: route.id, limit: l, key: keyOf(route.id, route.id) })
  }
  for (const [tier, l] of Object.entries(config.rateLimit.tiers)) {
    specs.push({ id: `tier:${tier}`, name: tier, label: `tier:${tier}`, limit: l, key: keyOf(`tier:${tier}`) })
  }
  const limits = await buildLimits(app, store, config.rateLimit.store.localFallbackShare, specs)
  // Looked up by the route id or tier name as they come, with no key string made per request.
  const byRoute = new Map(config.routes.flatMap(r => limits.has(`route:${r.id}`) ? [[r.id, limits.get(`route:${r.id}`)!] as const] : []))
  const byTier = new Map(Object.keys(config.rateLimit.tiers).map(tier => [tier, limits.get(`tier:${tier}`)!] as const))

  app.addHook('onRequest', async (request, reply) => {
    const route = routeOf(request)
    if (route === undefined || request.decision === null) return
    const tier = request.decision.rateLimit?.tier
    let chosen: Limit | undefined
    if (tier !== undefined) {
      chosen = byTier.get(tier)
      if (chosen === undefined) throw new GW_ERR_RATE_LIMIT_TIER()
    } else {
      chosen = byRoute.get(route.id)
    }
    if (chosen === undefined) return
    let r: LimiterAnswer
    try { r = await chosen.limiter(request) } catch (err) { storeFailed(reply, err) }
    if (r.isAllowed) { // an allow list's pass, which is never set
      request.rateLimited = false
      return setHeaders(reply, chosen, chosen.max, 0)
    }
    request.rateLimited = r.isExceeded
    if (r.isExceeded) {
      metrics.rateLimited.inc({ route: route.id })
      refuse(reply, chosen, r.ttl)
    }
    setHeaders(reply, chosen, r.remaining, r.ttl)
  })
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Whether the main limit refused this request; null when no limit applied or it was not reached. */
    rateLimited: boolean | null
  }
}

export const preAuthLimitPlugin = fp(preAuth, {
  name: 'gateway-pre-auth-limit',
  fastify: '5.x',
  dependencies: ['gateway-guard']
})

export const rateLimitPlugin = fp(limit, {
  name: 'gateway-rate-limit',
  fastify: '5.x',
  dependencies: ['gateway-authorize']
})
