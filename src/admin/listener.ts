import { randomUUID } from 'node:crypto'
import type { Socket } from 'node:net'
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { Config } from '../config/schema.js'
import { GW_ERR_ADMIN_UNKNOWN_HOST, GW_ERR_GUARD_HEADERS_TOO_LARGE } from '../errors.js'
import { applyServerLimits, fastifyLimits, serverOptions } from '../lifecycle/server-limits.js'
import { loggerOptions, quietRequestLogging } from '../observability/logger.js'
import { tlsServerOptions } from '../tls/server-tls.js'
import { createClientErrorReplier } from '../pipeline/error-reply.js'
import { createHostCheck } from './allowed-hosts.js'

export interface AdminListenerOptions {
  admin: Config['admin']
  limits: Config['limits']
  logLevel: string
  /** Set when the listening socket is owned by the process (server.ts) and outlives this instance. */
  serverFactory?: FastifyServerOptions['serverFactory'] | undefined
}

// The gateway's public keys: nothing a rebound page could learn from, and functions fetch them by
// whatever name they know the admin listener under.
const PUBLIC_KEYS = '/.well-known/jwks.json'

// Admin requests are small JSON documents; nothing larger has a reason to reach it.
const ADMIN_BODY_LIMIT = 16_384

/**
 * The admin listener's Fastify instance, for the gateway and for the cluster primary alike: the public
 * listener's limits and timeouts, optional TLS (with a client CA, no certificate, no handshake), a Host
 * allow-list against DNS rebinding, and replies that browsers neither sniff nor cache. Routes are
 * added by the caller.
 */
export function createAdminListener (opts: AdminListenerOptions): FastifyInstance {
  // What the parser refuses (a head too large: Node 24 counts header fields there too) gets the same
  // JSON refusal, nosniff and no-store as the public listener's; the logger exists once Fastify does.
  let clientError = (_err: NodeJS.ErrnoException, socket: Socket): void => { socket.destroy() }
  const { admin: config, limits } = opts
  const tls = config.tls
  const admin = Fastify({
    logger: loggerOptions(opts.logLevel),
    logController: quietRequestLogging(),
    ...(tls !== undefined
      ? { https: { ...serverOptions(limits), ...tlsServerOptions(tls, true), handshakeTimeout: limits.headersTimeoutMs } }
      : { http: serverOptions(limits) }),
    ...(opts.serverFactory !== undefined ? { serverFactory: opts.serverFactory } : {}),
    ...fastifyLimits(limits),
    bodyLimit: ADMIN_BODY_LIMIT,
    trustProxy: false,
    genReqId: () => randomUUID(),
    clientErrorHandler: (err, socket) => clientError(err, socket)
  })
  const refuse = createClientErrorReplier(null, admin.log)
  // As Fastify's own handler did: once the refusal is written the connection goes, so that a slow or
  // silent client cannot hold it open by never reading or closing its side.
  clientError = (err, socket) => {
    refuse(err, socket)
    if (!socket.destroyed) socket.once('finish', () => socket.destroy())
  }
  applyServerLimits(admin.server, limits, tls !== undefined)
  const hostAllowed = createHostCheck(config.host, config.hosts)
  const refusalOf = (status: number, error: string, code: string, id: string) => ({ status, body: { error, code, request_id: id } })
  admin.addHook('onRequest', async (request, reply) => {
    const refusal = request.raw.rawHeaders.length / 2 > limits.maxHeaders
      ? refusalOf(431, new GW_ERR_GUARD_HEADERS_TOO_LARGE().message, 'GW_ERR_GUARD_HEADERS_TOO_LARGE', request.id)
      : !hostAllowed(request.headers.host) && request.url !== PUBLIC_KEYS
          ? refusalOf(421, new GW_ERR_ADMIN_UNKNOWN_HOST().message, 'GW_ERR_ADMIN_UNKNOWN_HOST', request.id)
          : null
    if (refusal === null) return
    request.log.warn({ host: request.headers.host?.slice(0, 256) ?? null, status: refusal.status }, 'admin request refused')
    return reply.code(refusal.status).header('connection', 'close').send(refusal.body)
  })
  // On every reply, errors and 404s included. The public key set alone keeps its own short caching.
  admin.addHook('onSend', async (_request, reply) => {
    reply.header('x-content-type-options', 'nosniff')
    if (reply.getHeader('cache-control') === undefined) reply.header('cache-control', 'no-store')
  })
  return admin
}
