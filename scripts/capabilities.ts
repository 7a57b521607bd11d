// Writes policies/capabilities.json: the builtins a gateway policy may call, for `opa build
// --capabilities`, so a policy calling anything else (http.send, net.lookup_ip_addr, ...) fails at
// build time with OPA's own "undefined function" error. Run after upgrading OPA or the WASM SDK:
//   node --import tsx scripts/capabilities.ts
// How: every builtin of the pinned OPA is called once in a probe policy compiled to WASM; the
// module's `builtins` export lists those OPA did not compile in. Those are kept only when the SDK or
// the gateway provides them. Builtins that do not compile at all (deprecated ones) are left out, and
// so are those that decide differently from OPA in WASM (REFUSED_BUILTINS in builtins.ts).
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { loadPolicy } from '@open-policy-agent/opa-wasm'
import { DEFAULT_POLICIES_DIR, resolveOpa } from './opa.mjs'
import { readBundleFile } from '../src/pipeline/authorize/bundle.js'
import { REFUSED_BUILTINS } from '../src/pipeline/authorize/builtins.js'
import { hostBuiltins, PROVIDED_BUILTINS } from '../src/pipeline/authorize/policy-engine.js'

const run = promisify(execFile)
interface Builtin { name: string, infix?: string, decl?: { args?: unknown[], result?: unknown, variadic?: unknown } }

const opa = await resolveOpa()
const current = JSON.parse((await run(opa, ['capabilities', '--current'], { maxBuffer: 16 << 20 })).stdout) as { builtins: Builtin[] }
const dir = await mkdtemp(join(tmpdir(), 'portcullis-capabilities-'))
try {
  // Operators and void or variadic builtins cannot be probed by a plain call; they stay as OPA lists them.
  let probed = current.builtins.filter(b => b.infix === undefined && /^[a-z_][a-z0-9_.]*$/.test(b.name) &&
    b.decl?.result !== undefined && b.decl.variadic === undefined).map(b => b.name)
  const arity = new Map(current.builtins.map(b => [b.name, b.decl?.args?.length ?? 0]))
  const unusable = new Set<string>()
  for (;;) {
    const rules = probed.map((n, i) => `r${i} := ${n}(${Array.from({ length: arity.get(n)! }, (_, j) => `input.a${j}`).join(', ')})`)
    await writeFile(join(dir, 'probe.rego'), `package probe\n\n${rules.join('\n')}\n\nout := [${probed.map((_, i) => `r${i}`).join(', ')}]\n`)
    try {
      await run(opa, ['build', '-t', 'wasm', '-e', 'probe/out', '-o', join(dir, 'probe.tar.gz'), join(dir, 'probe.rego')])
      break
    } catch (err) {
      const lines = [...String((err as { stdout?: string }).stdout).matchAll(/probe\.rego:(\d+):/g)].map(m => Number(m[1]))
      if (lines.length === 0) throw err
      const bad = new Set(lines.map(l => probed[l - 3]!)) // rule i is on line i + 3
      for (const n of bad) unusable.add(n)
      probed = probed.filter(n => !bad.has(n))
    }
  }
  const host = hostBuiltins(await loadPolicy((await readBundleFile(join(dir, 'probe.tar.gz'))).wasm, undefined, {}))
  const refused = new Set([...unusable, ...host.filter(n => !PROVIDED_BUILTINS.has(n)), ...Object.keys(REFUSED_BUILTINS)])
  const capabilities = { ...current, builtins: current.builtins.filter(b => !refused.has(b.name)) }
  const out = join(DEFAULT_POLICIES_DIR, 'capabilities.json')
  await writeFile(out, `${JSON.stringify(capabilities, null, 2)}\n`)
  process.stdout.write(`wrote ${out}: ${capabilities.builtins.length} builtins; left out ${refused.size}: ${[...refused].sort().join(' ')}\n`)
} finally {
  await rm(dir, { recursive: true, force: true })
}
