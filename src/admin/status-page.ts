/*
 * The /status document as a small HTML page for people: the same data as the JSON, laid out as
 * tables, with no script and no external assets. Every value is escaped: route ids and URLs come from
 * config, but an operator's page must not run whatever a config file or an issuer's name contains.
 */

function escape (value: unknown): string {
  return String(value ?? '—').replace(/[&<>"']/g, c => `&#${c.charCodeAt(0)};`)
}

function table (rows: Array<Record<string, unknown>>): string {
  const first = rows[0]
  if (first === undefined) return '<p>none</p>'
  const columns = Object.keys(first)
  const head = columns.map(c => `<th>${escape(c)}</th>`).join('')
  const body = rows.map(r => `<tr>${columns.map(c => `<td>${escape(format(r[c]))}</td>`).join('')}</tr>`).join('\n')
  return `<table><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`
}

function format (value: unknown): unknown {
  if (Array.isArray(value)) return value.join(', ')
  if (value !== null && typeof value === 'object') return JSON.stringify(value)
  return value
}

function section (name: string, value: unknown): string {
  const title = `<h2>${escape(name)}</h2>`
  if (Array.isArray(value)) return `${title}\n${table(value as Array<Record<string, unknown>>)}`
  if (value !== null && typeof value === 'object') {
    return `${title}\n${table(Object.entries(value).map(([k, v]) => ({ name: k, value: v })))}`
  }
  return `${title}\n<p>${escape(value)}</p>`
}

export function renderStatusPage (status: Record<string, unknown>): string {
  const { ready, ...sections } = status
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Portcullis status</title>
<style>body{font:14px system-ui,sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:left}.ready{color:#070}.not-ready{color:#b00}</style>
</head><body>
<h1>Portcullis <span id="ready" class="${ready === true ? 'ready' : 'not-ready'}">${ready === true ? 'ready' : 'not ready'}</span></h1>
${Object.entries(sections).map(([name, value]) => section(name, value)).join('\n')}
</body></html>
`
}
