/*
 * What /readyz and /status report, as two small registries. Each part of the gateway that can make it
 * unready (policy, issuer keys, certificates, a store, shutting down) adds a named check; each part
 * worth showing an operator adds a status section. Stages register their own, so the admin listener
 * needs no knowledge of them.
 */

export interface CheckResult { ok: boolean, detail?: string }
export type Check = () => CheckResult | boolean

export interface Readiness {
  ready: boolean
  /** One boolean per check, the shape monitors match on. */
  checks: Record<string, boolean>
  /** The same checks with a reason where one is known. */
  details: Record<string, CheckResult>
}

export interface Health {
  /** Adds a readiness check; a second check under the same name replaces the first. */
  addCheck: (name: string, check: Check) => void
  addStatus: (name: string, section: () => unknown) => void
  readiness: () => Readiness
  status: () => Promise<Record<string, unknown>>
}

export function createHealth (): Health {
  const checks = new Map<string, Check>()
  const sections = new Map<string, () => unknown>()
  const readiness = (): Readiness => {
    const out: Record<string, CheckResult> = {}
    for (const [name, check] of checks) {
      try {
        const r = check()
        out[name] = typeof r === 'boolean' ? { ok: r } : r
      } catch (err) {
        // A check that throws is a failed check: readiness fails closed.
        out[name] = { ok: false, detail: (err as Error).message }
      }
    }
    const flags = Object.fromEntries(Object.entries(out).map(([name, c]) => [name, c.ok]))
    return { ready: Object.values(out).every(c => c.ok), checks: flags, details: out }
  }
  return {
    addCheck: (name, check) => { checks.set(name, check) },
    addStatus: (name, section) => { sections.set(name, section) },
    readiness,
    status: async () => {
      const out: Record<string, unknown> = { ready: readiness().ready }
      for (const [name, section] of sections) out[name] = await section()
      return out
    }
  }
}
