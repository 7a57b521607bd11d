import t from 'tap'
import { exchangeH2 } from '../helpers/h2-exchange.js'
import { exchange, type Exchange } from '../helpers/raw-http.js'
import { answerOk, type Responder } from '../helpers/recording-upstream.js'
import { startSecurityHarness } from '../helpers/security.js'

// Issue #21: one caller cannot keep the others out of a function's queue. The function has one
// connection and room for three waiting requests; mallory (a valid token of her own) fills all of it,
// then alice's request still gets in, over HTTP/1.1 and over HTTP/2 alike. Real gateway, real TLS,
// a function that answers only when the test lets it.

const h = await startSecurityHarness(t, {
  configure: raw => Object.assign(raw.upstreams[0], { connections: 1, maxQueue: 3, queueTimeoutMs: 60_000, queueFairness: 'per-identity' })
})
const held: Array<() => void> = []
const hold: Responder = (socket, request) => { held.push(() => answerOk(socket, request)) }
h.stub.respond = hold
t.teardown(() => { h.stub.respond = answerOk; for (const release of held.splice(0)) release() })
const mallory = `Authorization: Bearer ${await h.demo.token({ sub: 'mallory' })}`

const queued = async (): Promise<number> => Number(/^portcullis_upstream_queued_requests\{[^}]*\} (\d+)$/m.exec(await h.metrics())?.[1] ?? 0)
async function until (what: string, ok: () => Promise<boolean> | boolean): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await ok()) return
    await new Promise(resolve => setTimeout(resolve, 20))
  }
  throw new Error(`timed out waiting for ${what}`)
}
const codeOf = (ex: Exchange): string | undefined => /"code":"(\w+)"/.exec(ex.responses[0]?.body ?? '')?.[1]

for (const protocol of ['http/1.1', 'h2'] as const) {
  t.test(`over ${protocol}: a caller holding the whole queue gives way to another caller`, async t => {
    const send = async (auth: string, path: string): Promise<Exchange> => {
      const bytes = [`GET ${path} HTTP/1.1`, 'Host: localhost', auth, '', ''].join('\r\n')
      return protocol === 'h2' ? exchangeH2(h.port, h.ca, bytes, 30_000) : exchange(t, h.port, h.ca, bytes, { timeoutMs: 30_000 })
    }
    const tag = protocol === 'h2' ? 'h2' : 'h1'
    const arrived = (): string[] => h.stub.requests.map(r => /^GET (\S+)/.exec(r)?.[1] ?? '').filter(p => p.startsWith(`/public/${tag}-`))
    const m0 = send(mallory, `/public/${tag}-m0`)
    await until('m0 at the function', () => arrived().length === 1)
    const waiting: Array<Promise<Exchange>> = []
    for (let i = 1; i <= 3; i++) {
      waiting.push(send(mallory, `/public/${tag}-m${i}`))
      await until(`m${i} queued`, async () => await queued() === i)
    }
    const m4 = await send(mallory, `/public/${tag}-m4`)
    t.equal(m4.responses[0]?.status, 503, 'mallory, holding the whole queue, is refused more of it')
    t.equal(codeOf(m4), 'GW_ERR_UPSTREAM_BUSY')
    const a1 = send(h.auth, `/public/${tag}-a1`)
    const displaced = await waiting[2]!
    t.equal(displaced.responses[0]?.status, 503, 'mallory\'s newest waiting request made room for alice')
    t.equal(codeOf(displaced), 'GW_ERR_UPSTREAM_BUSY')
    t.equal(await queued(), 3, 'alice waits in its place')
    for (let served = 1; served <= 4; served++) {
      await until(`request ${served} at the function`, () => arrived().length === served && held.length > 0)
      held.shift()!()
    }
    const answers = await Promise.all([m0, waiting[0]!, a1, waiting[1]!])
    t.same(answers.map(a => a.responses[0]?.status), [200, 200, 200, 200], 'the others are all served')
    t.same(arrived(), [`/public/${tag}-m0`, `/public/${tag}-m1`, `/public/${tag}-a1`, `/public/${tag}-m2`], 'in turn by caller: alice goes after one of mallory\'s, not after all of them')
  })
}
