import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { resolveOpa } from '../../scripts/opa.mjs'
import type { Outcome } from './wasm-runner.js'

const run = promisify(execFile)

export interface OpaBatch {
  /** Scratch folder for the input file. */
  dir: string
  /** Rego files and data files, as `opa eval -d` takes them. */
  sources: string[]
  /** The document to evaluate per input, e.g. data.gateway.authz.decision. */
  ref: string
  inputs: readonly unknown[]
}

/**
 * `opa eval` of `ref` with each input, in one opa process for the whole batch. An input that makes
 * the query fail (a halt error, which no `with` can turn into undefined) fails the batch; then the
 * batch is split until that input is alone and it is recorded as an error.
 */
export async function opaEvaluate (batch: OpaBatch): Promise<Outcome[]> {
  const opa = await resolveOpa()
  const evaluate = async (inputs: readonly unknown[], from: number): Promise<Outcome[]> => {
    if (inputs.length === 0) return []
    const file = join(batch.dir, `input-${from}-${inputs.length}.json`)
    await writeFile(file, JSON.stringify({ cases: inputs }))
    const query = `results := [r | some c in input.cases; r := [d | d := ${batch.ref}] with input as c]`
    try {
      const { stdout } = await run(opa, ['eval', '--format', 'json', '--input', file, ...batch.sources.flatMap(s => ['-d', s]), query],
        { maxBuffer: 512 * 1024 * 1024, timeout: 300_000 })
      const results = (JSON.parse(stdout) as { result: Array<{ bindings: { results: unknown[][] } }> }).result[0]!.bindings.results
      return results.map(r => r.length === 0 ? { kind: 'undefined' } : { kind: 'value', value: r[0] })
    } catch (err) {
      if (inputs.length === 1) return [{ kind: 'error', message: String((err as { stdout?: string }).stdout ?? err).slice(0, 300) }]
      const half = Math.ceil(inputs.length / 2)
      return [...await evaluate(inputs.slice(0, half), from), ...await evaluate(inputs.slice(half), from + half)]
    }
  }
  return evaluate(batch.inputs, 0)
}

/** JSON with sorted keys: what both runtimes' values look like to a policy author, key order aside. */
export function canonical (v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) => x !== null && typeof x === 'object' && !Array.isArray(x)
    ? Object.fromEntries(Object.entries(x).sort(([a], [b]) => a < b ? -1 : a > b ? 1 : 0))
    : x)
}

/**
 * Equal as a policy author would see it: the same value, or both undefined (a builtin error
 * included), or both failing the evaluation (a rule conflict: opa eval fails, the gateway refuses).
 */
export function sameOutcome (wasm: Outcome, opa: Outcome): boolean {
  if (wasm.kind === 'value' && opa.kind === 'value') return canonical(wasm.value) === canonical(opa.value)
  return wasm.kind === opa.kind && (wasm.kind === 'undefined' || wasm.kind === 'error')
}

export function describe (o: Outcome): string {
  switch (o.kind) {
    case 'value': return canonical(o.value)
    case 'error': return `error (${o.message})`
    default: return o.kind
  }
}
