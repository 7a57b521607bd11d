import { execFile, spawnSync } from 'node:child_process'
import { access, constants, mkdir } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** Vegeta is the constant-rate load generator: it reports latency in ns (autocannon only has whole ms). */
export const VEGETA_VERSION = 'v12.13.0'

export interface Tools { wrk: string, nginx: string, vegeta: string, taskset: string | null }

function which (name: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' })
  return r.status === 0 ? r.stdout.trim() : null
}

async function ensureVegeta (): Promise<string> {
  const dir = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'portcullis', `vegeta-${VEGETA_VERSION}`)
  const bin = join(dir, 'vegeta')
  try {
    await access(bin, constants.X_OK)
    return bin
  } catch {}
  process.stderr.write(`installing vegeta ${VEGETA_VERSION} with go install into ${dir}\n`)
  await mkdir(dir, { recursive: true })
  await run('go', ['install', `github.com/tsenart/vegeta/v12@${VEGETA_VERSION}`], { env: { ...process.env, GOBIN: dir } })
  return bin
}

/** Finds the native tools the benchmark needs; says how to install what is missing. */
export async function resolveTools (): Promise<Tools> {
  const wrk = which('wrk')
  const nginx = which('nginx') ?? (await access('/usr/sbin/nginx').then(() => '/usr/sbin/nginx', () => null))
  const missing = [wrk === null ? 'wrk' : '', nginx === null ? 'nginx' : ''].filter(Boolean)
  if (missing.length > 0) throw new Error(`missing ${missing.join(' and ')}: apt-get install -y ${missing.join(' ')}`)
  return { wrk: wrk!, nginx: nginx!, vegeta: await ensureVegeta(), taskset: which('taskset') }
}

/** The command prefixed with CPU pinning when taskset exists (util-linux), else unpinned. `cpu` is one CPU or a taskset list ("0,1"). */
export function pinned (tools: Tools, cpu: number | string, cmd: string[]): string[] {
  return tools.taskset === null ? cmd : [tools.taskset, '-c', String(cpu), ...cmd]
}

export async function versionOf (cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await run(cmd, args)
    return (stdout + stderr).split('\n').find(l => l.trim() !== '')?.trim() ?? '?'
  } catch (err) {
    const e = err as { stdout?: string, stderr?: string }
    return ((e.stdout ?? '') + (e.stderr ?? '')).split('\n').find(l => l.trim() !== '')?.trim() ?? '?'
  }
}
