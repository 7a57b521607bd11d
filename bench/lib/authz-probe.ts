import { Pool } from 'undici'
import { readBundleFile } from '../../src/pipeline/authorize/bundle.js'
import { createPolicyEngine } from '../../src/pipeline/authorize/policy-engine.js'
import { toDecision } from '../../src/pipeline/authorize/decision.js'

/*
 * Scenario 6, authorization alone, one decision at a time: the policy evaluated in-process (what
 * Portcullis does) versus the same bundle behind `opa run --server`, asked over HTTP per request (the
 * Envoy + OPA sidecar pattern). Prints one JSON line with per-decision latency in microseconds.
 * Usage: node --import tsx bench/lib/authz-probe.ts inproc <bundle> | sidecar <opa-url>
 */

const INPUT = {
  method: 'GET',
  path: '/orders/42',
  segments: ['orders', '42'],
  query: { expand: ['items'] },
  headers: { accept: 'application/json', 'user-agent': 'bench/1.0', host: 'gateway.example.com' },
  client: { ip: '127.0.0.1' },
  principal: { type: 'jwt', issuer: 'https://idp.example.com', subject: 'alice', claims: { sub: 'alice', roles: ['reader'], aud: 'api' } },
  route: { id: 'orders', metadata: {} },
  time_ns: Date.now() * 1e6
}
const WARMUP = 2000

function percentiles (samples: number[]): { p50_us: number, p99_us: number, n: number } {
  samples.sort((a, b) => a - b)
  const at = (q: number): number => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))]!
  return { p50_us: at(0.5), p99_us: at(0.99), n: samples.length }
}

async function measure (n: number, once: () => unknown): Promise<number[]> {
  for (let i = 0; i < WARMUP; i++) await once()
  const samples: number[] = []
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint()
    await once()
    samples.push(Number(process.hrtime.bigint() - t0) / 1000)
  }
  return samples
}

const [mode, target] = process.argv.slice(2)
if (mode === 'inproc') {
  const engine = await createPolicyEngine(await readBundleFile(target!), 'gateway/authz/decision')
  if (toDecision(engine.evaluate(INPUT))?.allow !== true) throw new Error('probe input should be allowed')
  process.stdout.write(JSON.stringify(percentiles(await measure(50_000, () => toDecision(engine.evaluate(INPUT))))) + '\n')
} else if (mode === 'sidecar') {
  const pool = new Pool(target!, { connections: 1 })
  const body = JSON.stringify({ input: INPUT })
  const ask = async (): Promise<unknown> => {
    const res = await pool.request({ path: '/v1/data/gateway/authz/decision', method: 'POST', headers: { 'content-type': 'application/json' }, body })
    const json = await res.body.json() as { result?: unknown }
    return toDecision(json.result)
  }
  if ((await ask() as { allow?: boolean } | null)?.allow !== true) throw new Error('OPA should allow the probe input')
  process.stdout.write(JSON.stringify(percentiles(await measure(10_000, ask))) + '\n')
  await pool.close()
} else {
  throw new Error('usage: authz-probe.ts inproc <bundle> | sidecar <opa-url>')
}
