/*
 * What it costs to bound a policy evaluation in time, per decision, for each way Node offers
 * (issue 18). Results: bench/POLICY-ENGINE.md.
 *
 *   npm run policy:build && node --import tsx bench/policy-engine.ts [--time 1000]
 *
 * Every row evaluates the shipped gateway/authz/decision on the same small input as bench/micro.ts:
 *   direct            the engine as used for policies without risky builtins (no guard)
 *   vm watchdog       the engine as used for guarded policies: vm.Script.runInContext({ timeout })
 *   worker, sync      evaluation in a worker thread, the event loop blocked in Atomics.wait(timeout)
 *                     on a SharedArrayBuffer (on timeout: worker.terminate() and a new worker)
 *   worker, async     evaluation in a worker thread through postMessage (event loop free meanwhile)
 *   new instance      what replacing a faulted instance costs (instantiate the compiled module + setData)
 */
import { Worker } from 'node:worker_threads'
import { createRequire } from 'node:module'
import { Bench } from 'tinybench'
import { buildBundle } from '../scripts/opa.mjs'
import { readBundleFile } from '../src/pipeline/authorize/bundle.js'
import { createPolicyEngine } from '../src/pipeline/authorize/policy-engine.js'
import { wasm } from '../src/pipeline/authorize/evaluation-guard.js'

const timeIdx = process.argv.indexOf('--time')
const time = timeIdx === -1 ? 1000 : Number(process.argv[timeIdx + 1])
let sink: unknown

const { out } = await buildBundle({})
const bundle = await readBundleFile(out)
const direct = await createPolicyEngine(bundle, 'gateway/authz/decision')
const guarded = await createPolicyEngine(bundle, 'gateway/authz/decision', { guard: 'always', timeoutMs: 100 })
const input = {
  method: 'GET', path: '/orders/123', segments: ['orders', '123'], query: {}, headers: { accept: 'application/json' },
  client: { ip: '203.0.113.7' }, tls: { client_certificate: null },
  principal: { type: 'jwt', issuer: 'https://idp.example', subject: 'alice', claims: { sub: 'alice', roles: ['reader'] } },
  route: { id: 'orders', metadata: {} }, time_ns: Date.now() * 1_000_000
}
if ((direct.evaluate(input) as { allow?: boolean }).allow !== true) throw new Error('the benchmark input must be allowed')

// The worker variants run the SDK on the same compiled module with the same data.
const module = await wasm.compile(bundle.wasm)
const sdk = createRequire(import.meta.url).resolve('@open-policy-agent/opa-wasm')
const WORKER_SYNC = `
const { workerData } = require('node:worker_threads')
const { loadPolicySync } = require(workerData.sdk)
const p = loadPolicySync(workerData.module, undefined, { 'time.now_ns': () => Date.now() * 1e6 })
p.setData(workerData.data)
const ctl = new Int32Array(workerData.sab, 0, 2)
const bytes = new Uint8Array(workerData.sab, 8)
const enc = new TextEncoder()
for (;;) {
  for (let v = Atomics.load(ctl, 0); v !== 1; v = Atomics.load(ctl, 0)) Atomics.wait(ctl, 0, v)
  const r = p.evaluate(bytes.slice(0, ctl[1]).buffer, 0)
  ctl[1] = enc.encodeInto(JSON.stringify(r), bytes).written
  Atomics.store(ctl, 0, 2)
  Atomics.notify(ctl, 0)
}`
const WORKER_ASYNC = `
const { workerData, parentPort } = require('node:worker_threads')
const { loadPolicySync } = require(workerData.sdk)
const p = loadPolicySync(workerData.module, undefined, { 'time.now_ns': () => Date.now() * 1e6 })
p.setData(workerData.data)
parentPort.on('message', m => parentPort.postMessage(p.evaluate(m, 0)))`

const sab = new SharedArrayBuffer(1 << 20)
const ctl = new Int32Array(sab, 0, 2)
const bytes = new Uint8Array(sab, 8)
const syncWorker = new Worker(WORKER_SYNC, { eval: true, workerData: { sdk, module, data: bundle.data, sab } })
const asyncWorker = new Worker(WORKER_ASYNC, { eval: true, workerData: { sdk, module, data: bundle.data } })
const enc = new TextEncoder()
const dec = new TextDecoder()
const evaluateInWorkerSync = (x: unknown): unknown => {
  ctl[1] = enc.encodeInto(JSON.stringify(x), bytes).written
  Atomics.store(ctl, 0, 1)
  Atomics.notify(ctl, 0)
  if (Atomics.wait(ctl, 0, 1, 100) === 'timed-out') throw new Error('timed out')
  const result: unknown = JSON.parse(dec.decode(bytes.slice(0, ctl[1])))
  Atomics.store(ctl, 0, 0)
  return result
}
const evaluateInWorkerAsync = async (x: unknown): Promise<unknown> => new Promise(resolve => {
  asyncWorker.once('message', resolve)
  asyncWorker.postMessage(x)
})
await evaluateInWorkerAsync(input)
evaluateInWorkerSync(input)

const { loadPolicySync } = createRequire(import.meta.url)('@open-policy-agent/opa-wasm') as typeof import('@open-policy-agent/opa-wasm')
const data = new TextEncoder().encode(JSON.stringify(bundle.data)).buffer

const bench = new Bench({ time, warmupTime: 250, throws: true, subtractTimerOverhead: true })
bench
  .add('direct (unguarded)', () => { sink = direct.evaluate(input) })
  .add('vm watchdog (guarded)', () => { sink = guarded.evaluate(input) })
  .add('worker, sync (SAB + Atomics.wait)', () => { sink = evaluateInWorkerSync(input) })
  .add('worker, async (postMessage)', async () => { sink = await evaluateInWorkerAsync(input) })
  .add('new instance from the compiled module', () => { const p = loadPolicySync(module, undefined, {}); p.setData(data); sink = p })
await bench.run()
await syncWorker.terminate()
await asyncWorker.terminate()

console.log(`Node ${process.version}, ${new Date().toISOString()}, load average ${(await import('node:os')).loadavg().map(l => l.toFixed(2)).join(' ')}`)
console.log('| task | p50 ns | p99 ns | mean ns | samples |\n|---|---:|---:|---:|---:|')
for (const task of bench.tasks) {
  const r = task.result
  if (r.state !== 'completed') throw new Error(`${task.name}: ${r.state}`)
  const { latency } = r
  const f = (ms: number | undefined): string => Math.round((ms ?? NaN) * 1e6).toLocaleString('en-US')
  console.log(`| ${task.name} | ${f(latency.p50)} | ${f(latency.p99)} | ${f(latency.mean)} | ${latency.samplesCount} |`)
}
void sink
