import type { ClientCertificate, Principal } from '../types.js'

/*
 * Revoked credentials: a token id (jti), a subject, or a client certificate (its SHA-256
 * thumbprint), each until a given time. This is the local view every request reads; with Redis it is
 * a mirror of the shared set (revocation-sync.ts), without Redis it is the only copy and lives as long as
 * the process (it outlives config reloads: server.ts hands the same list to each new gateway).
 */

export const REVOCATION_KINDS = ['jti', 'sub', 'cert'] as const
export type RevocationKind = typeof REVOCATION_KINDS[number]

export interface Revocation {
  kind: RevocationKind
  value: string
  /** Milliseconds since the epoch: the revocation ends then. */
  until: number
  /** When it was made (ms since the epoch). */
  at: number
  reason?: string
}

export interface RevocationList {
  add: (r: Revocation) => void
  remove: (kind: RevocationKind, value: string) => boolean
  /** Replaces everything with `all` (a full read of the shared set). */
  replace: (all: Revocation[]) => void
  /** The first revocation that applies to this caller, or null. */
  match: (principal: Principal | null, cert: ClientCertificate | null) => Revocation | null
  list: () => Revocation[]
  count: (kind: RevocationKind) => number
}

const keyOf = (kind: RevocationKind, value: string): string => `${kind}\0${value}`

export function isRevocation (v: unknown): v is Revocation {
  if (v === null || typeof v !== 'object') return false
  const r = v as Record<string, unknown>
  return (REVOCATION_KINDS as readonly unknown[]).includes(r.kind) && typeof r.value === 'string' && r.value !== '' &&
    Number.isFinite(r.until) && Number.isFinite(r.at) && (r.reason === undefined || typeof r.reason === 'string')
}

export function createRevocationList (now: () => number = Date.now): RevocationList {
  const entries = new Map<string, Revocation>()
  const live = (r: Revocation | undefined): Revocation | null => {
    if (r === undefined) return null
    if (r.until > now()) return r
    entries.delete(keyOf(r.kind, r.value))
    return null
  }
  return {
    add (r) {
      if (r.until > now()) entries.set(keyOf(r.kind, r.value), r)
    },
    remove: (kind, value) => entries.delete(keyOf(kind, value)),
    replace (all) {
      entries.clear()
      for (const r of all) if (r.until > now()) entries.set(keyOf(r.kind, r.value), r)
    },
    match (principal, cert) {
      if (entries.size === 0) return null
      const jti = principal?.claims.jti
      const thumbprint = cert?.thumbprintSha256 ?? principal?.certificate?.thumbprintSha256
      return (typeof jti === 'string' ? live(entries.get(keyOf('jti', jti))) : null) ??
        (principal !== null && principal.subject !== '' ? live(entries.get(keyOf('sub', principal.subject))) : null) ??
        (thumbprint !== undefined ? live(entries.get(keyOf('cert', thumbprint))) : null)
    },
    list () {
      return [...entries.values()].filter(r => live(r) !== null)
    },
    count: kind => [...entries.values()].filter(r => r.kind === kind && r.until > now()).length
  }
}
