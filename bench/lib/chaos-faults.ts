import { makeKey, type SigningKey } from '../../test/helpers/idp.js'
import { childrenOf } from './chaos-procs.js'
import type { ChaosStack } from './chaos-stack.js'
import type { FaultKind, PlannedFault } from './chaos-schedule.js'

/*
 * Carries out the schedule against the running stack and records when each fault really began and
 * ended (ms since traffic started): the answers are judged against these times, not the planned
 * ones, since killing and restarting a process takes a while on a loaded machine.
 */

export interface Episode {
  kind: FaultKind
  plannedAt: number
  /** When the fault took effect. */
  start: number
  /** When it was undone (the process accepts connections again, SIGCONT sent, ...); = start for events. */
  end: number
  detail: string
  /** idp-slow: how long each IdP answer waited. */
  slowMs?: number
  /** idp-rotate: the kid withdrawn at the end. */
  withdrawnKid?: string
}

export interface SigningState {
  /** The key tokens are signed with right now (changes during a rotation). */
  current: () => SigningKey
}

const sleep = async (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms))

export function createFaultRunner (stack: ChaosStack, t0: number, random: () => number) {
  let signing = stack.firstKey
  let rotations = 0
  const episodes: Episode[] = []
  const now = (): number => Date.now() - t0
  const replicaB = stack.replicas.find(r => r.name === 'B')!

  const outage = async (f: PlannedFault, target: 'idp' | 'redis' | 'fn', how: 'kill' | 'pause'): Promise<Omit<Episode, 'kind' | 'plannedAt'>> => {
    const proc = stack[target]
    const pid = proc.pid()
    if (how === 'kill') {
      // The fault begins with the signal, not when the exit has been noticed (later, on a busy loop).
      const start = now()
      await proc.kill()
      await sleep(f.seconds * 1000)
      await proc.start()
      return { start, end: now(), detail: `SIGKILL pid ${pid}, restarted as pid ${proc.pid()}` }
    }
    const start = now()
    proc.pause()
    await sleep(f.seconds * 1000)
    proc.resume()
    return { start, end: now(), detail: `SIGSTOP/SIGCONT pid ${pid}` }
  }

  const run = async (f: PlannedFault): Promise<Omit<Episode, 'kind' | 'plannedAt'>> => {
    switch (f.kind) {
      case 'idp-kill': return outage(f, 'idp', 'kill')
      case 'idp-pause': return outage(f, 'idp', 'pause')
      case 'redis-kill': return outage(f, 'redis', 'kill')
      case 'redis-pause': return outage(f, 'redis', 'pause')
      case 'fn-kill': return outage(f, 'fn', 'kill')
      case 'fn-pause': return outage(f, 'fn', 'pause')
      case 'idp-slow': {
        const start = now()
        await stack.slowIdp(f.slowMs!)
        await sleep(f.seconds * 1000)
        await stack.slowIdp(0)
        return { start, end: now(), detail: `every IdP answer waits ${f.slowMs} ms`, slowMs: f.slowMs! }
      }
      case 'idp-rotate': {
        // As an IdP rotates: the new key is published, used at once (a second later: "rotation in
        // about a second"), and the old one withdrawn when the episode ends.
        const old = signing
        const next = makeKey('ES256', `k${++rotations}`)
        const start = now()
        await stack.publish([old, next])
        await sleep(1000)
        signing = next
        await sleep(Math.max(0, f.seconds * 1000 - 1000))
        await stack.publish([next])
        return { start, end: now(), detail: `published ${next.kid} beside ${old.kid}, signing with ${next.kid} from +1 s, ${old.kid} withdrawn at the end`, withdrawnKid: old.kid }
      }
      case 'worker-kill': {
        const primary = replicaB.proc.child.pid!
        const workers = childrenOf(primary)
        if (workers.length === 0) return { start: now(), end: now(), detail: 'no worker found to kill' }
        const victim = workers[Math.floor(random() * workers.length)]!
        const start = now()
        process.kill(victim, 'SIGKILL')
        // Not awaited by the judge: when a new worker exists is reported, not assumed.
        let respawned = 'no new worker within 10 s'
        for (let i = 0; i < 100; i++) {
          const fresh = childrenOf(primary).filter(p => !workers.includes(p))
          if (fresh.length > 0) { respawned = `new worker pid ${fresh.join(', ')} after ${now() - start} ms`; break }
          await sleep(100)
        }
        return { start, end: start, detail: `SIGKILL worker pid ${victim} of replica B (workers were ${workers.join(', ')}); ${respawned}` }
      }
      case 'reload': {
        const start = now()
        for (const r of stack.replicas) r.proc.child.kill('SIGHUP')
        return { start, end: start, detail: `SIGHUP to ${stack.replicas.map(r => `${r.name} (pid ${r.proc.child.pid})`).join(', ')}` }
      }
    }
  }

  return {
    episodes,
    signing: { current: () => signing } satisfies SigningState,
    /**
     * Runs every planned fault at its time (or as soon as the previous one of its lane is undone, if
     * a restart took longer than planned); resolves when the last one is undone.
     */
    async play (plan: PlannedFault[], log: (line: string) => void): Promise<void> {
      const lanes = new Map<string, PlannedFault[]>()
      for (const f of plan) lanes.set(f.kind.split('-')[0]!, [...lanes.get(f.kind.split('-')[0]!) ?? [], f])
      await Promise.all([...lanes.values()].map(async lane => {
        for (const f of lane) {
          await sleep(Math.max(0, f.at * 1000 - now()))
          try {
            const e = { kind: f.kind, plannedAt: f.at * 1000, ...await run(f) }
            episodes.push(e)
            log(`fault ${e.kind}: ${(e.start / 1000).toFixed(1)}–${(e.end / 1000).toFixed(1)} s, ${e.detail}`)
          } catch (err) {
            throw new Error(`fault ${f.kind} at ${f.at} s could not be carried out: ${(err as Error).message}`)
          }
        }
      }))
    }
  }
}
