import t from 'tap'
import { copyFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { startDemoHarness } from '../helpers/demo.js'
import { opaBuild } from '../helpers/signed-bundles.js'

// Bundles swapped while requests are in flight: none fails, and each is judged wholly by one policy
// (the generation header comes from the policy's own decision).

const POLICY = `package gateway.authz

default decision := {"allow": false, "reasons": ["swap.deny"]}

decision := {
	"allow": true,
	"reasons": ["swap.allow"],
	"headers": {"client": {"x-policy-generation": data.generation}},
} if input.principal.subject == "alice"
`

t.test('hot swap under concurrent load: zero failed requests, every answer from one whole policy', async t => {
  const dir = t.testdir()
  const bundles = {
    a: await opaBuild(t, { rego: POLICY, data: { generation: 'a' }, revision: 'gen-a' }),
    b: await opaBuild(t, { rego: POLICY, data: { generation: 'b' }, revision: 'gen-b' })
  }
  const active = join(dir, 'bundle.tar.gz')
  await copyFile(bundles.a, active)
  const demo = await startDemoHarness(t, { bundle: active, configure: c => { c.rateLimit = {} } })
  const policy = demo.gateway.gateway.policy
  const token = await demo.token({ sub: 'alice' })

  const statuses = new Map<number, number>()
  const generations = new Map<string, number>()
  let running = true
  const worker = async (): Promise<void> => {
    while (running) {
      const res = await demo.client.send(`${demo.url}/hello`, { token })
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1)
      const g = String(res.headers['x-policy-generation'])
      generations.set(g, (generations.get(g) ?? 0) + 1)
    }
  }
  const workers = Array.from({ length: 8 }, worker)
  const swaps: string[] = []
  for (let i = 0; i < 12; i++) {
    const next = i % 2 === 0 ? 'b' : 'a'
    // Written beside and renamed, as a deploy would; then loaded as the watcher would.
    await copyFile(bundles[next], `${active}.tmp`)
    await rename(`${active}.tmp`, active)
    t.equal(await policy.reload(), true, `swap ${i} to ${next}`)
    swaps.push(policy.current!.revision)
    // Let some requests through under each policy before the next swap.
    const before = [...statuses.values()].reduce((a, b) => a + b, 0)
    while ([...statuses.values()].reduce((a, b) => a + b, 0) < before + 20) await new Promise(resolve => setImmediate(resolve))
  }
  running = false
  await Promise.all(workers)

  const total = [...statuses.values()].reduce((a, b) => a + b, 0)
  t.same([...statuses.keys()], [200], `all ${total} requests answered 200`)
  t.same([...generations.keys()].sort(), ['a', 'b'], 'both policies answered, and nothing else')
  t.same(swaps, Array.from({ length: 12 }, (_, i) => i % 2 === 0 ? 'gen-b' : 'gen-a'))
})
