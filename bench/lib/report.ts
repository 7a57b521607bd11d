/*
 * Turns the runs into bench/RESULTS.md (medians with min-max) and bench/results.svg (throughput and
 * p99 per scenario). The SVG is a few rectangles, written directly rather than pulling in a charting
 * stack for two bar charts.
 */

export interface Sample {
  rps: number, p50_us: number, p99_us: number, p999_us: number, cpu_us_per_req: number, errors: number
  /** When some failed: socket errors and non-2xx answers apart, and what one request got right after. */
  failure?: string
}
export interface ScenarioResult { id: string, label: string, samples: Sample[], rss_mib: number }

export function median (xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

export function spread (xs: number[], digits = 0): string {
  const f = (x: number): string => x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
  return `${f(median(xs))} (${f(Math.min(...xs))}–${f(Math.max(...xs))})`
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;')

export function chartSvg (scenarios: ScenarioResult[]): string {
  const width = 760
  const rowH = 26
  const top = 40
  const labelW = 230
  const panelW = (width - labelW - 40) / 2
  const height = top + scenarios.length * rowH + 30
  const rps = scenarios.map(s => median(s.samples.map(x => x.rps)))
  const p99 = scenarios.map(s => median(s.samples.map(x => x.p99_us)) / 1000)
  const maxR = Math.max(...rps)
  const maxL = Math.max(...p99)
  const bars = scenarios.map((s, i) => {
    const y = top + i * rowH
    const w1 = (rps[i]! / maxR) * (panelW - 60)
    const w2 = (p99[i]! / maxL) * (panelW - 60)
    const x2 = labelW + panelW + 20
    return `<text x="${labelW - 8}" y="${y + 16}" text-anchor="end">${esc(s.label)}</text>
<rect x="${labelW}" y="${y + 4}" width="${w1.toFixed(1)}" height="16" fill="#3b6ea5"/>
<text x="${(labelW + w1 + 4).toFixed(1)}" y="${y + 16}">${Math.round(rps[i]!).toLocaleString('en-US')}</text>
<rect x="${x2}" y="${y + 4}" width="${w2.toFixed(1)}" height="16" fill="#c0504d"/>
<text x="${(x2 + w2 + 4).toFixed(1)}" y="${y + 16}">${p99[i]!.toFixed(2)} ms</text>`
  }).join('\n')
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="${labelW}" y="22" font-weight="bold">Throughput (requests/s, median)</text>
<text x="${labelW + panelW + 20}" y="22" font-weight="bold">p99 latency at saturation (median)</text>
${bars}
</svg>
`
}
