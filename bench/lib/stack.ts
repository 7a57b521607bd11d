import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Agent, request } from 'undici'
import { resolveOpa } from '../../scripts/opa.mjs'
import { rssMiB, start, stopAll, waitForPort, type Proc } from './procs.js'
import { PORTS, prepare, type Workdir } from './setup.js'
import { pinned, resolveTools, type Tools } from './tools.js'

/*
 * The systems under test, each pinned to CPU 1 while the load generator and the shared mTLS upstream
 * run on CPU 0, so every scenario gets the same single core and the same upstream.
 */

export const LOAD_CPU = 0
export const SUT_CPU = 1
const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const run = promisify(execFile)

export interface Scenario { id: string, label: string, url: string, headers: Record<string, string>, proc: Proc }

export interface Stack {
  tools: Tools
  work: Workdir
  scenarios: Scenario[]
  procs: Record<'upstream' | 'direct' | 'nginx' | 'bare' | 'portcullis', Proc> & { baseline?: Proc }
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
  const work = await prepare(dir)
  const nginx = (name: string, cpu: number): Proc => start(name, pinned(tools, cpu, [tools.nginx, '-c', `${dir}/${name}.conf`, '-p', dir, '-e', `${dir}/${name}.log`]))
  const procs = {
    upstream: nginx('nginx-upstream', LOAD_CPU),
    direct: nginx('nginx-direct', SUT_CPU),
    nginx: nginx('nginx-proxy', SUT_CPU),
    bare: start('bare-proxy', pinned(tools, SUT_CPU, [process.execPath, '--import', 'tsx', `${ROOT}bench/servers/bare-proxy.ts`,
      String(PORTS.bare), `https://127.0.0.1:${PORTS.upstream}`, dir])),
    portcullis: start('portcullis', pinned(tools, SUT_CPU, [process.execPath, `${ROOT}dist/cli.js`, 'start', '-c', `${dir}/portcullis.yaml`])),
    ...(opts.baseline !== undefined
      ? { baseline: start('portcullis-baseline', pinned(tools, SUT_CPU, [process.execPath, `${opts.baseline}/dist/cli.js`, 'start', '-c', `${dir}/portcullis-baseline.yaml`])) }
      : {})
  }
  const stop = async (): Promise<void> => stopAll(Object.values(procs))
  try {
    for (const port of [PORTS.upstream, PORTS.direct, PORTS.nginx, PORTS.bare, PORTS.portcullis, ...(procs.baseline !== undefined ? [PORTS.baseline] : [])]) await waitForPort(port)
    const auth = (t: string): Record<string, string> => ({ authorization: `Bearer ${t}` })
    const scenarios: Scenario[] = [
      { id: 'direct', label: '1 direct to upstream', url: `https://127.0.0.1:${PORTS.direct}/hello`, headers: {}, proc: procs.direct },
      { id: 'bare', label: '2 Fastify + reply-from', url: `https://127.0.0.1:${PORTS.bare}/hello`, headers: {}, proc: procs.bare },
      { id: 'nginx', label: '3 nginx reverse proxy', url: `https://127.0.0.1:${PORTS.nginx}/hello`, headers: {}, proc: procs.nginx },
      { id: 'portcullis-rs256', label: '4 Portcullis, RS256', url: `https://127.0.0.1:${PORTS.portcullis}/hello`, headers: auth(work.tokens.rs256), proc: procs.portcullis },
      { id: 'portcullis-es256', label: '4 Portcullis, ES256', url: `https://127.0.0.1:${PORTS.portcullis}/hello`, headers: auth(work.tokens.es256), proc: procs.portcullis },
      ...(procs.baseline !== undefined
        ? [{ id: 'baseline-es256', label: `4b baseline (${opts.baseline}), ES256`, url: `https://127.0.0.1:${PORTS.baseline}/hello`, headers: auth(work.tokens.es256), proc: procs.baseline }]
        : [])
    ]
    const ca = readFileSync(`${dir}/ca.crt`, 'utf8')
    for (const s of scenarios) await expectOk(s.url, s.headers, ca)
    return { tools, work, scenarios, procs, stop }
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
