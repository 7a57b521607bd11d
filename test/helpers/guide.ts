import { spawn, type ChildProcess } from 'node:child_process'
import { cp, symlink } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import type { Test } from 'tap'
import { freePort } from './ports.js'

/*
 * Walking a guide in docs/ as a reader would: its ```sh blocks in order, each with the ```text block
 * after an *output* line (if any), run with bash in one folder (variables carry over, as in one
 * terminal), long-running commands in the background until the guide says Ctrl-C.
 */

export interface GuideStep {
  code: string
  output?: string
  /** The prose since the block before tells the reader to stop what runs in the background (Ctrl-C). */
  stopFirst: boolean
}

export function guideSteps (markdown: string): GuideStep[] {
  const out: GuideStep[] = []
  const block = /(\*output\*\s*\n\s*\n)?```(sh|text)\n([\s\S]*?)```/g
  let last = 0
  for (const m of markdown.matchAll(block)) {
    const prose = markdown.slice(last, m.index)
    last = m.index + m[0].length
    if (m[2] === 'sh') out.push({ code: m[3]!, stopFirst: prose.includes('Ctrl-C') })
    else if (m[1] !== undefined && out.length > 0) out[out.length - 1]!.output = m[3]!
  }
  return out
}

/** `…` in the guide stands for any text (an id, a path, a count that varies). */
export function outputMatches (actual: string, expected: string): boolean {
  const pattern = expected.trimEnd().split('…').map(s => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*?')
  return new RegExp(`^${pattern}$`, 's').test(actual.trimEnd())
}

export interface GuideShell {
  /** Runs a block; resolves to its exit code and everything it printed. */
  run: (code: string) => Promise<{ code: number | null, out: string }>
  /** Starts a long-running command and waits until its output matches `ready`. */
  startBackground: (command: string, ready: RegExp) => Promise<string>
  /** Ctrl-C: SIGINT to the background command's process group, then waits for it to exit. */
  stopBackground: () => Promise<void>
}

export function createGuideShell (t: Test, dir: string): GuideShell {
  let background: ChildProcess | undefined
  const stopBackground = async (): Promise<void> => {
    const child = background
    background = undefined
    if (child === undefined || child.exitCode !== null) return
    const exited = new Promise(resolve => child.once('exit', resolve))
    process.kill(-child.pid!, 'SIGINT')
    await exited
  }
  t.teardown(stopBackground)
  return {
    stopBackground,
    async startBackground (command, ready) {
      await stopBackground()
      let log = ''
      const script = `set -a; [ -f .guide-env ] && . ./.guide-env; ${command}`
      const child = spawn('bash', ['-c', script], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
      child.stdout.on('data', (d: Buffer) => { log += d.toString() })
      child.stderr.on('data', (d: Buffer) => { log += d.toString() })
      background = child
      const started = Date.now()
      while (!ready.test(log)) {
        if (child.exitCode !== null) throw new Error(`${command} exited: ${log}`)
        if (Date.now() - started > 60_000) throw new Error(`${command} did not start: ${log}`)
        await new Promise(resolve => setTimeout(resolve, 100))
      }
      return log
    },
    async run (code) {
      const script = `set -ea; [ -f .guide-env ] && . ./.guide-env; ${code}\ndeclare -p | grep -E '^declare -x [A-Z_]+=' | grep -vE ' (PWD|OLDPWD|SHLVL|_)=' > .guide-env`
      const child = spawn('bash', ['-c', script], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      child.stdout.on('data', (d: Buffer) => { out += d.toString() })
      child.stderr.on('data', (d: Buffer) => { out += d.toString() })
      const exit = await new Promise<number | null>(resolve => child.once('exit', resolve))
      return { code: exit, out }
    }
  }
}

const ROOT = resolve(import.meta.dirname, '../..')
export const GUIDE_CLI = 'node dist/cli.js'

export interface GuideWorkspace {
  dir: string
  /** gateway,admin,issuer,function: free ports for the demo. */
  portList: string
  /**
   * A guide's command as run here: the demo on free ports instead of its fixed ones, and
   * `npx portcullis` as the built dist/cli.js (`npm test` has built it).
   */
  rewrite: (code: string) => string
}

/** A copy of the project (what a reader's checkout has after a build) in a test folder. */
export async function createGuideWorkspace (t: Test): Promise<GuideWorkspace> {
  const dir = t.testdir()
  for (const part of ['package.json', 'dist', 'scripts', 'policies']) await cp(join(ROOT, part), join(dir, part), { recursive: true })
  await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'))
  const ports = { gateway: await freePort(), admin: await freePort(), issuer: await freePort(), fn: await freePort() }
  const portList = `${ports.gateway},${ports.admin},${ports.issuer},${ports.fn}`
  return {
    dir,
    portList,
    rewrite: code => code
      .replace(/npx portcullis demo (config|run)/g, `npx portcullis demo $1 --ports ${portList}`)
      .replaceAll('npx portcullis', GUIDE_CLI)
      .replaceAll('127.0.0.1:8443', `127.0.0.1:${ports.gateway}`)
      .replaceAll('127.0.0.1:9090', `127.0.0.1:${ports.admin}`)
  }
}
