import { parentPort, workerData } from 'node:worker_threads'
import { readBundleFile } from '../../src/pipeline/authorize/bundle.js'
import { createPolicyEngine, type PolicyEngine } from '../../src/pipeline/authorize/policy-engine.js'

// Runs in a worker thread (see wasm-runner.ts): evaluates inputs with the gateway's engine, loaded
// exactly as the gateway loads it, and posts one outcome per input, in order. An input that makes
// evaluation throw or trap gets a fresh engine for the next one; one that never returns is cut off
// by the parent terminating this worker, which is why evaluation does not run on the test's thread.

interface Setup { bundle: string, entrypoint: string }
const { bundle: file, entrypoint } = workerData as Setup
const bundle = await readBundleFile(file)
let engine: PolicyEngine = await createPolicyEngine(bundle, entrypoint)

parentPort!.on('message', async (inputs: unknown[]) => {
  for (const input of inputs) {
    let outcome
    try {
      const value = engine.evaluate(input)
      outcome = value === undefined ? { kind: 'undefined' } : { kind: 'value', value }
    } catch (err) {
      outcome = { kind: 'error', message: String((err as Error | undefined)?.message ?? err).slice(0, 200) }
      engine = await createPolicyEngine(bundle, entrypoint)
    }
    parentPort!.postMessage(outcome)
  }
})
parentPort!.postMessage({ kind: 'ready' })
