import { isRevocation, type Revocation, type RevocationKind, type RevocationList } from './revocations.js'
import { createSharedRecords, splitField, withMethods, type Message, type SharedRecords, type SyncOptions } from './sync-engine.js'

/*
 * Revocations through Redis (sync-engine.ts): Redis is the source of truth (a full read replaces the
 * local list), except when it comes back empty while this replica holds some (Redis lost its data).
 */

// What replicas of the release before this one publish and understand on the revocation channel:
// accepted, and published beside the current form, so that a rolling upgrade loses no revocation.
type LegacyRevocationMessage = { op: 'add', revocation: unknown } | { op: 'remove', kind: string, value: string }

export const revocationField = (kind: RevocationKind, value: string): string => `${kind}:${value}`

export interface RevocationSync extends SharedRecords<Revocation> {
  add: (r: Revocation) => Promise<void>
  remove: (kind: RevocationKind, value: string) => Promise<boolean>
}

const legacy = {
  toMessage (m: unknown): Message | null {
    const old = m as LegacyRevocationMessage | null
    if (old?.op === 'add') return { op: 'put', record: old.revocation }
    if (old?.op === 'remove' && typeof old.kind === 'string' && typeof old.value === 'string') return { op: 'delete', field: `${old.kind}:${old.value}` }
    return null
  },
  fromPut: (r: Revocation): unknown => ({ op: 'add', revocation: r } satisfies LegacyRevocationMessage),
  fromDelete (field: string): unknown {
    const [kind, value] = splitField(field)
    return { op: 'remove', kind, value } satisfies LegacyRevocationMessage
  }
}

export function createRevocationSync (opts: SyncOptions & { list: RevocationList }): RevocationSync {
  const { list, log } = opts
  const shared = createSharedRecords<Revocation>(opts, {
    what: 'revocation',
    field: r => revocationField(r.kind, r.value),
    parse: v => isRevocation(v) ? v : null,
    until: r => r.until,
    onRead (live, stored) {
      const local = list.list()
      if (stored === 0 && local.length > 0) {
        // An empty set while this replica holds revocations: Redis lost its data (restarted without
        // persistence). Put this replica's copy back rather than let everyone forget; a removal that
        // this replica missed can come back this way, which errs on the side of refusing.
        log.warn({ revocations: local.length }, 'revocation set is empty in Redis; restoring it from this replica')
        return local
      }
      list.replace(live)
      return []
    },
    onPut: r => { list.add(r) },
    onDelete (field) {
      const [kind, value] = splitField(field)
      list.remove(kind as RevocationKind, value)
    },
    legacy
  })
  return withMethods(shared, {
    async add (r: Revocation) {
      await shared.put(r)
      list.add(r)
    },
    async remove (kind: RevocationKind, value: string) {
      const removed = await shared.delete(revocationField(kind, value))
      return list.remove(kind, value) || removed
    }
  })
}
