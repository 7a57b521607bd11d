import { spawn } from 'node:child_process'
import { get } from 'node:https'
import { Readable } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { pinned, type Tools } from './tools.js'

const REPORT_LUA = fileURLToPath(new URL('../wrk/report.lua', import.meta.url))

export interface WrkResult { rps: number, p50_us: number, p99_us: number, p999_us: number, requests: number, errors: number, non2xx: number }
export interface RateResult {
  rate: number, p50_us: number, p99_us: number, p999_us: number, max_us: number, success: number
  /** What the failed requests got (status, and vegeta's error text), most frequent first: why success is below 1. */
  failures: string[]
}

function collect (cmd: string[], stdin?: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] })
    if (stdin !== undefined) stdin.pipe(child.stdin)
    else child.stdin.end()
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => { out += String(d) })
    child.stderr.on('data', (d: Buffer) => { err += String(d) })
    child.once('error', reject)
    child.once('exit', code => code === 0 ? resolve(out) : reject(new Error(`${cmd[0]} exited ${String(code)}: ${err || out}`)))
  })
}

/** Closed-loop saturation: wrk on `cpu`, one thread, `connections` keep-alive connections, fixed time. */
export async function runWrk (tools: Tools, cpu: number, url: string, headers: Record<string, string>, seconds: number, connections: number): Promise<WrkResult> {
  const args = [tools.wrk, '-t1', `-c${connections}`, `-d${seconds}s`, '--timeout', '5s', '-s', REPORT_LUA]
  for (const [k, v] of Object.entries(headers)) args.push('-H', `${k}: ${v}`)
  const out = await collect(pinned(tools, cpu, [...args, url]))
  const line = out.split('\n').reverse().find(l => l.startsWith('{'))
  if (line === undefined) throw new Error(`no wrk result in: ${out}`)
  const r = JSON.parse(line) as { requests: number, duration_us: number, errors: number, non2xx: number, p50_us: number, p99_us: number, p999_us: number }
  return { rps: r.requests / (r.duration_us / 1e6), p50_us: r.p50_us, p99_us: r.p99_us, p999_us: r.p999_us, requests: r.requests, errors: r.errors, non2xx: r.non2xx }
}

/**
 * One request as wrk sends them, made right after a run in which some failed, so that the run says what
 * the failures were: the status and the gateway's error code (or the start of the body), or the socket
 * error. wrk only counts them. Like wrk, it does not check the certificate.
 */
export async function probeOnce (url: string, headers: Record<string, string>): Promise<string> {
  return await new Promise(resolve => {
    const req = get(url, { headers, rejectUnauthorized: false, timeout: 5000 }, res => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => { body += d })
      res.on('end', () => resolve(`${String(res.statusCode)} ${/"code":"(\w+)"/.exec(body)?.[1] ?? body.slice(0, 80)}`))
    })
    req.on('error', err => resolve(`socket: ${err.message}`))
    req.on('timeout', () => req.destroy(new Error('no answer within 5 s')))
  })
}

/**
 * Open-loop constant rate: vegeta sends `rate` requests/s whatever the latency, so queueing shows.
 * Connections are capped and the first `warmupSeconds` (a fresh load generator opening its connections) are
 * dropped from the percentiles.
 */
export async function runVegeta (tools: Tools, cpu: number, url: string, headers: Record<string, string>, rate: number, seconds: number, warmupSeconds = 8): Promise<RateResult> {
  const attack = pinned(tools, cpu, [tools.vegeta, 'attack', `-rate=${rate}/s`, `-duration=${seconds + warmupSeconds}s`, '-insecure',
    // HTTP/1.1, as wrk: vegeta's Go client takes h2 whenever ALPN offers it, which the gateway's listener
    // does and the bare proxy's does not, and the gateway was then measured over two or three
    // multiplexed connections against the bare proxy's fifty (HTTP/2 has its own scenario, h2load).
    '-http2=false', '-keepalive=true', '-connections=50', '-max-connections=50', '-workers=20', '-max-workers=200',
    ...Object.entries(headers).flatMap(([k, v]) => ['-header', `${k}: ${v}`])])
  const results = await new Promise<Buffer>((resolve, reject) => {
    const child = spawn(attack[0]!, attack.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] })
    Readable.from([`GET ${url}\n`]).pipe(child.stdin)
    const chunks: Buffer[] = []
    child.stdout.on('data', (d: Buffer) => chunks.push(d))
    child.once('error', reject)
    child.once('exit', code => code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`vegeta attack exited ${String(code)}`)))
  })
  // CSV columns: timestamp (ns), status, latency (ns), ...
  const rows = (await collect([tools.vegeta, 'encode', '--to', 'csv'], Readable.from([results]))).trim().split('\n').map(l => l.split(','))
  const t0 = Number(rows[0]?.[0] ?? 0)
  const kept = rows.filter(r => Number(r[0]) - t0 >= warmupSeconds * 1e9)
  const latencies = kept.map(r => Number(r[2]) / 1000).sort((a, b) => a - b)
  const at = (q: number): number => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? NaN
  return {
    rate,
    p50_us: at(0.5),
    p99_us: at(0.99),
    p999_us: at(0.999),
    max_us: latencies.at(-1) ?? NaN,
    success: kept.filter(r => r[1] === '200').length / Math.max(1, kept.length),
    failures: failureKinds(kept.filter(r => r[1] !== '200'))
  }
}

// CSV: status is column 1, vegeta's error text column 5 (quoted when it has a comma: cut at the first).
function failureKinds (failed: string[][]): string[] {
  const kinds = new Map<string, number>()
  for (const r of failed) {
    const kind = `${r[1]} ${(r[5] ?? '').replace(/^"/, '').slice(0, 120)}`.trim()
    kinds.set(kind, (kinds.get(kind) ?? 0) + 1)
  }
  return [...kinds].sort((a, b) => b[1] - a[1]).slice(0, 3).map(([k, n]) => `${n}× ${k}`)
}
