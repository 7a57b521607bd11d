import { Agent, request } from 'undici'
import { makeKey, sign, type SigningKey } from '../../test/helpers/idp.js'
import type { SigningState } from './chaos-faults.js'

/*
 * Mixed traffic at a fixed rate (open loop: a slow answer does not slow the next request, as with
 * real callers), spread over the replicas with keep-alive connections. Every answer is recorded
 * with when it was asked and answered, for the judge.
 */

export type RequestKind = 'ok-local' | 'ok-strict' | 'denied' | 'no-token' | 'unknown-kid'

export interface Answer {
  /** ms since traffic started: sent, answered (or failed). */
  t0: number
  t1: number
  replica: 'A' | 'B'
  kind: RequestKind
  /** kid of the token sent, if any. */
  kid: string | null
  status: number | null
  code: string | null
  /** A transport error (connection reset, refused, timeout) instead of an answer. */
  error: string | null
  retryAfter: string | null
}

// The mix: mostly callers who should get through, some the policy refuses, some without a token,
// and an occasional token with a kid the IdP never published.
const MIX: Array<[RequestKind, number]> = [['ok-local', 0.40], ['ok-strict', 0.30], ['denied', 0.13], ['no-token', 0.12], ['unknown-kid', 0.05]]
/** A share of valid requests comes from a new subject, never answered from the verified-token cache. */
const NEW_SUBJECT = 0.2
const POOL = 40
/** Tokens live 300 s (test/helpers/idp.ts); pooled ones are replaced well before. */
const TOKEN_REUSE_MS = 120_000
// Beyond this many unanswered requests the run counts requests as not sent rather than queue them in
// the client, where they would reach the gateway long after they were made (tokens signed before a
// key was withdrawn, timings that say nothing about the gateway).
const MAX_IN_FLIGHT = 300
const CLIENT_TIMEOUT_MS = 15_000

export interface TrafficOptions {
  replicas: Array<{ name: 'A' | 'B', url: string }>
  caPem: string
  issuer: string
  signing: SigningState
  random: () => number
  rate: number
  durationMs: number
  t0: number
}

export async function driveTraffic (o: TrafficOptions): Promise<{ answers: Answer[], skipped: number }> {
  const agents = new Map(o.replicas.map(r => [r.name, new Agent({
    connect: { ca: o.caPem },
    connections: 32,
    headersTimeout: CLIENT_TIMEOUT_MS,
    bodyTimeout: CLIENT_TIMEOUT_MS
  })]))
  const rogue = Array.from({ length: 4 }, (_, i) => makeKey('ES256', `rogue-${i}`))
  const pools = new Map<string, Array<{ token: string, at: number }>>()
  let subjects = 0
  const token = async (key: SigningKey, roles: string[]): Promise<string> => {
    const id = `${key.kid}:${roles.join(',')}`
    const pool = pools.get(id) ?? []
    pools.set(id, pool)
    const pick = pool[Math.floor(o.random() * pool.length)]
    if (pick !== undefined && o.random() >= NEW_SUBJECT && Date.now() - pick.at < TOKEN_REUSE_MS) return pick.token
    const fresh = { token: await sign(key, { iss: o.issuer, aud: 'api', sub: `chaos-${++subjects}`, roles }), at: Date.now() }
    if (pool.length < POOL) pool.push(fresh)
    else pool[Math.floor(o.random() * POOL)] = fresh
    return fresh.token
  }

  const answers: Answer[] = []
  let inFlight = 0
  let skipped = 0
  let n = 0
  const now = (): number => Date.now() - o.t0

  const one = async (): Promise<void> => {
    const replica = o.replicas[Math.floor(o.random() * o.replicas.length)]!
    let r = o.random()
    const kind = MIX.find(([, share]) => (r -= share) < 0)?.[0] ?? 'ok-local'
    const key = kind === 'unknown-kid' ? rogue[Math.floor(o.random() * rogue.length)]! : o.signing.current()
    const headers: Record<string, string> = {}
    if (kind !== 'no-token') headers.authorization = `Bearer ${await token(key, kind === 'denied' ? [] : ['reader'])}`
    const path = kind === 'ok-strict' || kind === 'denied' ? '/strict' : '/local'
    const answer: Answer = { t0: now(), t1: 0, replica: replica.name, kind, kid: kind === 'no-token' ? null : key.kid, status: null, code: null, error: null, retryAfter: null }
    inFlight++
    try {
      const res = await request(`${replica.url}${path}/item?n=${++n}`, { dispatcher: agents.get(replica.name)!, headers })
      const text = await res.body.text()
      answer.status = res.statusCode
      const retryAfter = res.headers['retry-after']
      answer.retryAfter = typeof retryAfter === 'string' ? retryAfter : null
      if (res.statusCode >= 400) {
        try { answer.code = (JSON.parse(text) as { code?: string }).code ?? null } catch { answer.code = null }
      }
    } catch (err) {
      const e = err as Error & { code?: string }
      answer.error = `${e.code ?? e.name}: ${e.message}`
    } finally {
      inFlight--
      answer.t1 = now()
      answers.push(answer)
    }
  }

  // Ticks every 10 ms send what is owed at the fixed rate; a late tick (busy machine) catches up.
  const pending = new Set<Promise<void>>()
  const started = Date.now()
  let sent = 0
  while (Date.now() - started < o.durationMs) {
    const owed = Math.floor((Date.now() - started) / 1000 * o.rate) - sent
    for (let i = 0; i < owed; i++, sent++) {
      if (inFlight >= MAX_IN_FLIGHT) { skipped++; continue }
      const p = one()
      pending.add(p)
      void p.finally(() => pending.delete(p))
    }
    await new Promise(resolve => setTimeout(resolve, 10))
  }
  await Promise.allSettled([...pending])
  await Promise.all([...agents.values()].map(async a => a.close()))
  return { answers, skipped }
}
