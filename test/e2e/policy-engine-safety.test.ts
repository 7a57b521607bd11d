import t from 'tap'
import { execFile } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { httpsClient } from '../helpers/http.js'
import { BASE_CONFIG, gatewayFiles, startGatewayProcess, startPlainUpstream } from '../helpers/gateway-process.js'

// Issue 18: a policy using each construct that used to trap the WASM instance or hang the event loop
// is either refused by `portcullis policy build` with a message naming the builtin, or, served by a
// real `portcullis start`, fails only the request that hits it (503, coded) while the requests right
// after it are answered normally.

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname
const run = promisify(execFile)

interface Construct {
  builtin: string
  /** Rego expression over `s`, the request's ?s= value. */
  expr: string
  /** The ?s= value that makes it trap, abort or loop. */
  trigger: string
  code: 'GW_ERR_AUTHZ_POLICY_ABORTED' | 'GW_ERR_AUTHZ_POLICY_TIMEOUT'
  reason: 'trap' | 'abort' | 'timeout'
}

const CONSTRUCTS: Construct[] = [
  { builtin: 'json.is_valid', expr: 'json.is_valid(s)', trigger: 'true', code: 'GW_ERR_AUTHZ_POLICY_ABORTED', reason: 'trap' },
  { builtin: 'replace', expr: 'replace("abc", s, "x")', trigger: '', code: 'GW_ERR_AUTHZ_POLICY_TIMEOUT', reason: 'timeout' },
  { builtin: 'json.remove', expr: 'json.remove({"a": 1}, [s])', trigger: '', code: 'GW_ERR_AUTHZ_POLICY_ABORTED', reason: 'trap' },
  { builtin: 'json.filter', expr: 'json.filter({"a": 1}, [s])', trigger: '', code: 'GW_ERR_AUTHZ_POLICY_ABORTED', reason: 'trap' },
  { builtin: 'format_int', expr: 'format_int(to_number(s), 10)', trigger: '1e30', code: 'GW_ERR_AUTHZ_POLICY_ABORTED', reason: 'abort' },
  // Still allowed (it agrees with OPA), but its cost grows with its input: the evaluation is timed.
  // (n = the length of s: to_number is refused, see policy-authoring.md#builtins; 60 characters → 60⁴ numbers.)
  { builtin: 'numbers.range', expr: 'count(numbers.range(1, ((count(s) * count(s)) * count(s)) * count(s))) > 0', trigger: 'x'.repeat(60), code: 'GW_ERR_AUTHZ_POLICY_TIMEOUT', reason: 'timeout' }
]

// One policy for all: ?b=<builtin> picks the construct, ?s= its argument. Requests without ?s= never
// reach a builtin; with it, the builtin's value is only computed.
const policy = (constructs: Construct[]): string => `package gateway.authz

decision := {"allow": true, "reasons": ["plain"]} if not input.query.s
${constructs.map(c => `
decision := {"allow": true, "reasons": ["computed"]} if {
	input.query.b[0] == ${JSON.stringify(c.builtin)}
	s := input.query.s[0]
	_ := ${c.expr}
}
`).join('')}`

async function build (dir: string, constructs: Construct[]): Promise<{ bundle: string, refused: string | null }> {
  const policies = join(dir, 'policies', 'gateway')
  await mkdir(policies, { recursive: true })
  await writeFile(join(policies, 'authz.rego'), policy(constructs))
  const bundle = join(dir, 'bundle.tar.gz')
  const refused = await run(process.execPath, [CLI, 'policy', 'build', '-d', join(dir, 'policies'), '-o', bundle])
    .then(() => null, (err: { stderr: string }) => err.stderr)
  return { bundle, refused }
}

t.test('each formerly dangerous construct is refused at build, or fails only the request that hits it', async t => {
  const files = await gatewayFiles(t)
  let served = CONSTRUCTS
  let { bundle, refused } = await build(files.dir, served)
  if (refused !== null) {
    // Some are refused: each alone must be refused naming its builtin, or build; the rest are served.
    served = []
    for (const c of CONSTRUCTS) {
      const alone = await build(join(files.dir, c.builtin), [c])
      if (alone.refused === null) served.push(c)
      else t.match(alone.refused, c.builtin, `${c.builtin}: the build names the builtin it refuses`)
    }
    ;({ bundle, refused } = await build(files.dir, served))
    t.equal(refused, null, 'the constructs that build alone build together')
  }

  const fn = await startPlainUpstream(t, 'fn')
  await writeFile(files.configFile, `
${BASE_CONFIG}
policy: { bundle: "${bundle}", evaluationTimeoutMs: 200 }
upstreams: [{ id: fn, url: "${fn.url}", plaintext: true }]
routes:
  - { id: hello, prefix: /hello, methods: [GET], upstream: fn, ban: { enabled: false } }
`)
  const gw = await startGatewayProcess(t, files.configFile)
  const client = httpsClient(t, files.caFile)
  const token = await files.token()
  const plain = async (): Promise<number> => (await client.send(`${gw.url}/hello/plain`, { token })).status
  const hit = async (c: Construct, s = c.trigger) => client.send(`${gw.url}/hello/hit?b=${encodeURIComponent(c.builtin)}&s=${encodeURIComponent(s)}`, { token })

  t.equal(await plain(), 200, 'served before')
  const resets: Record<string, number> = {}
  for (const c of served) {
    const res = await hit(c)
    t.equal(res.status, 503, `${c.builtin}: the request that hits it fails closed`)
    t.equal(res.json().code, c.code, `${c.builtin}: ${c.code}`)
    t.notMatch(res.text, /RuntimeError|memory access|strings:|timed out after/, 'no engine internals reach the client')
    for (let i = 0; i < 3; i++) t.equal(await plain(), 200, `${c.builtin}: request ${i + 1} right after is served`)
    t.equal((await hit(c, c.trigger === '' ? 'b' : '1')).status, 200, `${c.builtin}: the builtin still answers other input`)
    resets[c.reason] = (resets[c.reason] ?? 0) + 1
  }
  // All of them again, back to back: the engine keeps recovering.
  for (const c of served) t.equal((await hit(c)).status, 503, `${c.builtin} again`)
  t.equal(await plain(), 200, 'and the next request is served')

  const metrics = (await client.send(`${gw.adminUrl}/metrics`)).text
  for (const [reason, n] of Object.entries(resets)) {
    t.match(metrics, new RegExp(`portcullis_policy_engine_resets_total\\{reason="${reason}"\\} ${2 * n}\\n`), `resets counted with reason ${reason}`)
  }
  t.ok(served.length > 0, 'at least one construct is served, so recovery is exercised')
  t.match(gw.log(), /policy instance discarded after a faulted evaluation/)
})
