import { spawn, type ChildProcess } from 'node:child_process'
import { cp, symlink } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { freePort } from './ports.js'

/*
 * Walking a guide in docs/ as a reader would: its ```sh blocks in order, in a copy of the project,
 * each block's output compared with the ```text block the guide marks *output* (`…` stands for a
 * varying part). Long-running commands (the demo, a function) run in the background, each in its own
 * process group so that stopping one is Ctrl-C to everything it started.
 */

export const ROOT = resolve(import.meta.dirname, '../..')

export interface Step {
  code: string
  output?: string
  /** The prose since the block before tells the reader to stop what runs in the background (Ctrl-C). */
  stopFirst: boolean
}

/** The ```sh blocks of a guide, each with the ```text block after an *output* line, if any. */
export function steps (markdown: string): Step[] {
  const out: Step[] = []
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

/**
 * A guide's command as run here: the demo on free ports instead of its fixed ones, and `npx portcullis`
 * as the built dist/cli.js (`npm test` has built it).
 */
export async function demoRewriter (): Promise<{ portList: string, rewrite: (code: string) => string }> {
  const ports = { gateway: await freePort(), admin: await freePort(), issuer: await freePort(), fn: await freePort() }
  const portList = `${ports.gateway},${ports.admin},${ports.issuer},${ports.fn}`
  return {
    portList,
    rewrite: code => code
      .replace('npm ci && npm start', `node scripts/opa.mjs build >/dev/null && ${CLI} demo run --ports ${portList}`)
      .replace(/npx portcullis demo (config|run)/g, `npx portcullis demo $1 --ports ${portList}`)
      .replaceAll('npx portcullis', CLI)
      .replaceAll('127.0.0.1:8443', `127.0.0.1:${ports.gateway}`)
      .replaceAll('127.0.0.1:9090', `127.0.0.1:${ports.admin}`)
  }
}

const CLI = 'node dist/cli.js'

export function matches (actual: string, expected: string): boolean {
  const pattern = expected.trimEnd().split('…').map(s => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*?')
  return new RegExp(`^${pattern}$`, 's').test(actual.trimEnd())
}

/** A fresh copy of what a clone holds after `npm ci` and the build, with the shared node_modules. */
export async function copyProject (dir: string): Promise<void> {
  for (const part of ['package.json', 'dist', 'scripts', 'policies', 'examples']) await cp(join(ROOT, part), join(dir, part), { recursive: true })
  await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'))
}

/** Runs a block in bash; variables set by earlier blocks (TOKEN, ...) carry over, as in one terminal. */
export async function runBlock (dir: string, code: string): Promise<{ code: number | null, out: string }> {
  const script = `set -ea; [ -f .guide-env ] && . ./.guide-env; ${code}\ndeclare -p | grep -E '^declare -x [A-Z_]+=' | grep -vE ' (PWD|OLDPWD|SHLVL|_)=' > .guide-env`
  const child = spawn('bash', ['-c', script], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const exit = await new Promise<number | null>(resolve => child.once('exit', resolve))
  return { code: exit, out }
}

export interface Backgrounds {
  /** Starts a long-running command and resolves with its output once a line matches `ready`. */
  start: (name: string, command: string, ready: RegExp) => Promise<string>
  /** Ctrl-C to one (or, without a name, every) background command, and waits for it to exit. */
  stop: (name?: string) => Promise<void>
}

export function createBackgrounds (dir: string): Backgrounds {
  const running = new Map<string, ChildProcess>()
  const stop = async (name?: string): Promise<void> => {
    for (const [key, child] of [...running]) {
      if (name !== undefined && key !== name) continue
      running.delete(key)
      if (child.exitCode !== null || child.signalCode !== null) continue
      const exited = new Promise(resolve => child.once('exit', resolve))
      process.kill(-child.pid!, 'SIGINT')
      await exited
    }
  }
  const start = async (name: string, command: string, ready: RegExp): Promise<string> => {
    await stop(name)
    let log = ''
    // With the variables earlier blocks set (runBlock), as in the same terminal.
    const script = `set -a; [ -f .guide-env ] && . ./.guide-env; ${command}`
    const child = spawn('bash', ['-c', script], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    child.stdout.on('data', (d: Buffer) => { log += d.toString() })
    child.stderr.on('data', (d: Buffer) => { log += d.toString() })
    running.set(name, child)
    const started = Date.now()
    while (!ready.test(log)) {
      if (child.exitCode !== null) throw new Error(`${command} exited: ${log}`)
      if (Date.now() - started > 90_000) throw new Error(`${command} did not start: ${log}`)
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    return log
  }
  return { start, stop }
}
