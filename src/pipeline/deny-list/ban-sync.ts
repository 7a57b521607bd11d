import type { Ban, BanList, BanScope } from './bans.js'
import { createSharedRecords, splitField, withMethods, type SharedRecords, type SyncOptions } from './sync-engine.js'

/*
 * Bans through Redis (sync-engine.ts): each replica detects its own and shares them; a full read adds
 * what others imposed and never removes a ban of this replica's that it could not share.
 */

export const banField = (scope: BanScope, value: string): string => `${scope}:${value}`

function isBan (v: unknown): v is Ban {
  if (v === null || typeof v !== 'object') return false
  const b = v as Record<string, unknown>
  return (b.scope === 'ip' || b.scope === 'sub') && typeof b.value === 'string' && b.value !== '' &&
    Number.isFinite(b.until) && Number.isInteger(b.strikes) && (b.strikes as number) >= 1
}

export interface BanSync extends SharedRecords<Ban> {
  /** Lifts a ban here and on every replica; resolves whether any held it. */
  lift: (scope: BanScope, value: string) => Promise<boolean>
}

export function createBanSync (opts: SyncOptions & { bans: BanList }): BanSync {
  const { bans } = opts
  const shared = createSharedRecords<Ban>(opts, {
    what: 'ban',
    field: b => banField(b.scope, b.value),
    parse: v => isBan(v) ? v : null,
    until: b => b.until,
    onRead (live) {
      for (const b of live) bans.impose(b)
      // A ban that came through Redis and is no longer there was lifted (a message this replica missed).
      const inStore = new Set(live.map(b => banField(b.scope, b.value)))
      bans.keepShared(b => inStore.has(banField(b.scope, b.value)))
      return []
    },
    onPut: b => { bans.impose(b) },
    keepLonger: true,
    onDelete (field) {
      const [scope, value] = splitField(field)
      bans.lift(scope as BanScope, value)
    }
  })
  return withMethods(shared, {
    // Marked as shared once Redis holds it (its own message does the same, when the subscriber is up).
    async put (ban: Ban) {
      await shared.put(ban)
      bans.impose(ban)
    },
    async lift (scope: BanScope, value: string) {
      const here = bans.lift(scope, value)
      return await shared.delete(banField(scope, value)) || here
    }
  })
}
