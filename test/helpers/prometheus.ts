import { spawn, execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Test } from 'tap'
import { freePort } from './ports.js'
import { systemTool } from './system-tools.js'

// The real Prometheus tools from Debian's `prometheus` package (`npm test` installs it: scripts/test-deps.mjs).

/** `promtool check metrics` on an exposition text: its exit code and what it printed. */
export async function promtoolCheck (text: string): Promise<{ code: number, output: string }> {
  return new Promise((resolve, reject) => {
    const child = execFile(systemTool('promtool'), ['check', 'metrics'], (err, stdout, stderr) => {
      if (err !== null && typeof err.code !== 'number') { reject(err); return }
      resolve({ code: err === null ? 0 : err.code as number, output: stdout + stderr })
    })
    child.stdin?.end(text)
  })
}


export interface Prometheus {
  /** Runs an instant PromQL query; the first sample's value, or undefined when the result is empty. */
  query: (promql: string) => Promise<number | undefined>
}

/** A Prometheus server on loopback scraping `target` (host:port) every second; stopped at teardown. */
export async function startPrometheus (t: Test, target: string): Promise<Prometheus> {
  const dir = t.testdir()
  await writeFile(join(dir, 'prometheus.yml'), [
    'global: { scrape_interval: 1s, evaluation_interval: 1s }',
    'scrape_configs:',
    '  - job_name: portcullis',
    `    static_configs: [{ targets: ["${target}"] }]`,
    ''
  ].join('\n'))
  const port = await freePort()
  const child = spawn(systemTool('prometheus'), [
    `--config.file=${join(dir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`
  ], { stdio: 'ignore' })
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  t.teardown(async () => { child.kill('SIGTERM'); await exited })
  const base = `http://127.0.0.1:${port}`
  // Ready once its own readiness endpoint says so.
  for (;;) {
    if (child.exitCode !== null) throw new Error('prometheus exited at start')
    const ok = await fetch(`${base}/-/ready`).then(r => r.ok, () => false)
    if (ok) break
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  return {
    async query (promql) {
      const res = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(promql)}`)
      const body = await res.json() as { data: { result: Array<{ value: [number, string] }> } }
      const v = body.data.result[0]?.value[1]
      return v === undefined ? undefined : Number(v)
    }
  }
}
