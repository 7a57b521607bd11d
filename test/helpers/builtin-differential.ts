import { readFile, writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { buildBundle, DEFAULT_POLICIES_DIR } from '../../scripts/opa.mjs'
import { builtinPolicy, generateCases, KNOWN_DIVERGENCES, REGRESSIONS, type BuiltinCase, type BuiltinDecl } from './builtin-cases.js'
import { canonical, describe, opaEvaluate, sameOutcome } from './differential.js'
import { evaluateInWorkers } from './wasm-runner.js'

export interface Divergence { fn: string, args: string, wasm: string, opa: string }
export interface BuiltinRun { cases: number, builtins: string[], mismatches: Divergence[], known: Array<Divergence & { why: string }> }

export const CAPABILITIES = join(DEFAULT_POLICIES_DIR, 'capabilities.json')

/**
 * Every builtin policies/capabilities.json allows, called with the regression cases and
 * `perBuiltin` generated argument lists each, by the gateway's engine (the policy compiled with
 * the real `opa build -t wasm` through scripts/opa.mjs, loaded as the gateway loads it) and by
 * `opa eval` of the same Rego, in one batch each.
 */
export async function runBuiltinDifferential (dir: string, perBuiltin: number, seed: number): Promise<BuiltinRun> {
  const { builtins } = JSON.parse(await readFile(CAPABILITIES, 'utf8')) as { builtins: BuiltinDecl[] }
  const allowed = new Set(builtins.map(b => b.name))
  await mkdir(join(dir, 'policy'), { recursive: true })
  const source = join(dir, 'policy', 'diff.rego')
  await writeFile(source, builtinPolicy(builtins))
  const bundle = join(dir, 'diff.tar.gz')
  await buildBundle({ policiesDir: join(dir, 'policy'), out: bundle, entrypoints: ['diff/out'], capabilities: CAPABILITIES, force: true })
  const cases: BuiltinCase[] = [...REGRESSIONS.filter(c => allowed.has(c.fn)), ...generateCases(builtins, perBuiltin, seed)]
  const wasm = await evaluateInWorkers(bundle, 'diff/out', cases)
  const opa = await opaEvaluate({ dir, sources: [source], ref: 'data.diff.out', inputs: cases })
  const mismatches: Divergence[] = []
  const known: BuiltinRun['known'] = []
  cases.forEach((c, i) => {
    if (sameOutcome(wasm[i]!, opa[i]!)) return
    const d = { fn: c.fn, args: canonical(c.args), wasm: describe(wasm[i]!), opa: describe(opa[i]!) }
    const k = KNOWN_DIVERGENCES.find(k => k.fn === c.fn && k.when(c.args))
    if (k !== undefined) known.push({ ...d, why: k.why })
    else mismatches.push(d)
  })
  return { cases: cases.length, builtins: [...new Set(cases.map(c => c.fn))], mismatches, known }
}
