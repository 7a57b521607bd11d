import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const exec = promisify(execFile)

export interface DeployTools { kubeconform: string, 'kubernetes-validate': string, hadolint: string, helm: string, schemas: string }

/** The pinned checkers of scripts/deploy-tools.sh (installed into the user cache on first use). */
export async function deployTools (): Promise<DeployTools> {
  const { stdout } = await exec('bash', [`${ROOT}/scripts/deploy-tools.sh`], { maxBuffer: 16 << 20 })
  const tools = Object.fromEntries(stdout.trim().split('\n').map(line => {
    const eq = line.indexOf('=')
    return [line.slice(0, eq), line.slice(eq + 1)]
  }))
  return tools as unknown as DeployTools
}

/** Runs a tool and returns its exit code and output instead of throwing. */
export async function runTool (file: string, args: string[]): Promise<{ code: number, output: string }> {
  try {
    const { stdout, stderr } = await exec(file, args, { cwd: ROOT, maxBuffer: 16 << 20 })
    return { code: 0, output: stdout + stderr }
  } catch (err) {
    const e = err as { code: number, stdout?: string, stderr?: string }
    return { code: typeof e.code === 'number' ? e.code : 1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` }
  }
}
