import { readFile, writeFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { rssMiB } from './lib/procs.js'
import { runWrk } from './lib/load.js'
import { LOAD_CPU, startStack } from './lib/stack.js'

/*
 * npm run bench:soak: sustained load on the full pipeline (ES256) for five minutes, sampling the
 * gateway's RSS every 10 s. "Flat" means no growth: the last minute's median RSS is at most 10 %
 * above the second minute's (the first minute is warm-up: JIT, pools, caches; V8 may also give
 * memory back later, which is not growth). Writes bench/soak.json, which bench/RESULTS.md picks up
 * on the next `npm run bench`, and bench/SOAK.md. `--report` rewrites both from soak.json's samples.
 */

const HERE = fileURLToPath(new URL('.', import.meta.url))
const { values } = parseArgs({ options: { minutes: { type: 'string', default: '5' }, report: { type: 'boolean', default: false } } })
const STEP_S = 10

interface SoakSample { t_s: number, rss_mib: number, rps: number, p99_us: number, errors: number }

async function report (samples: SoakSample[], minutes: number, date: string): Promise<boolean> {
  const window = (from: number, to: number): number[] => samples.filter(s => s.t_s > from && s.t_s <= to).map(s => s.rss_mib).sort((a, b) => a - b)
  const med = (xs: number[]): number => xs[Math.floor(xs.length / 2)] ?? NaN
  const early = med(window(60, 120))
  const late = med(window(minutes * 60 - 60, minutes * 60))
  const result = {
    minutes,
    date,
    rss_start_mib: early,
    rss_end_mib: late,
    rss_max_mib: Math.max(...samples.map(s => s.rss_mib)),
    flat: late <= early * 1.1,
    errors: samples.reduce((a, s) => a + s.errors, 0),
    samples
  }
  await writeFile(`${HERE}soak.json`, JSON.stringify(result, null, 2) + '\n')
  await writeFile(`${HERE}SOAK.md`, `# Soak: full pipeline (ES256) under sustained load for ${minutes} minutes

Produced by \`npm run bench:soak\` on ${date.slice(0, 16).replace('T', ' ')} UTC (wrk, 50 connections, pinned as in
[README.md](README.md)). RSS of the gateway process, sampled every ${STEP_S} s.

- RSS median in minute 2: ${early.toFixed(1)} MiB; in the last minute: ${late.toFixed(1)} MiB; max ${result.rss_max_mib.toFixed(1)} MiB
- Flat (no growth above 10 % after the first minute): **${result.flat ? 'yes' : 'no'}**; errors: ${result.errors}

| t (s) | RSS MiB | req/s | p99 ms |
|---|---|---|---|
${samples.map(s => `| ${s.t_s} | ${s.rss_mib.toFixed(1)} | ${Math.round(s.rps)} | ${(s.p99_us / 1000).toFixed(2)} |`).join('\n')}
`)
  return result.flat
}

if (values.report) {
  const previous = JSON.parse(await readFile(`${HERE}soak.json`, 'utf8')) as { samples: SoakSample[], minutes: number, date?: string }
  await report(previous.samples, previous.minutes, previous.date ?? new Date().toISOString())
} else {
  const minutes = Number(values.minutes)
  const stack = await startStack(`${HERE}.work`)
  try {
    const target = stack.scenarios.find(s => s.id === 'portcullis-es256')!
    const samples: SoakSample[] = []
    for (let t = 0; t < minutes * 60; t += STEP_S) {
      const r = await runWrk(stack.tools, LOAD_CPU, target.url, target.headers, STEP_S, 50)
      samples.push({ t_s: t + STEP_S, rss_mib: rssMiB(target.proc.pids()), rps: r.rps, p99_us: r.p99_us, errors: r.errors + r.non2xx })
      process.stderr.write(`${t + STEP_S}s rss ${samples.at(-1)!.rss_mib.toFixed(1)} MiB, ${Math.round(r.rps)} req/s\n`)
    }
    const flat = await report(samples, minutes, new Date().toISOString())
    process.stderr.write(`wrote bench/soak.json and bench/SOAK.md (flat: ${flat})\n`)
  } finally {
    await stack.stop()
  }
}
