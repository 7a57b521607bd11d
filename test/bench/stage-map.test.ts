import t from 'tap'
import { categorize, stageRules, type Frame } from '../../bench/lib/stage-map.js'
import { sumProfiles, type CpuProfile, type HeapProfile } from '../../bench/lib/stage-profile.js'
import { cpuPerRequest, type StageRun } from '../../bench/lib/stages-md.js'

// npm run bench:stages charges each profile sample to a stage; these are the stacks it must get right
// (innermost frame first, as categorize takes them), so that the bare proxy and the gateway compare.
const DIST = 'file:///repo/dist/'
const rules = stageRules(DIST)
const mods = 'file:///shared/node_modules/'
const f = (url: string, functionName = 'fn'): Frame => ({ functionName, url })
const listener = f(`${DIST}lifecycle/listener.js`, 'dispatch')
const hooks = f(`${mods}fastify/lib/hooks.js`, 'hookIterator')

t.test('a stage is charged with the libraries it calls, down to the next stage', async t => {
  t.equal(categorize([f(`${mods}fast-jwt/src/verifier.js`), f(`${DIST}pipeline/authenticate/jwt.js`), hooks, listener], rules), 'authenticate')
  t.equal(categorize([f('node:_tls_wrap'), f(`${mods}undici/lib/dispatcher/client-h1.js`), f(`${DIST}pipeline/forward/forwarder.js`)], rules), 'forward')
  t.equal(categorize([f('node:crypto'), f(`${DIST}pipeline/forward/credentials/assertion.js`), f(`${DIST}pipeline/forward/forwarder.js`)], rules), 'credentials')
  t.equal(categorize([f(`${mods}prom-client/lib/histogram.js`), f(`${DIST}observability/plugin.js`)], rules), 'metrics')
  t.equal(categorize([f(`${DIST}observability/plugin.js`), hooks], rules), 'access log')
  t.equal(categorize([f(`${mods}sonic-boom/index.js`), f('node:internal/process/task_queues')], rules), 'access log')
})

t.test('code without an owner counts where it ran, not for the listener that dispatched it', async t => {
  t.equal(categorize([f(`${mods}fastify/lib/route.js`, 'routeHandler'), f(`${mods}find-my-way/index.js`), listener, f('node:_http_server')], rules), 'Fastify (router, hooks, reply)')
  t.equal(categorize([f('node:_tls_wrap'), f('node:_http_outgoing'), f(`${mods}fastify/lib/reply.js`), listener], rules), 'Node: TLS')
  t.equal(categorize([f(`${DIST}app.js`, 'closeIfSilent'), f('node:events')], rules), 'gateway, other (app, server, lifecycle)')
})

t.test('builtins and WASM count for their caller; V8 pseudo-frames have categories of their own', async t => {
  const wasm = f('wasm://wasm/7b3c1a2e')
  t.equal(categorize([wasm, f(`${mods}@open-policy-agent/opa-wasm/src/opa.js`), f(`${DIST}pipeline/authorize/plugin.js`)], rules), 'authorize')
  t.equal(categorize([wasm, f(`${mods}undici/lib/dispatcher/client-h1.js`)], rules), 'forward')
  t.equal(categorize([f('', 'writev'), f('node:internal/stream_base_commons')], rules), 'Node: net, streams, timers, promises')
  t.equal(categorize([f('', '(garbage collector)')], rules), 'GC (main thread)')
  t.equal(categorize([f('', '(idle)')], rules), 'idle')
  t.equal(categorize([f('file:///elsewhere/x.js')], rules), 'unattributed')
})

t.test("the bare proxy's handler and reply-from count as forward, like the gateway's forwarder", async t => {
  t.equal(categorize([f(`${mods}@fastify/reply-from/index.js`), f('file:///repo/bench/servers/bare-proxy.ts')], rules), 'forward')
})

t.test('samples become µs per request that add up to the measured CPU per request', async t => {
  const frame = (id: number, url: string, functionName = 'fn', children: number[] = []) => ({ id, callFrame: { functionName, url, lineNumber: 0 }, children })
  const cpu: CpuProfile = {
    nodes: [
      frame(1, '', '(root)', [2, 4, 5]),
      frame(2, `${DIST}pipeline/authorize/plugin.js`, 'authorize', [3]),
      frame(3, `${mods}@open-policy-agent/opa-wasm/src/opa.js`, 'evaluate'),
      frame(4, '', '(idle)'),
      frame(5, `${mods}fastify/lib/route.js`, 'routeHandler')
    ],
    // 3 authorize (2 in opa-wasm), 1 Fastify, 4 idle: 4 busy samples.
    samples: [2, 3, 3, 5, 4, 4, 4, 4],
    timeDeltas: [500, 500, 500, 500, 500, 500, 500, 500]
  }
  const heap: HeapProfile = {
    head: { callFrame: { functionName: '(root)', url: '', lineNumber: 0 }, selfSize: 0, children: [
      { callFrame: { functionName: 'evaluate', url: `${mods}@open-policy-agent/opa-wasm/src/opa.js`, lineNumber: 0 }, selfSize: 4096, children: [] }
    ] }
  }
  const sums = sumProfiles(cpu, heap, rules, 'file:///repo/')
  t.same(sums.samples, { authorize: 3, 'Fastify (router, hooks, reply)': 1, idle: 4 })
  t.same(sums.bytes, { authorize: 4096 })
  t.equal(sums.topSelf[0]!.fn, 'evaluate')
  t.equal(sums.topSelf[0]!.value, 2)
  // 100 requests; the main thread used 40 ms, the process 50 ms: 400 µs main-thread CPU per request.
  const run: StageRun = { id: 'x', label: 'x', requests: 100, rps: 1, failed: 0, cpuUs: 50_000, mainUs: 40_000, plainCpuUsPerReq: 0, plainRps: 0, sums }
  const us = cpuPerRequest(run)
  t.equal(us.authorize, 300)
  t.equal(us['Fastify (router, hooks, reply)'], 100)
  t.equal(us['other threads (GC helpers, JIT compilers, libuv pool)'], 100)
  t.equal(Object.values(us).reduce((a, b) => a + b, 0), 500)
})
