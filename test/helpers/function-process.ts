import { spawn, type ChildProcess } from 'node:child_process'
import type { Test } from 'tap'

export interface FunctionProcess {
  child: ChildProcess
  /** http://127.0.0.1:<port>; the same port again after restart(). */
  url: string
  /** SIGSTOP: the kernel still accepts connections, the function answers nothing. */
  pause: () => void
  /** SIGCONT. */
  resume: () => void
  /** Kills it and starts it again on the same port. */
  restart: () => Promise<void>
}

// A plain-HTTP stand-in function in its own process, so that it can be paused and killed for real.
// A query `?delay=<ms>` makes it answer late.
const SOURCE = `
const http = require('node:http')
const server = http.createServer((req, res) => {
  req.resume()
  const delay = Number(new URL(req.url, 'http://x').searchParams.get('delay') ?? 0)
  setTimeout(() => {
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ server: 'fn', path: req.url }))
  }, delay)
})
const backlog = Number(process.argv[2]) || 511
server.listen({ port: Number(process.argv[1]), host: '127.0.0.1', backlog }, () => console.log('port ' + server.address().port))
`

async function spawnFunction (port: number, backlog: number): Promise<{ child: ChildProcess, port: number }> {
  const child = spawn(process.execPath, ['-e', SOURCE, String(port), String(backlog)], { stdio: ['ignore', 'pipe', 'inherit'] })
  const bound = await new Promise<number>((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (d: Buffer) => {
      out += String(d)
      const m = /port (\d+)/.exec(out)
      if (m !== null) resolve(Number(m[1]))
    })
    child.once('exit', code => reject(new Error(`the function exited (${String(code)}) before listening`)))
  })
  return { child, port: bound }
}

/**
 * Starts the function; it is killed at teardown (resumed first if paused). `backlog` is its listen
 * backlog: with a small one, a paused function stops even accepting connections once it is full.
 */
export async function startFunctionProcess (t: Test, { backlog = 511 }: { backlog?: number } = {}): Promise<FunctionProcess> {
  let { child, port } = await spawnFunction(0, backlog)
  const kill = (c: ChildProcess): void => { c.kill('SIGCONT'); c.kill('SIGKILL') }
  t.teardown(() => kill(fn.child))
  const fn: FunctionProcess = {
    get child () { return child },
    url: `http://127.0.0.1:${port}`,
    pause: () => { child.kill('SIGSTOP') },
    resume: () => { child.kill('SIGCONT') },
    async restart () {
      const old = child
      const gone = new Promise(resolve => old.once('exit', resolve))
      kill(old)
      await gone;
      ({ child, port } = await spawnFunction(port, backlog))
    }
  }
  return fn
}
