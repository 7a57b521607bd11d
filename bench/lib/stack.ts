import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Agent, request } from 'undici'
import { resolveOpa } from '../../scripts/opa.mjs'
import { assertPortsFree, rssMiB, start, stopAll, waitForPort, type Proc } from './procs.js'
import { GATEWAY_NODE_ARGS, PORTS, prepare, type Workdir } from './setup.js'
import { pinned, resolveTools, type Tools } from './tools.js'

/*
 * The systems under test, each pinned to CPU 1 while the load generator and the shared mTLS upstream
 * run on CPU 0, so every scenario gets the same single core and the same upstream. The two-CPU
 * scenarios (Portcullis --workers 2, the bare proxy in two workers) are pinned to both CPUs: on a
 * two-core machine they share CPU 0 with the load generator and the upstream, which stay where they
 * are for every scenario (RESULTS.md says so next to their figures).
 */

export const LOAD_CPU = 0
export const SUT_CPU = 1
export const BOTH_CPUS = `${LOAD_CPU},${SUT_CPU}`
const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const run = promisify(execFile)

export interface Scenario {
  id: string
  label: string
  url: string
  headers: Record<string, string>
  proc: Proc
  /** CPUs the system under test may use: 1 (CPU 1 alone) or 2 (both, shared with the load generator). */
  cpus: 1 | 2
  /** The bare proxy on the same CPUs: the reference for its ratio and its added latency. */
  bare: 'bare' | 'bare-2'
  /** Portcullis at all (as opposed to the reference proxies and the upstream itself). */
  gateway: boolean
}

export interface Stack {
  tools: Tools
  work: Workdir
  scenarios: Scenario[]
  /** Scenario 4h's target, for h2load (lib/h2.ts): scenario 4's config and route on a process of its own. */
  h2: Scenario
  procs: Record<'upstream' | 'direct' | 'nginx' | 'bare' | 'portcullis' | 'h2' | 'redis' | 'assertion' | 'redisStore' | 'workers' | 'bareCluster', Proc> & { baseline?: Proc }
  stop: () => Promise<void>
}

async function expectOk (url: string, headers: Record<string, string>, ca: string): Promise<void> {
  const dispatcher = new Agent({ connect: { ca } })
  try {
    const res = await request(url, { headers, dispatcher })
    const body = await res.body.text()
    if (res.statusCode !== 200) throw new Error(`${url} answered ${res.statusCode}: ${body}`)
  } finally {
    await dispatcher.close()
  }
}

/**
 * `baseline`: a checkout of another build of the gateway (its dist/ built), run on the same config
 * beside this one, so a change is compared with what it changes in the same run (scenario 4b).
 */
export async function startStack (dir: string, opts: { baseline?: string } = {}): Promise<Stack> {
  const tools = await resolveTools()
  await assertPortsFree([PORTS.upstream, PORTS.direct, PORTS.nginx, PORTS.bare, PORTS.portcullis, PORTS.portcullisAdmin, PORTS.assertion, PORTS.assertionAdmin,
    PORTS.redisStore, PORTS.redisStoreAdmin, PORTS.redis, PORTS.workers, PORTS.workersAdmin, PORTS.bareCluster, PORTS.h2, PORTS.h2Admin, PORTS.opa,
    ...(opts.baseline !== undefined ? [PORTS.baseline, PORTS.baselineAdmin] : [])])
  const work = await prepare(dir)
  const nginx = (name: string, cpu: number): Proc => start(name, pinned(tools, cpu, [tools.nginx, '-c', `${dir}/${name}.conf`, '-p', dir, '-e', `${dir}/${name}.log`]))
  const gateway = (name: string, cpu: number | string, args: string[] = []): Proc =>
    start(name, pinned(tools, cpu, [process.execPath, ...GATEWAY_NODE_ARGS, `${ROOT}dist/cli.js`, 'start', '-c', `${dir}/${name}.yaml`, ...args]))
  // Redis is another service, like the upstream: pinned with it and the load generator, its own CPU time not counted.
  const redis = start('redis', pinned(tools, LOAD_CPU, ['redis-server', '--port', String(PORTS.redis), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no']))
  await waitForPort(PORTS.redis).catch(async (err: unknown) => { await stopAll([redis]); throw err })
  const procs = {
    redis,
    upstream: nginx('nginx-upstream', LOAD_CPU),
    direct: nginx('nginx-direct', SUT_CPU),
    nginx: nginx('nginx-proxy', SUT_CPU),
    bare: start('bare-proxy', pinned(tools, SUT_CPU, [process.execPath, '--import', 'tsx', `${ROOT}bench/servers/bare-proxy.ts`,
      String(PORTS.bare), `https://127.0.0.1:${PORTS.upstream}`, dir])),
    portcullis: gateway('portcullis', SUT_CPU),
    // Apart from scenario 4's process, so that what HTTP/2 sessions leave in memory is not read as HTTP/1.1's RSS.
    h2: gateway('portcullis-h2', SUT_CPU),
    assertion: gateway('portcullis-assertion', SUT_CPU),
    redisStore: gateway('portcullis-redis', SUT_CPU),
    workers: gateway('portcullis-workers', BOTH_CPUS, ['--workers', '2']),
    bareCluster: start('bare-proxy-cluster', pinned(tools, BOTH_CPUS, [process.execPath, '--import', 'tsx', `${ROOT}bench/servers/bare-proxy-cluster.ts`,
      String(PORTS.bareCluster), `https://127.0.0.1:${PORTS.upstream}`, dir, '2'])),
    ...(opts.baseline !== undefined
      ? { baseline: start('portcullis-baseline', pinned(tools, SUT_CPU, [process.execPath, `${opts.baseline}/dist/cli.js`, 'start', '-c', `${dir}/portcullis-baseline.yaml`])) }
      : {})
  }
  const stop = async (): Promise<void> => {
    // redis-server has outlived SIGTERM and SIGKILL in stopAll before (see rate-limit.ts); it holds nothing.
    procs.redis.child.kill('SIGKILL')
    await stopAll(Object.values(procs))
  }
  try {
    // Ten Node processes (and three nginx) start on two shared cores at once: give them time.
    for (const port of [PORTS.upstream, PORTS.direct, PORTS.nginx, PORTS.bare, PORTS.portcullis, PORTS.h2, PORTS.assertion, PORTS.redisStore, PORTS.workers, PORTS.bareCluster,
      ...(procs.baseline !== undefined ? [PORTS.baseline] : [])]) await waitForPort(port, 90_000)
    const auth = (t: string): Record<string, string> => ({ authorization: `Bearer ${t}` })
    const url = (port: number): string => `https://127.0.0.1:${port}/hello`
    const one = { cpus: 1, bare: 'bare' } as const
    const es = auth(work.tokens.es256)
    const scenarios: Scenario[] = [
      { id: 'direct', label: '1 direct to upstream', url: url(PORTS.direct), headers: {}, proc: procs.direct, ...one, gateway: false },
      { id: 'bare', label: '2 Fastify + reply-from', url: url(PORTS.bare), headers: {}, proc: procs.bare, ...one, gateway: false },
      { id: 'nginx', label: '3 nginx reverse proxy', url: url(PORTS.nginx), headers: {}, proc: procs.nginx, ...one, gateway: false },
      { id: 'portcullis-rs256', label: '4 Portcullis, RS256', url: url(PORTS.portcullis), headers: auth(work.tokens.rs256), proc: procs.portcullis, ...one, gateway: true },
      { id: 'portcullis-es256', label: '4 Portcullis, ES256', url: url(PORTS.portcullis), headers: es, proc: procs.portcullis, ...one, gateway: true },
      ...(procs.baseline !== undefined
        ? [{ id: 'baseline-es256', label: `4b baseline (${opts.baseline}), ES256`, url: url(PORTS.baseline), headers: es, proc: procs.baseline, ...one, gateway: true }]
        : []),
      { id: 'assertion', label: '5a Portcullis, ES256, gateway assertion', url: url(PORTS.assertion), headers: es, proc: procs.assertion, ...one, gateway: true },
      { id: 'redis', label: '5b Portcullis, ES256, Redis store', url: url(PORTS.redisStore), headers: es, proc: procs.redisStore, ...one, gateway: true },
      { id: 'bare-2', label: '2×2 bare proxy, 2 workers, 2 CPUs', url: url(PORTS.bareCluster), headers: {}, proc: procs.bareCluster, cpus: 2, bare: 'bare-2', gateway: false },
      { id: 'workers-2', label: '5c Portcullis, ES256, --workers 2, 2 CPUs', url: url(PORTS.workers), headers: es, proc: procs.workers, cpus: 2, bare: 'bare-2', gateway: true }
    ]
    const h2 = { ...scenarios.find(s => s.id === 'portcullis-es256')!, url: url(PORTS.h2), proc: procs.h2 }
    const ca = readFileSync(`${dir}/ca.crt`, 'utf8')
    for (const s of [...scenarios, h2]) await expectOk(s.url, s.headers, ca)
    return { tools, work, scenarios, h2, procs, stop }
  } catch (err) {
    await stop()
    throw err
  }
}

/**
 * `opa run --server` with the same policies, pinned like the other systems under test (scenario 6).
 * A sidecar OPA evaluates Rego with its interpreter (its WASM engine is not in the standard build), so
 * it gets the same sources as a regular (rego) bundle, built by the same pinned OPA.
 */
export async function startOpaServer (tools: Tools, dir: string): Promise<{ url: string, proc: Proc }> {
  const opa = await resolveOpa()
  const bundle = `${dir}/rego-bundle.tar.gz`
  await run(opa, ['build', '-t', 'rego', '--ignore', '*_test.rego', '--ignore', '*.schema.json', '--ignore', 'capabilities.json',
    '-o', bundle, '.'], { cwd: `${ROOT}policies` })
  const proc = start('opa-server', pinned(tools, SUT_CPU, [opa, 'run', '--server', '--addr', `127.0.0.1:${PORTS.opa}`,
    '--log-level', 'error', '--skip-version-check', '--bundle', bundle]))
  await waitForPort(PORTS.opa)
  return { url: `http://127.0.0.1:${PORTS.opa}`, proc }
}

export { rssMiB }
