import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { ROOT } from './deploy-tools.js'
import { systemTool } from './system-tools.js'

/*
 * Podman for the container tests, with this machine's settings (test/container/containers.conf), and
 * the real image built from the unmodified Dockerfile on the local stand-in base images
 * (scripts/container-stand-ins.sh, run first by `npm run test:container`).
 */

export const PODMAN_ENV = { ...process.env, CONTAINERS_CONF: process.env.CONTAINERS_CONF ?? join(ROOT, 'test/container/containers.conf') }
const exec = promisify(execFile)

export interface PodmanResult { code: number, stdout: string, stderr: string }

/** Runs podman; its exit code and output instead of throwing. */
export async function podman (args: string[]): Promise<PodmanResult> {
  try {
    const { stdout, stderr } = await exec(systemTool('podman'), args, { env: PODMAN_ENV, maxBuffer: 64 << 20 })
    return { code: 0, stdout, stderr }
  } catch (err) {
    const e = err as { code: number, stdout: string, stderr: string }
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) }
  }
}

/**
 * Builds the Dockerfile as `tag`. Docker's image format: the OCI format has no HEALTHCHECK. The host's
 * network: build steps (npm ci) reach the registry as the host does, and no bridge network is needed.
 */
export async function buildImage (tag: string): Promise<void> {
  const build = await podman(['build', '--pull=never', '--network=host', '--format=docker', '-f', join(ROOT, 'Dockerfile'), '-t', tag, ROOT])
  if (build.code !== 0) throw new Error(`podman build failed:\n${build.stderr.slice(-4000)}`)
}

/** Polls `probe` every half second until it gives a value; throws after `attempts`. */
export async function waitFor<T> (what: string, probe: () => Promise<T | undefined>, attempts = 120): Promise<T> {
  for (let i = 0; i < attempts; i++) {
    const value = await probe().catch(() => undefined)
    if (value !== undefined) return value
    await new Promise(resolve => setTimeout(resolve, 500))
  }
  throw new Error(`gave up waiting for ${what}`)
}
