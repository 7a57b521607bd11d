import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { cp, readFile, symlink } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { freePort } from '../helpers/ports.js'
import { systemTool } from '../helpers/system-tools.js'

/*
 * Walks docs/getting-started.md as a reader would: every ```sh block is run in order, in a copy of the
 * project, with the real gateway, demo issuer and demo function, and every block the guide marks
 * *output* must equal what the commands before it printed (`…` stands for a varying part, such as a
 * request id). The only rewrites: the demo's fixed ports become free ones, `npm ci && npm start`
 * becomes what `npm start` runs after compiling TypeScript (`npm test` has built dist/): the policy
 * build and `node dist/cli.js demo`; and `npx portcullis` is that same dist/cli.js. Long-running commands run in the background
 * and are stopped where the guide says Ctrl-C.
 */

const ROOT = resolve(import.meta.dirname, '../..')
const GUIDE = join(ROOT, 'docs/getting-started.md')
// The guide's commands call curl through bash: a missing curl names its package here, not `command not found` mid-run.
systemTool('curl')

interface Step { code: string, output?: string }

/** The ```sh blocks of the guide, each with the ```text block after an *output* line, if any. */
function steps (markdown: string): Step[] {
  const out: Step[] = []
  const block = /(\*output\*\s*\n\s*\n)?```(sh|text)\n([\s\S]*?)```/g
  for (const m of markdown.matchAll(block)) {
    if (m[2] === 'sh') out.push({ code: m[3]! })
    else if (m[1] !== undefined && out.length > 0) out[out.length - 1]!.output = m[3]!
  }
  return out
}


function matches (actual: string, expected: string): boolean {
  const pattern = expected.trimEnd().split('…').map(s => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*?')
  return new RegExp(`^${pattern}$`, 's').test(actual.trimEnd())
}

const guide = await readFile(GUIDE, 'utf8')
const dir = t.testdir()
for (const part of ['package.json', 'dist', 'scripts', 'policies']) await cp(join(ROOT, part), join(dir, part), { recursive: true })
await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'))

const ports = { gateway: await freePort(), admin: await freePort(), issuer: await freePort(), fn: await freePort() }
const portList = `${ports.gateway},${ports.admin},${ports.issuer},${ports.fn}`
const CLI = 'node dist/cli.js'

function rewrite (code: string): string {
  return code
    .replace('npm ci && npm start', `node scripts/opa.mjs build >/dev/null && ${CLI} demo run --ports ${portList}`)
    .replace(/npx portcullis demo (config|run)/g, `npx portcullis demo $1 --ports ${portList}`)
    .replaceAll('npx portcullis', CLI)
    .replaceAll('127.0.0.1:8443', `127.0.0.1:${ports.gateway}`)
    .replaceAll('127.0.0.1:9090', `127.0.0.1:${ports.admin}`)
}

let background: ChildProcess | undefined
const stopBackground = async (): Promise<void> => {
  const child = background
  background = undefined
  if (child === undefined || child.exitCode !== null) return
  const exited = new Promise(resolve => child.once('exit', resolve))
  process.kill(-child.pid!, 'SIGINT') // Ctrl-C
  await exited
}
t.teardown(stopBackground)

/** Starts a long-running command and waits until the gateway answers on its port. */
async function startBackground (command: string): Promise<string> {
  await stopBackground()
  let log = ''
  // Its own process group, so Ctrl-C (SIGINT to the group) reaches every process of the command line.
  const child = spawn('bash', ['-c', command], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  child.stdout.on('data', (d: Buffer) => { log += d.toString() })
  child.stderr.on('data', (d: Buffer) => { log += d.toString() })
  background = child
  const started = Date.now()
  while (!log.includes('"portcullis is listening"') && !log.includes('Portcullis demo is running')) {
    if (child.exitCode !== null) throw new Error(`${command} exited: ${log}`)
    if (Date.now() - started > 60_000) throw new Error(`${command} did not start: ${log}`)
    await new Promise(resolve => setTimeout(resolve, 100))
  }
  return log
}

/** Runs a block in bash; variables set by earlier blocks (TOKEN, ...) carry over, as in one terminal. */
async function run (code: string): Promise<{ code: number | null, out: string }> {
  const script = `set -ea; [ -f .guide-env ] && . ./.guide-env; ${code}\ndeclare -p | grep -E '^declare -x [A-Z_]+=' | grep -vE ' (PWD|OLDPWD|SHLVL|_)=' > .guide-env`
  const child = spawn('bash', ['-c', script], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  child.stderr.on('data', (d: Buffer) => { out += d.toString() })
  const code_ = await new Promise<number | null>(resolve => child.once('exit', resolve))
  return { code: code_, out }
}

t.test('every command of the getting-started guide works and prints what the guide shows', async t => {
  const all = steps(guide)
  t.ok(all.length >= 6, 'the guide has its steps')
  t.ok(all.filter(s => s.output !== undefined).length >= 4, 'and shows their output')
  for (const step of all) {
    const code = rewrite(step.code.trim())
    const name = step.code.trim().split('\n')[0]!
    if (/demo run|npm start/.test(step.code)) {
      t.match(await startBackground(code), /listening|running/, `${name}: running`)
      continue
    }
    if (step.code.includes('demo config')) await stopBackground() // the guide stops the demo first
    const res = await run(code)
    t.equal(res.code, 0, `${name}: exit 0\n${res.out}`)
    if (step.output !== undefined) {
      t.ok(matches(res.out, step.output), `${name}: prints what the guide shows`, { found: res.out, wanted: step.output })
    }
  }
})
