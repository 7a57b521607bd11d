import { createHash, timingSafeEqual } from 'node:crypto'
import { readFileSync } from 'node:fs'
import type { FastifyError, FastifyInstance, FastifyRequest } from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import { Ajv } from 'ajv'
import type { BanList, BanScope } from '../pipeline/deny-list/bans.js'
import { REVOCATION_KINDS, type Revocation, type RevocationKind, type RevocationList } from '../pipeline/deny-list/revocations.js'

/*
 * The admin API: revoke credentials, list and lift bans. Only on the admin listener, only with the
 * admin bearer token (admin.tokenFile), compared in constant time. Every call under /admin/, allowed
 * or refused (reads, malformed bodies and unknown paths included), is written to the log as one `admin audit` line: who (the caller's address and the actor it names),
 * what, when, and the result. The token itself is never logged.
 */

/** Where revocations are written: the shared set (Redis) when there is one, else this process. */
export interface RevocationWriter {
  add: (r: Revocation) => Promise<void>
  remove: (kind: RevocationKind, value: string) => Promise<boolean>
}

export interface BanWriter {
  /** Lifts a ban (on every replica when they share Redis); resolves whether one was in force. */
  lift: (scope: BanScope, value: string) => Promise<boolean>
}

export interface AdminApiOptions {
  /** The bearer token callers must present, read on each call (the cluster primary re-reads its file on SIGHUP). */
  token: () => string
  revocations: RevocationList
  writer: RevocationWriter
  bans: BanList
  banWriter: BanWriter
  maxTtlSeconds: number
}

const RevokeBody = Type.Object({
  kind: Type.Union(REVOCATION_KINDS.map(k => Type.Literal(k))),
  value: Type.String({ minLength: 1, maxLength: 1024 }),
  ttlSeconds: Type.Integer({ minimum: 1 }),
  reason: Type.Optional(Type.String({ maxLength: 256 }))
}, { additionalProperties: false })

// additionalProperties: false is enforced as written: nothing removed, nothing coerced.
const strictAjv = new Ajv({ removeAdditional: false, coerceTypes: false, useDefaults: false, allErrors: false, strict: false })

const digest = (s: string): Buffer => createHash('sha256').update(s).digest()

/**
 * Client certificates are matched by the base64url SHA-256 thumbprint the policy sees; an operator
 * may paste the hex form `openssl x509 -fingerprint -sha256` prints instead.
 */
export function normalizeThumbprint (value: string): string | null {
  const hex = value.replace(/:/g, '')
  if (/^[0-9a-fA-F]{64}$/.test(hex)) return Buffer.from(hex, 'hex').toString('base64url')
  return /^[A-Za-z0-9_-]{43}$/.test(value) ? value : null
}

/** The admin API's bearer token from `admin.tokenFile`, or undefined when the API is off. */
export function readAdminToken (tokenFile: string | undefined): string | undefined {
  if (tokenFile === undefined) return undefined
  const token = readFileSync(tokenFile, 'utf8').trim()
  if (token.length < 32) throw new Error('admin.tokenFile must hold a token of at least 32 characters')
  return token
}

// long: the admin API's routes in one place behind one token check; each handler is short.
export function registerAdminApi (admin: FastifyInstance, opts: AdminApiOptions): void {
  let known = ''
  let expected = digest('')
  const current = (): Buffer => {
    const token = opts.token()
    if (token !== known) { known = token; expected = digest(token) }
    return expected
  }
  // Audit lines are written at logging.level warn or error too (only silent silences them).
  const auditLog = admin.log.level === 'silent' ? admin.log : admin.log.child({}, { level: 'info' })
  const audit = (request: FastifyRequest, action: string, result: string, extra: Record<string, unknown> = {}): void => {
    const actor = request.headers['x-portcullis-actor']
    auditLog.info({
      reqId: request.id,
      audit: { action, result, remote_address: request.ip, actor: typeof actor === 'string' ? actor.slice(0, 128) : null, at: new Date().toISOString(), ...extra }
    }, 'admin audit')
  }

  // What a call is, for its audit line when no handler of its own writes one.
  const callOf = (request: FastifyRequest): string => `${request.method} ${request.routeOptions.url ?? request.url.split('?')[0]!.slice(0, 256)}`

  // long: the authenticated routes (revocations, bans) one after another; each is short.
  void admin.register(async api => {
    api.addHook('onRequest', async (request, reply) => {
      const header = request.headers.authorization ?? ''
      // The scheme is case-insensitive (RFC 9110 §11.1).
      const given = /^bearer /i.test(header) ? header.slice(7) : ''
      // Digests of equal length, so the comparison takes the same time whatever was sent.
      if (given !== '' && timingSafeEqual(digest(given), current())) return
      audit(request, callOf(request), 'unauthenticated')
      reply.header('www-authenticate', 'Bearer realm="portcullis-admin"')
      return reply.code(401).send({ error: 'admin credential required', code: 'unauthenticated' })
    })
    // Fastify's default validator strips unknown properties and accepts the rest; a typo in an
    // operator's request (`ttl` for `ttlSeconds`, `reson`) must be refused instead, so bodies are
    // checked by a validator that removes and coerces nothing.
    api.setValidatorCompiler(({ schema }) => strictAjv.compile(schema))
    // A body that is not JSON, not valid against its schema, or too large: refused, and audited.
    api.setErrorHandler<FastifyError>(async (error, request, reply) => {
      const status = typeof error.statusCode === 'number' && error.statusCode >= 400 && error.statusCode < 500 ? error.statusCode : 500
      const message = status === 500 ? 'internal error' : describeInvalid(error)
      audit(request, callOf(request), status === 500 ? 'error' : 'invalid', { error: message })
      if (status === 500) request.log.error({ err: error }, 'admin API error')
      return reply.code(status).send({ error: message, code: status === 500 ? 'error' : 'invalid' })
    })
    api.setNotFoundHandler(async (request, reply) => {
      audit(request, callOf(request), 'not_found')
      return reply.code(404).send({ error: 'no such admin call', code: 'not_found' })
    })

    api.get('/revocations', async request => {
      const list = opts.revocations.list()
      audit(request, 'list_revocations', 'ok', { count: list.length })
      return { revocations: list.map(show) }
    })

    api.post<{ Body: Static<typeof RevokeBody> }>('/revocations', { schema: { body: RevokeBody } }, async (request, reply) => {
      const { kind, ttlSeconds, reason } = request.body
      const value = kind === 'cert' ? normalizeThumbprint(request.body.value) : request.body.value
      if (value === null) {
        audit(request, 'revoke', 'invalid', { kind })
        return reply.code(400).send({ error: 'cert must be a SHA-256 thumbprint (hex or base64url)', code: 'invalid' })
      }
      if (ttlSeconds > opts.maxTtlSeconds) {
        audit(request, 'revoke', 'invalid', { kind, value })
        return reply.code(400).send({ error: `ttlSeconds must be at most ${opts.maxTtlSeconds}`, code: 'invalid' })
      }
      const now = Date.now()
      const r: Revocation = { kind, value, at: now, until: now + ttlSeconds * 1000, ...(reason !== undefined ? { reason } : {}) }
      try {
        await opts.writer.add(r)
      } catch {
        // Not stored, so not shared: the operator must know it did not take effect everywhere.
        audit(request, 'revoke', 'store_error', { kind, value })
        return reply.code(503).send({ error: 'the revocation could not be stored; it is not in force', code: 'store_error' })
      }
      audit(request, 'revoke', 'ok', { kind, value, until: new Date(r.until).toISOString(), reason: reason ?? null })
      return reply.code(201).send(show(r))
    })

    api.delete<{ Params: { kind: string, value: string } }>('/revocations/:kind/:value', async (request, reply) => {
      const { kind } = request.params
      if (!(REVOCATION_KINDS as readonly string[]).includes(kind)) {
        audit(request, 'unrevoke', 'not_found', { kind: kind.slice(0, 64) })
        return reply.code(404).send({ error: 'unknown kind', code: 'not_found' })
      }
      const value = kind === 'cert' ? normalizeThumbprint(request.params.value) ?? request.params.value : request.params.value
      let removed: boolean
      try {
        removed = await opts.writer.remove(kind as RevocationKind, value)
      } catch {
        audit(request, 'unrevoke', 'store_error', { kind, value })
        return reply.code(503).send({ error: 'the shared revocation set could not be changed', code: 'store_error' })
      }
      audit(request, 'unrevoke', removed ? 'ok' : 'not_found', { kind, value })
      return reply.code(removed ? 204 : 404).send(removed ? undefined : { error: 'no such revocation', code: 'not_found' })
    })

    api.get('/bans', async request => {
      const list = opts.bans.list()
      audit(request, 'list_bans', 'ok', { count: list.length })
      return { bans: list.map(b => ({ scope: b.scope, value: b.value, until: new Date(b.until).toISOString(), strikes: b.strikes })) }
    })

    api.delete<{ Params: { scope: string, value: string } }>('/bans/:scope/:value', async (request, reply) => {
      const { scope, value } = request.params
      if (scope !== 'ip' && scope !== 'sub') {
        audit(request, 'unban', 'not_found', { scope: scope.slice(0, 64) })
        return reply.code(404).send({ error: 'unknown scope', code: 'not_found' })
      }
      let lifted: boolean
      try {
        lifted = await opts.banWriter.lift(scope, value)
      } catch {
        audit(request, 'unban', 'store_error', { scope, value })
        return reply.code(503).send({ error: 'the shared bans could not be changed (a ban held by this process was lifted here only)', code: 'store_error' })
      }
      audit(request, 'unban', lifted ? 'ok' : 'not_found', { scope, value })
      return reply.code(lifted ? 204 : 404).send(lifted ? undefined : { error: 'no such ban', code: 'not_found' })
    })
  }, { prefix: '/admin' })
}

/** A refused body, said in one line: the first schema complaint with its place, or the parser's message. */
function describeInvalid (error: FastifyError): string {
  const first = error.validation?.[0]
  if (first === undefined) return error.message.slice(0, 256)
  const where = first.instancePath === '' ? 'body' : `body${first.instancePath.replaceAll('/', '.')}`
  const extra = first.keyword === 'additionalProperties' ? `: "${String(first.params.additionalProperty).slice(0, 64)}"` : ''
  return `${where} ${first.message ?? 'is invalid'}${extra}`
}

function show (r: Revocation): Record<string, unknown> {
  return { kind: r.kind, value: r.value, at: new Date(r.at).toISOString(), until: new Date(r.until).toISOString(), reason: r.reason ?? null }
}
