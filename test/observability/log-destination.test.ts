import t from 'tap'
import { spawn } from 'node:child_process'
import { pathToFileURL } from 'node:url'
import { resolve } from 'node:path'

// The gateway's standard output (observability/logger.ts createLogDestination): access lines are
// queued and written together at the end of their event-loop turn, every other line at once. What a
// reader of the log must see either way: every line, whole, in the order it was logged, also when the
// process exits in the very turn that queued them.

const LOGGER = pathToFileURL(resolve(import.meta.dirname, '../../dist/observability/logger.js')).href

async function run (body: string): Promise<{ out: string, code: number | null }> {
  const source = `import { createLogDestination } from ${JSON.stringify(LOGGER)}\nconst d = createLogDestination()\n${body}`
  const child = spawn(process.execPath, ['--input-type=module', '-e', source], { stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (chunk: Buffer) => { out += String(chunk) })
  const code = await new Promise<number | null>(resolve => child.once('exit', resolve))
  return { out, code }
}

t.test('queued lines come out in the order logged, before any line written after them', async t => {
  const { out, code } = await run(`
    d.writeBatched('a1\\n'); d.writeBatched('a2\\n')
    d.write('now\\n')
    d.writeBatched('a3\\n')
    setImmediate(() => {
      d.write('next turn\\n')
      d.writeBatched('a4\\n')
      d.flush(() => { d.write('flushed\\n') }) // pino's logger.flush(cb)
    })
  `)
  t.equal(code, 0)
  t.equal(out, 'a1\na2\nnow\na3\nnext turn\na4\nflushed\n')
})

t.test('lines queued in the turn that calls process.exit are still written', async t => {
  const lines = Array.from({ length: 500 }, (_, i) => `{"access":true,"n":${i}}\n`)
  const { out, code } = await run(`
    for (let i = 0; i < 500; i++) d.writeBatched('{"access":true,"n":' + i + '}\\n')
    process.exit(3)
  `)
  t.equal(code, 3)
  t.equal(out, lines.join(''), 'all 500, whole and in order')
})

t.test('a turn\'s queued lines leave as one write; other lines one write each', async t => {
  // The child counts the writes to its standard output (sonic-boom writes with fs.writeSync).
  const { out, code } = await run(`
    import('node:fs').then(({ default: fs }) => {
      const write = fs.writeSync
      let writes = 0
      fs.writeSync = (fd, ...rest) => { if (fd === 1) writes++; return write(fd, ...rest) }
      for (let i = 0; i < 100; i++) d.writeBatched('line ' + i + '\\n')
      setImmediate(() => {
        const queuedTurn = writes
        d.write('a\\n'); d.write('b\\n')
        d.write('writes ' + queuedTurn + ' ' + (writes - queuedTurn) + '\\n')
      })
    })
  `)
  t.equal(code, 0)
  const lines = out.trimEnd().split('\n')
  t.equal(lines.length, 103)
  t.same(lines.slice(0, 100), Array.from({ length: 100 }, (_, i) => `line ${i}`), 'the queued lines, whole and in order')
  t.equal(lines.at(-1), 'writes 1 2', 'one write for the 100 queued lines, then one per line written at once')
})
