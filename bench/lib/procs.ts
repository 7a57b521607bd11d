import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import { connect, createServer } from 'node:net'

/*
 * Processes under test: started pinned, awaited until their port accepts, measured from /proc (CPU
 * time and RSS of the process and its children, e.g. nginx's workers), and killed at the end.
 */

export interface Proc { name: string, child: ChildProcess, pids: () => number[] }

const CLOCK_TICKS = 100 // USER_HZ on Linux

export function start (name: string, cmd: string[], env: NodeJS.ProcessEnv = {}): Proc {
  const child = spawn(cmd[0]!, cmd.slice(1), { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => { stderr = (stderr + String(d)).slice(-4000) })
  // Any end that stopAll did not ask for is reported, a signal's too: a run that then finds nothing on
  // the port says why.
  child.once('exit', (code, signal) => {
    if (!child.killed) process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${name} (pid ${child.pid}) ended on its own: ${signal ?? `exit code ${code}`}: ${stderr}\n`)
  })
  return { name, child, pids: () => (child.pid === undefined ? [] : [child.pid, ...descendants(child.pid)]) }
}

function descendants (pid: number): number[] {
  const out: number[] = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid === pid) out.push(Number(entry), ...descendants(Number(entry)))
    } catch {}
  }
  return out
}

/**
 * Runs `measure` with every process of `others` stopped (SIGSTOP, children included) and resumes them
 * after. The systems under test share CPU 1; one that sat idle is not idle to the CPU (a gateway loaded
 * and then left idle used 0.08–0.15 s of it during a 14 s run of another: timers, garbage collection),
 * time taken from the one being measured when it does not choose. Stopped, they take nothing.
 */
export async function alone<T> (others: Proc[], measure: () => Promise<T>): Promise<T> {
  const pids = others.flatMap(p => p.pids())
  signal(pids, 'SIGSTOP')
  try {
    return await measure()
  } finally {
    signal(pids, 'SIGCONT')
  }
}

function signal (pids: number[], name: NodeJS.Signals): void {
  for (const pid of pids) {
    try { process.kill(pid, name) } catch {} // gone already: nothing to stop or resume
  }
}

/** User + system CPU seconds used so far by the given processes. */
export function cpuSeconds (pids: number[]): number {
  let ticks = 0
  for (const pid of pids) {
    try {
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
      ticks += Number(fields[11]) + Number(fields[12]) // utime, stime
    } catch {}
  }
  return ticks / CLOCK_TICKS
}

/** User + system CPU seconds used so far by one process's main thread (its JavaScript, for Node). */
export function mainThreadCpuSeconds (pid: number): number {
  const fields = readFileSync(`/proc/${pid}/task/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
}

/** Resident set size in MiB of the given processes. */
export function rssMiB (pids: number[]): number {
  let kb = 0
  for (const pid of pids) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
      kb += Number(m?.[1] ?? 0)
    } catch {}
  }
  return kb / 1024
}

/**
 * Refuses to start when a port is taken: waitForPort would otherwise find another checkout's bench or
 * demo listening there, and the run would measure it instead of what it started.
 */
export async function assertPortsFree (ports: number[]): Promise<void> {
  const taken: number[] = []
  for (const port of ports) {
    const free = await new Promise<boolean>(resolve => {
      const server = createServer()
      server.once('error', () => resolve(false))
      server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
    })
    if (!free) taken.push(port)
  }
  if (taken.length > 0) throw new Error(`port ${taken.join(', ')} already in use (another bench or demo?); move this run with BENCH_PORT_BASE=<port>`)
}

export async function waitForPort (port: number, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>(resolve => {
      const s = connect(port, '127.0.0.1', () => { s.destroy(); resolve(true) })
      s.on('error', () => resolve(false))
    })
    if (ok) return
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  throw new Error(`nothing listens on port ${port} after ${timeoutMs} ms`)
}

export async function stopAll (procs: Proc[]): Promise<void> {
  await Promise.all(procs.map(async p => {
    // A child ended by a signal has no exit code, only a signal code: it is stopped all the same.
    if (p.child.exitCode !== null || p.child.signalCode !== null) return
    const exited = new Promise(resolve => p.child.once('exit', resolve))
    p.child.kill('SIGTERM')
    const timer = setTimeout(() => p.child.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  }))
}
