import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { Test } from 'tap'

const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url))

export interface GatewayProcess {
  url: string
  adminUrl: string
  pid: number
}

/**
 * `portcullis start -c <config>` as its own process (the real CLI), on the ports the config names
 * (0 for ephemeral ones, read back from its "listening" log line). Stopped with SIGTERM at teardown.
 */
export async function startGatewayProcess (t: Test, name: string, config: unknown): Promise<GatewayProcess> {
  const file = join(t.testdirName, `${name}.yaml`)
  writeFileSync(file, JSON.stringify(config, null, 2)) // JSON is YAML
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'start', '-c', file], { stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<void>(resolve => child.once('exit', () => resolve()))
  t.teardown(async () => {
    if (child.exitCode === null) child.kill('SIGTERM')
    await exited
  })
  let stderr = ''
  child.stderr.on('data', d => { stderr += String(d) })
  const lines = createInterface({ input: child.stdout })
  return new Promise((resolve, reject) => {
    child.once('exit', code => reject(new Error(`gateway ${name} exited with ${String(code)}: ${stderr.slice(0, 2000)}`)))
    lines.on('line', line => {
      if (!line.includes('portcullis is listening')) return
      const { url, admin } = JSON.parse(line) as { url: string, admin: string }
      resolve({ url, adminUrl: admin, pid: child.pid! })
    })
  })
}
