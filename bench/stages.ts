import { existsSync } from 'node:fs'
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises'
import { cpus, loadavg } from 'node:os'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import { runWrk, type WrkResult } from './lib/load.js'
import { assertPortsFree, cpuSeconds, mainThreadCpuSeconds, start, stopAll, waitForPort } from './lib/procs.js'
import { gatewayYaml, GATEWAY_NODE_ARGS, PORTS, prepare } from './lib/setup.js'
import { LOAD_CPU, SUT_CPU } from './lib/stack.js'
import { stageRules } from './lib/stage-map.js'
import { sumProfiles, type CpuProfile, type HeapProfile, type ProfileSums } from './lib/stage-profile.js'
import { stagesMarkdown, type StageRun } from './lib/stages-md.js'
import { pinned, resolveTools } from './lib/tools.js'

/*
 * npm run bench:stages: where the CPU time and the allocations of one request go, stage by stage.
 * The bare proxy, Portcullis (scenario 4's config, ES256), Portcullis with the gateway assertion
 * (scenario 5a), with the shadow policy on every request (scenario 4s) and, last, Portcullis on Node's
 * default young generation (without GATEWAY_NODE_ARGS) run one after the other, each alone on CPU 1 with wrk and an nginx mTLS upstream on
 * CPU 0: a warm-up, one run without the profiler (the CPU per request as npm run bench measures it),
 * then one run of the same length under V8's CPU and sampling heap profilers (lib/profile-hook.mjs).
 * The samples are attributed to stages by lib/stage-map.ts and converted to µs and bytes per request.
 * Writes bench/STAGES.md and bench/stages.json; the raw profiles stay in bench/.work-stages/<id>/
 * (open cpu.cpuprofile in Chrome DevTools or speedscope for the flame graph).
 */

const HERE = fileURLToPath(new URL('.', import.meta.url))
const ROOT = fileURLToPath(new URL('..', import.meta.url))
const HOOK = pathToFileURL(`${HERE}lib/profile-hook.mjs`).href
const { values: opts } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '5' },
    connections: { type: 'string', default: '50' },
    'interval-us': { type: 'string', default: '500' }
  }
})
const SECONDS = Number(opts.duration)
const CONNECTIONS = Number(opts.connections)
const INTERVAL_US = Number(opts['interval-us'])
const command = `npm run bench:stages -- --duration ${SECONDS} --warmup ${opts.warmup} --connections ${CONNECTIONS} --interval-us ${INTERVAL_US}`
const log = (m: string): void => { process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${m}\n`) }

const dir = `${HERE}.work-stages`
await assertPortsFree([PORTS.stagesUpstream, PORTS.stagesBare, PORTS.stages, PORTS.stagesAdmin, PORTS.stagesAssertion, PORTS.stagesAssertionAdmin, PORTS.stagesShadow, PORTS.stagesShadowAdmin])
const tools = await resolveTools()
const work = await prepare(dir)
await writeFile(`${dir}/nginx-stages-upstream.conf`, (await readFile(`${dir}/nginx-upstream.conf`, 'utf8'))
  .replaceAll('nginx-upstream', 'nginx-stages-upstream').replace(/listen 127\.0\.0\.1:\d+/, `listen 127.0.0.1:${PORTS.stagesUpstream}`))
await writeFile(`${dir}/portcullis-stages.yaml`, gatewayYaml({ port: PORTS.stages, admin: PORTS.stagesAdmin, upstreamPort: PORTS.stagesUpstream, about: 'npm run bench:stages: scenario 4\'s config.' }))
await writeFile(`${dir}/portcullis-stages-shadow.yaml`, gatewayYaml({ port: PORTS.stagesShadow, admin: PORTS.stagesShadowAdmin, upstreamPort: PORTS.stagesUpstream, shadow: true, about: 'npm run bench:stages: scenario 4s\'s config (the shadow policy judging every request).' }))
await writeFile(`${dir}/portcullis-stages-assertion.yaml`, gatewayYaml({ port: PORTS.stagesAssertion, admin: PORTS.stagesAssertionAdmin, upstreamPort: PORTS.stagesUpstream, assertion: true, about: 'npm run bench:stages: scenario 5a\'s config (the gateway assertion on).' }))

const node = process.execPath
const gateway = (config: string): string[] => [node, ...GATEWAY_NODE_ARGS, '--import', HOOK, `${ROOT}dist/cli.js`, 'start', '-c', `${dir}/${config}`]
const auth = { authorization: `Bearer ${work.tokens.es256}` }
const targets = [
  { id: 'bare', label: 'bare proxy', port: PORTS.stagesBare, headers: {}, cmd: [node, '--import', 'tsx', '--import', HOOK, `${HERE}servers/bare-proxy.ts`, String(PORTS.stagesBare), `https://127.0.0.1:${PORTS.stagesUpstream}`, dir] },
  { id: 'portcullis', label: 'Portcullis, ES256', port: PORTS.stages, headers: auth, cmd: gateway('portcullis-stages.yaml') },
  { id: 'assertion', label: 'Portcullis, ES256, assertion', port: PORTS.stagesAssertion, headers: auth, cmd: gateway('portcullis-stages-assertion.yaml') },
  { id: 'shadow', label: 'Portcullis, ES256, shadow policy', port: PORTS.stagesShadow, headers: auth, cmd: gateway('portcullis-stages-shadow.yaml') },
  // What the young generation's size (GATEWAY_NODE_ARGS, src/lifecycle/node-flags.ts) is worth: the same
  // gateway as the second column, on Node's default.
  { id: 'default-gc', label: 'Portcullis, ES256, Node\'s default young generation', port: PORTS.stages, headers: auth, cmd: gateway('portcullis-stages.yaml').filter(a => !GATEWAY_NODE_ARGS.includes(a)) }
]

async function waitForFile (file: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`${file} did not appear within ${timeoutMs} ms`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
}

const failed = (r: WrkResult): number => r.errors + r.non2xx
const upstream = start('nginx-stages-upstream', pinned(tools, LOAD_CPU, [tools.nginx, '-c', `${dir}/nginx-stages-upstream.conf`, '-p', dir, '-e', `${dir}/nginx-stages-upstream.log`]))
const runs: StageRun[] = []
try {
  await waitForPort(PORTS.stagesUpstream)
  const rules = stageRules(pathToFileURL(`${ROOT}dist/`).href)
  for (const t of targets) {
    const profileDir = `${dir}/${t.id}`
    await rm(profileDir, { recursive: true, force: true })
    await mkdir(profileDir, { recursive: true })
    const proc = start(t.id, pinned(tools, SUT_CPU, t.cmd), { PORTCULLIS_BENCH_PROFILE_DIR: profileDir, PORTCULLIS_BENCH_CPU_INTERVAL_US: String(INTERVAL_US) })
    try {
      await waitForPort(t.port, 90_000)
      const url = `https://127.0.0.1:${t.port}/hello`
      const warm = await runWrk(tools, LOAD_CPU, url, t.headers, Number(opts.warmup), CONNECTIONS)
      // A refused request costs less than a forwarded one: a table built on refusals would mislead.
      if (warm.requests === 0 || failed(warm) > 0) throw new Error(`${t.label}: ${failed(warm)} of ${warm.requests} warm-up requests failed`)
      const pid = proc.child.pid!
      const before = cpuSeconds(proc.pids())
      const plain = await runWrk(tools, LOAD_CPU, url, t.headers, SECONDS, CONNECTIONS)
      const plainCpuUs = (cpuSeconds(proc.pids()) - before) * 1e6 / plain.requests

      proc.child.kill('SIGUSR2')
      await waitForFile(`${profileDir}/started`)
      const cpu0 = cpuSeconds(proc.pids())
      const main0 = mainThreadCpuSeconds(pid)
      const profiled = await runWrk(tools, LOAD_CPU, url, t.headers, SECONDS, CONNECTIONS)
      const cpuUs = (cpuSeconds(proc.pids()) - cpu0) * 1e6
      const mainUs = (mainThreadCpuSeconds(pid) - main0) * 1e6
      proc.child.kill('SIGUSR2')
      await waitForFile(`${profileDir}/stopped`)
      const cpuProfile = JSON.parse(await readFile(`${profileDir}/cpu.cpuprofile`, 'utf8')) as CpuProfile
      const heapProfile = JSON.parse(await readFile(`${profileDir}/heap.heapprofile`, 'utf8')) as HeapProfile
      const sums: ProfileSums = sumProfiles(cpuProfile, heapProfile, rules, pathToFileURL(ROOT).href)
      runs.push({ id: t.id, label: t.label, requests: profiled.requests, rps: profiled.rps, failed: failed(profiled), cpuUs, mainUs, plainCpuUsPerReq: plainCpuUs, plainRps: plain.rps, sums })
      log(`${t.label}: ${Math.round(plain.rps)} req/s and ${plainCpuUs.toFixed(0)} µs/req unprofiled; profiled ${Math.round(profiled.rps)} req/s, ${(cpuUs / profiled.requests).toFixed(0)} µs/req, ${cpuProfile.samples.length} samples`)
    } finally {
      await stopAll([proc])
    }
  }
} finally {
  await stopAll([upstream])
}

const meta = { command, date: new Date().toISOString(), seconds: SECONDS, connections: CONNECTIONS, intervalUs: INTERVAL_US, cpus: cpus().length, loadavg: loadavg() }
await writeFile(`${HERE}STAGES.md`, stagesMarkdown(meta, runs))
await writeFile(`${HERE}stages.json`, JSON.stringify({ ...meta, runs }, null, 2) + '\n')
log('wrote bench/STAGES.md and bench/stages.json')
