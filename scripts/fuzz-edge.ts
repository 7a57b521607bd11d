import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { startDemo } from '../src/demo/run.js'
import { mintDemoToken } from '../src/demo/token.js'
import { exchange, mutate, prng, SEEDS } from '../test/security/fuzz/raw.js'

/*
 * npm run fuzz:edge: mutates raw requests (seeded, reproducible) against the real demo gateway and
 * checks the edge invariants on every one: a refusal is the gateway's JSON error, a refused request
 * never reaches the function, and the gateway stays up. Each input with a new outcome (status and
 * code) is added to test/security/fuzz/corpus.json, which `npm test` replays; a violation is saved
 * there too and the run fails. Usage: npm run fuzz:edge -- --seconds 60 --seed 1
 */

const CORPUS = fileURLToPath(new URL('../test/security/fuzz/corpus.json', import.meta.url))
const { values } = parseArgs({ options: { seconds: { type: 'string', default: '60' }, seed: { type: 'string', default: String(Date.now() % 1e9) } } })
const seed = Number(values.seed)
const random = prng(seed)

interface Entry { request: string, status: number | null, code: string | null, violation?: string }
const corpus: Entry[] = JSON.parse(await readFile(CORPUS, 'utf8').catch(() => '[]')) as Entry[]
const seen = new Set(corpus.map(e => `${e.status}|${e.code}`))

const dir = await mkdtemp(join(tmpdir(), 'portcullis-fuzz-'))
const demo = await startDemo({ dir, ports: { gateway: 0, admin: 0, issuer: 0, fn: 0 }, logLevel: 'silent', bundleWatchIntervalMs: 0, configure: raw => { raw.rateLimit = {} } })
const port = Number(new URL(demo.gateway.url).port)
const ca = await readFile(demo.paths.caCert)
const token = await mintDemoToken(demo.paths, { sub: 'fuzz', roles: ['admin'], ttl: 3600, claims: {} })
const upstreamCalls = async (): Promise<number> => {
  const text = await (await fetch(`${demo.gateway.adminUrl}/metrics`)).text()
  return [...text.matchAll(/portcullis_upstream_duration_seconds_count\{[^}]*\} (\d+)/g)].reduce((a, m) => a + Number(m[1]), 0)
}

let runs = 0
let violations = 0
const deadline = Date.now() + Number(values.seconds) * 1000
try {
  while (Date.now() < deadline) {
    const request = mutate(SEEDS[Math.floor(random() * SEEDS.length)]!, random)
    const before = await upstreamCalls()
    const r = await exchange(port, ca, request, token)
    const forwarded = (await upstreamCalls()) - before
    const alive = (await fetch(`${demo.gateway.adminUrl}/healthz`)).ok
    runs++
    const violation = !alive
      ? 'gateway stopped answering'
      : r.status !== null && r.status >= 400 && (r.code === null || !r.shapeOk)
        ? 'a refusal without the gateway error body'
        : r.status !== null && r.status >= 400 && r.responses === 1 && forwarded > 0
          ? 'a refused request reached the function'
          : forwarded > r.successes ? 'the function saw a request whose answer the client never got' : undefined
    const key = `${r.status}|${r.code}`
    if (violation !== undefined || !seen.has(key)) {
      seen.add(key)
      corpus.push({ request, status: r.status, code: r.code, ...(violation !== undefined ? { violation } : {}) })
      if (violation !== undefined) {
        violations++
        process.stderr.write(`VIOLATION (${violation}): ${JSON.stringify(request)}\n`)
      }
    }
  }
} finally {
  await demo.close()
  await rm(dir, { recursive: true, force: true })
}
await writeFile(CORPUS, JSON.stringify(corpus, null, 2) + '\n')
process.stderr.write(`seed ${seed}: ${runs} inputs, ${corpus.length} in the corpus, ${violations} violations\n`)
process.exit(violations > 0 ? 1 : 0)
