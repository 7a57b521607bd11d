import { spawn, type ChildProcess } from 'node:child_process'
import type { Test } from 'tap'

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
