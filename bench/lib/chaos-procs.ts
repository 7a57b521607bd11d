import { spawn, type ChildProcess } from 'node:child_process'
import { createWriteStream, readFileSync, readdirSync } from 'node:fs'
import { waitForPort } from './procs.js'

/*
 * The processes `npm run chaos` plays with: each can be killed (SIGKILL), paused (SIGSTOP), resumed
 * and started again on the same port, so that the gateways keep the same URLs for their
 * dependencies, as they would with a real Redis or IdP that restarts. Output goes to a log file per
 * process, kept after the run for whoever reads a finding.
 */

export interface Managed {
  name: string
  start: () => Promise<void>
  kill: () => Promise<void>
  pause: () => void
  resume: () => void
  pid: () => number | undefined
}

/** A process started by `cmd` that is ready once `port` accepts connections. */
export function managed (name: string, cmd: string[], port: number, logFile: string): Managed {
  let child: ChildProcess | null = null
  const log = createWriteStream(logFile, { flags: 'a' })
  const start = async (): Promise<void> => {
    const c = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] })
    child = c
    c.stdout!.pipe(log, { end: false })
    c.stderr!.pipe(log, { end: false })
    await waitForPort(port, 20_000)
  }
  const kill = async (): Promise<void> => {
    const c = child
    child = null
    if (c === null || c.exitCode !== null || c.signalCode !== null) return
    const exited = new Promise(resolve => c.once('exit', resolve))
    c.kill('SIGKILL')
    await exited
  }
  return {
    name,
    start,
    kill,
    pause: () => { child?.kill('SIGSTOP') },
    // SIGCONT before a kill as well: a stopped process would otherwise linger until it is resumed.
    resume: () => { child?.kill('SIGCONT') },
    pid: () => child?.pid
  }
}

export interface GatewayProc {
  name: string
  child: ChildProcess
  /** The process and its cluster workers. */
  pids: () => number[]
  /** Pids whose parent is this process (the cluster workers of a --workers primary). */
  workers: () => number[]
  log: () => string
}

/**
 * `node dist/cli.js start -c <config> [args]`, resolved once its admin /readyz says ready (with
 * --workers: every worker). The log level may hide the "listening" line, readiness is what counts.
 */
export async function startGateway (name: string, cli: string, configFile: string, args: string[], logFile: string, adminUrl: string): Promise<GatewayProc> {
  const child = spawn(process.execPath, [cli, 'start', '-c', configFile, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  const file = createWriteStream(logFile, { flags: 'a' })
  // The last 64 KiB in memory, to find the ready line and to quote on failure; the whole log on disk.
  let tail = ''
  const onData = (d: Buffer): void => { tail = (tail + String(d)).slice(-65_536); file.write(d) }
  child.stdout!.on('data', onData)
  child.stderr!.on('data', onData)
  const deadline = Date.now() + 60_000
  while (!await ready(adminUrl)) {
    if (child.exitCode !== null) throw new Error(`${name} exited ${child.exitCode} before it was ready:\n${tail}`)
    if (Date.now() > deadline) throw new Error(`${name} was not ready within 60 s:\n${tail}`)
    await new Promise(resolve => setTimeout(resolve, 200))
  }
  const workers = (): number[] => child.pid === undefined ? [] : childrenOf(child.pid)
  return { name, child, pids: () => child.pid === undefined ? [] : [child.pid, ...workers()], workers, log: () => tail }
}

async function ready (adminUrl: string): Promise<boolean> {
  try {
    const res = await fetch(`${adminUrl}/readyz`, { signal: AbortSignal.timeout(2000) })
    await res.arrayBuffer()
    return res.status === 200
  } catch {
    return false
  }
}

export function childrenOf (pid: number): number[] {
  const out: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      // The command name may hold spaces and parentheses: fields are counted after its last ')'.
      if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid) out.push(Number(entry))
    } catch {}
  }
  return out
}

export async function stopGateway (g: GatewayProc): Promise<void> {
  if (g.child.exitCode !== null || g.child.signalCode !== null) return
  const exited = new Promise(resolve => g.child.once('exit', resolve))
  g.child.kill('SIGTERM')
  const timer = setTimeout(() => { for (const pid of g.pids().reverse()) try { process.kill(pid, 'SIGKILL') } catch {} }, 15_000)
  await exited
  clearTimeout(timer)
}
