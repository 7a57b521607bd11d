import t from 'tap'
import { readFile } from 'node:fs/promises'
import { upstreamCalls } from '../helpers/authn.js'
import { startDemoHarness } from '../helpers/demo.js'
import { exchange } from './fuzz/raw.js'

// Replays the corpus that `npm run fuzz:edge` collected (one input per distinct outcome, and any
// input that once broke an invariant) against the real gateway: each must get the same answer, a
// refusal must be the gateway's JSON error, and nothing refused may reach the function.

interface Entry { request: string, status: number | null, code: string | null, violation?: string }
const corpus = JSON.parse(await readFile(new URL('./fuzz/corpus.json', import.meta.url), 'utf8')) as Entry[]

t.test(`the fuzz corpus (${corpus.length} inputs) replays with the recorded outcomes`, async t => {
  t.ok(corpus.length > 0, 'the corpus is not empty')
  const demo = await startDemoHarness(t, { configure: raw => { raw.rateLimit = {} } })
  const token = await demo.token({ sub: 'fuzz', roles: ['admin'] })
  const port = Number(new URL(demo.url).port)
  const ca = await readFile(demo.paths.caCert)
  for (const [i, entry] of corpus.entries()) {
    const name = `#${i} ${JSON.stringify(entry.request.slice(0, 40))}`
    const before = await upstreamCalls(demo)
    const r = await exchange(port, ca, entry.request, token)
    const forwarded = (await upstreamCalls(demo)) - before
    t.equal(r.status, entry.status, `${name}: status ${String(entry.status)}`)
    t.equal(r.code, entry.code, `${name}: code ${String(entry.code)}`)
    if (r.status !== null && r.status >= 400) t.ok(r.shapeOk, `${name}: the gateway's error body`)
    t.ok(forwarded <= r.successes, `${name}: the function saw no request the client was not answered for (${forwarded} forwarded, ${r.successes} answered)`)
    t.equal((await demo.client.send(`${demo.adminUrl}/healthz`)).status, 200, `${name}: gateway still up`)
  }
})
