import { execFile } from 'node:child_process'
import { promisify } from 'node:util'

// The CLI as a user runs it: the built bin (npm test builds before running tap).
export const CLI = new URL('../../dist/cli.js', import.meta.url).pathname
const run = promisify(execFile)

/** `portcullis <args>`; resolves to its exit code and output whatever the code. */
export async function runCli (args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number, stdout: string, stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { env: { ...process.env, ...env } })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number, stdout: string, stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}
