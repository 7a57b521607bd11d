import type { Config } from '../../../config/schema.js'
import type { Health } from '../../../admin/health.js'
import { awsSigV4Problem } from './aws-sigv4.js'
import { azureManagedIdentityProblem } from './azure-managed-identity.js'
import { googleIdTokenProblem } from './google-id-token.js'

/*
 * Whether the platform credentials an upstream needs (AWS, Google, Azure) can be had at all, asked of
 * each kind's own module. A gateway with none answers every request 502; this says so at start, in
 * `/readyz` (not ready, with the fix) and in `portcullis check`, instead.
 */

export interface CredentialProblem {
  upstream: string
  /** JSON pointer of the credential in the config. */
  path: string
  problem: string
}

const PROBE_TIMEOUT_MS = 10_000
const RETRY_MS = 30_000

async function withTimeout (probe: Promise<string | null>): Promise<string | null> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<string>(resolve => { timer = setTimeout(() => resolve(`no answer within ${PROBE_TIMEOUT_MS / 1000} s`), PROBE_TIMEOUT_MS) })
  try { return await Promise.race([probe, late]) } finally { clearTimeout(timer) }
}

/** One probe per upstream credential that comes from the platform. */
function probesOf (upstreams: Config['upstreams']): Array<{ upstream: string, path: string, probe: () => Promise<string | null> }> {
  return upstreams.flatMap((u, i) => {
    const c = u.credentials
    const at = `/upstreams/${i}/credentials`
    return [
      ...(c.awsSigV4 !== undefined ? [{ upstream: u.id, path: `${at}/awsSigV4`, probe: awsSigV4Problem }] : []),
      ...(c.googleIdToken !== undefined ? [{ upstream: u.id, path: `${at}/googleIdToken`, probe: async () => googleIdTokenProblem(c.googleIdToken!.audience ?? u.url.replace(/\/$/, '')) }] : []),
      ...(c.azureManagedIdentity !== undefined ? [{ upstream: u.id, path: `${at}/azureManagedIdentity`, probe: async () => azureManagedIdentityProblem() }] : [])
    ]
  })
}

/** `portcullis check`: every platform credential that cannot be had, with the fix. */
export async function credentialProblems (upstreams: Config['upstreams']): Promise<CredentialProblem[]> {
  const results = await Promise.all(probesOf(upstreams).map(async p => ({ ...p, problem: await withTimeout(p.probe()) })))
  return results.flatMap(r => r.problem === null ? [] : [{ upstream: r.upstream, path: r.path, problem: r.problem }])
}

/**
 * Readiness check `credentials:<upstream>` for each upstream with platform credentials: not ready
 * until they are found, asked again every 30 s while they are not. Returns the stop function.
 */
export function watchCredentials (upstreams: Config['upstreams'], health: Health): () => void {
  const timers = new Set<NodeJS.Timeout>()
  let stopped = false
  for (const p of probesOf(upstreams)) {
    let state: { ok: boolean, detail: string } = { ok: false, detail: 'looking for credentials' }
    const name = `credentials:${p.upstream}`
    const run = async (): Promise<void> => {
      const problem = await withTimeout(p.probe())
      if (stopped) return
      state = problem === null ? { ok: true, detail: 'found' } : { ok: false, detail: problem }
      if (problem !== null) {
        const timer = setTimeout(() => { timers.delete(timer); void run() }, RETRY_MS).unref()
        timers.add(timer)
      }
    }
    // One per upstream: the config allows only one of these kinds on an upstream (each needs Authorization).
    health.addCheck(name, () => state)
    void run()
  }
  return () => {
    stopped = true
    for (const t of timers) clearTimeout(t)
  }
}
