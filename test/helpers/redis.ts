import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { promisify } from 'node:util'
import { connect } from 'node:net'
import type { Test } from 'tap'
import { freePort } from './ports.js'
import { systemTool } from './system-tools.js'

/*
 * A real redis-server on a loopback port of its own, for one test: started, stopped and restarted on
 * the same port, or paused with SIGSTOP (a Redis that hangs without closing its connections).
 */

export interface RedisServer {
  url: string
  port: number
  stop: () => Promise<void>
  start: () => Promise<void>
  pause: () => void
  resume: () => void
  /** Sends one command (inline protocol) and returns the raw reply text. */
  command: (line: string) => Promise<string>
}


async function send (port: number, line: string, timeoutMs = 2000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port })
    let text = ''
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('redis did not answer')) }, timeoutMs)
    socket.on('error', err => { clearTimeout(timer); reject(err) })
    socket.on('data', d => {
      text += d.toString('utf8')
      // One reply: a simple line, or a bulk string whose announced length has arrived.
      const bulk = /^\$(\d+)\r\n/.exec(text)
      if (text.endsWith('\r\n') && (bulk === null || text.length >= bulk[0].length + Number(bulk[1]) + 2)) {
        clearTimeout(timer)
        socket.end()
        resolve(text)
      }
    })
    socket.write(`${line}\r\n`)
  })
}

/** Kills a child (paused or not) and waits for it to be gone; nothing to do for one already gone. */
export async function killProcess (p: ChildProcess | null): Promise<void> {
  if (p === null || p.exitCode !== null || p.signalCode !== null) return
  p.kill('SIGCONT')
  await new Promise(resolve => { p.once('exit', resolve); p.kill('SIGKILL') })
}

export async function startRedis (t: Test): Promise<RedisServer> {
  const port = await freePort()
  let proc: ChildProcess | null = null
  const start = async (): Promise<void> => {
    proc = spawn(systemTool('redis-server'), ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
    for (let i = 0; i < 100; i++) {
      if (await send(port, 'PING', 500).then(r => r.startsWith('+PONG'), () => false)) return
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    throw new Error(`redis-server did not start on port ${port}`)
  }
  const stop = async (): Promise<void> => {
    const p = proc
    proc = null
    await killProcess(p)
  }
  await start()
  t.teardown(stop)
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    start,
    stop,
    pause: () => { proc?.kill('SIGSTOP') },
    resume: () => { proc?.kill('SIGCONT') },
    command: async line => send(port, line)
  }
}

/**
 * A real Redis Cluster of three masters on loopback (no replicas), made with `redis-cli --cluster
 * create`; its node URLs, once every node reports cluster_state:ok.
 */
export async function startRedisCluster (t: Test): Promise<string[]> {
  const ports = [await freePort(), await freePort(), await freePort()]
  const dir = t.testdir()
  const procs = ports.map(port => spawn(systemTool('redis-server'), ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--cluster-enabled', 'yes', '--cluster-config-file', `nodes-${port}.conf`, '--dir', dir], { stdio: 'ignore' }))
  t.teardown(async () => {
    await Promise.all(procs.map(async p => {
      if (p.exitCode !== null) return
      await new Promise(resolve => { p.once('exit', resolve); p.kill('SIGKILL') })
    }))
  })
  for (const port of ports) {
    let i = 0
    while (!await send(port, 'PING', 500).then(r => r.startsWith('+PONG'), () => false)) {
      if (++i > 100) throw new Error(`redis-server did not start on port ${port}`)
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  }
  await promisify(execFile)(systemTool('redis-cli'), ['--cluster', 'create', ...ports.map(p => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'])
  for (const port of ports) {
    for (let i = 0; i < 200 && !(await send(port, 'CLUSTER INFO')).includes('cluster_state:ok'); i++) {
      await new Promise(resolve => setTimeout(resolve, 50))
    }
  }
  return ports.map(p => `redis://127.0.0.1:${p}`)
}
