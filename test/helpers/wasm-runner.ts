import { Worker } from 'node:worker_threads'

/** What one evaluation gave: OPA only ever answers a value or undefined (builtin errors are not strict). */
export type Outcome =
  | { kind: 'value', value: unknown }
  | { kind: 'undefined' }
  | { kind: 'error', message: string }
  | { kind: 'hang' }

// A worker does not inherit the TypeScript loader of the thread that starts it: register tsx first.
const WORKER = `import { register } from 'tsx/esm/api'; register(); await import(${JSON.stringify(new URL('./wasm-eval-worker.ts', import.meta.url).href)})`

/**
 * Each input evaluated by the gateway's engine for `entrypoint` of the bundle file, in a worker
 * thread. An input that keeps the engine busy longer than `hangMs` is recorded as a hang, the
 * worker is terminated (the only way to stop a looping WASM call) and a new one takes the rest.
 * `hangMs` is a bound for "never returns", generous for a loaded machine, not a speed target.
 */
export async function evaluateInWorkers (bundle: string, entrypoint: string, inputs: readonly unknown[], hangMs = 10_000): Promise<Outcome[]> {
  const outcomes: Outcome[] = []
  while (outcomes.length < inputs.length) {
    const start = outcomes.length
    const worker = new Worker(WORKER, { eval: true, workerData: { bundle, entrypoint } })
    try {
      await new Promise<void>((resolve, reject) => {
        let timer: NodeJS.Timeout | undefined
        const arm = (): void => {
          clearTimeout(timer)
          timer = setTimeout(() => { outcomes.push({ kind: 'hang' }); resolve() }, hangMs)
        }
        worker.on('error', err => { clearTimeout(timer); reject(err) })
        worker.on('exit', code => { clearTimeout(timer); reject(new Error(`evaluation worker exited (${code})`)) })
        worker.on('message', (m: Outcome | { kind: 'ready' }) => {
          if (m.kind === 'ready') {
            arm()
            worker.postMessage(inputs.slice(start))
            return
          }
          outcomes.push(m)
          if (outcomes.length === inputs.length) {
            clearTimeout(timer)
            resolve()
          } else {
            arm()
          }
        })
      })
    } finally {
      worker.removeAllListeners('exit')
      await worker.terminate()
    }
  }
  return outcomes
}
