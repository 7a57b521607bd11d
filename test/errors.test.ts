import t from 'tap'
import { readFile } from 'node:fs/promises'
import * as errors from '../src/errors.js'
import { ERROR_CODES, meaningOf } from '../src/error-codes.js'

// Statuses each stage may answer with. AUTHZ_DENIED's 403 is its default; a policy may pick another 4xx.
const STAGE_STATUSES: Record<string, number[]> = {
  GUARD: [400, 405, 408, 413, 414, 417, 431, 501, 505],
  ROUTE: [404],
  AUTHN: [401, 503],
  AUTHZ: [403, 500, 503],
  RATE: [429, 500, 503],
  UPSTREAM: [502, 503, 504],
  INTERNAL: [500],
  ADMIN: [421]
}
const CODE = /^GW_ERR_[A-Z]+(_[A-Z]+)+$/
// The one code without a <WHAT> part: the catch-all for anything that is not a stage's refusal.
const STAGELESS = new Set(['GW_ERR_INTERNAL'])

// The outcome labels of portcullis_requests_total (docs/metrics.md).
const OUTCOMES = new Set(['forwarded', 'bad_request', 'not_found', 'unauthenticated', 'denied', 'rate_limited', 'not_ready', 'upstream_error', 'error'])

// ConfigError is refused at start, never a client's answer: its own tests are in test/config/.
const exported = Object.entries(errors).filter(([name]) => name !== 'ConfigError') as Array<[string, (typeof errors)[keyof typeof errors]]>

interface Sample { name: string, code: string, statusCode: number | undefined, message: string, error: Error }
const samples: Sample[] = exported.map(([name, E]) => {
  const error = new (E as new (...args: unknown[]) => Error & { code: string, statusCode?: number })('ARG1', 'ARG2')
  return { name, code: error.code, statusCode: error.statusCode, message: error.message, error }
})

function stageOf (code: string): string {
  return code.slice('GW_ERR_'.length).split('_')[0]!
}

t.test('errors.ts exports error constructors only', async t => {
  t.ok(exported.length >= 20, `${exported.length} codes exported`)
  for (const [name, E] of exported) t.type(E, 'function', name)
  for (const s of samples) t.type(s.error, Error, `${s.name} creates an Error`)
})

t.test('each export is named after its code', async t => {
  for (const s of samples) t.equal(s.code, s.name, s.name)
})

t.test('codes follow GW_ERR_<STAGE>_<WHAT>', async t => {
  for (const { code } of samples) {
    t.ok(CODE.test(code) || STAGELESS.has(code), `${code} has the GW_ERR_<STAGE>_<WHAT> shape`)
    t.ok(stageOf(code) in STAGE_STATUSES, `${code} belongs to a known stage`)
  }
})

t.test('codes are unique', async t => {
  const codes = samples.map(s => s.code)
  t.equal(new Set(codes).size, codes.length)
})

t.test('statuses fit the stage', async t => {
  for (const { code, statusCode } of samples) {
    const allowed = STAGE_STATUSES[stageOf(code)] ?? []
    t.ok(statusCode !== undefined && allowed.includes(statusCode), `${code} answers ${String(statusCode)} (allowed: ${allowed.join(', ')})`)
  }
})

t.test('messages are filled in and safe to show', async t => {
  for (const { code, message } of samples) {
    t.ok(message.length > 0, `${code} has a message`)
    t.notMatch(message, /%[sdifjoO]/, `${code} leaves no format placeholder`)
    t.notMatch(message, /\n|\bat .*:\d+:\d+/, `${code} carries no stack`)
  }
  t.equal(new errors.GW_ERR_ROUTE_NOT_FOUND('GET', '/x').message, 'no route for GET /x')
  t.equal(new errors.GW_ERR_RATE_LIMITED(7).message, 'rate limit exceeded, retry in 7 seconds')
})

t.test('docs/errors.md documents exactly the codes that exist', async t => {
  const docs = await readFile(new URL('../docs/errors.md', import.meta.url), 'utf8')
  const codes = new Set(samples.map(s => s.code))

  const sections = new Map<string, string>()
  const parts = docs.split(/^### /m).slice(1)
  for (const part of parts) {
    const heading = part.slice(0, part.indexOf('\n')).trim()
    t.match(heading, /^GW_ERR_[A-Z_]+$/, `"### ${heading}" is a bare code`)
    t.notOk(sections.has(heading), `${heading} documented once`)
    sections.set(heading, part.slice(part.indexOf('\n')))
  }

  for (const s of samples) {
    const section = sections.get(s.code)
    if (section === undefined) {
      t.fail(`${s.code} has no "### ${s.code}" section in docs/errors.md`)
      continue
    }
    t.match(section, new RegExp(`\\b${String(s.statusCode)}\\b`), `${s.code} section states status ${String(s.statusCode)}`)
  }

  const mentioned = new Set(docs.match(/GW_ERR_[A-Z_]*[A-Z]/g) ?? [])
  for (const code of mentioned) t.ok(codes.has(code), `docs mention ${code}, which exists`)
})

t.test('every code has one row in the code table, with its own stage', async t => {
  const codes = new Set(samples.map(s => s.code))
  t.same(Object.keys(ERROR_CODES).sort(), [...codes].sort(), 'the table lists exactly the codes errors.ts exports')
  for (const [code, m] of Object.entries(ERROR_CODES)) {
    t.equal(m.stage, stageOf(code).toLowerCase(), `${code} is refused by the ${stageOf(code)} stage`)
    t.ok(OUTCOMES.has(m.outcome), `${code} has a known outcome label (${m.outcome})`)
  }
  t.equal(meaningOf('GW_ERR_NOT_A_CODE'), undefined)
  t.equal(meaningOf('toString'), undefined, 'an inherited property is not a row')
})

t.test('only the caller\'s own failures count toward a ban', async t => {
  for (const [code, m] of Object.entries(ERROR_CODES)) {
    if (m.ban === 'authn') t.ok(m.stage === 'authn' && m.outcome === 'unauthenticated', `${code} counts as a failed identity`)
    if (m.ban === 'authz') t.ok(m.stage === 'authz' && m.outcome === 'denied', `${code} counts as a policy refusal`)
  }
  // The gateway's own outages never put a caller on the deny list.
  t.equal(ERROR_CODES.GW_ERR_AUTHN_KEYS_UNAVAILABLE.ban, null)
  t.equal(ERROR_CODES.GW_ERR_AUTHN_REVOCATION_UNAVAILABLE.ban, null)
  t.equal(ERROR_CODES.GW_ERR_AUTHN_EXPIRED.ban, 'authn')
  t.equal(ERROR_CODES.GW_ERR_AUTHZ_DENIED.ban, 'authz')
})

t.test('the table in docs/errors.md says what the code table says', async t => {
  const docs = await readFile(new URL('../docs/errors.md', import.meta.url), 'utf8')
  const rows = new Map<string, string[]>()
  for (const line of docs.split('\n')) {
    const m = /^\| \[`(GW_ERR_[A-Z_]+)`\]\(#([a-z_]+)\) \|(.*)\|$/.exec(line)
    if (m === null) continue
    t.equal(m[2], m[1]!.toLowerCase(), `${m[1]} links to its own section`)
    t.notOk(rows.has(m[1]!), `${m[1]} has one row`)
    rows.set(m[1]!, m[3]!.split('|').map(c => c.trim().replaceAll('`', '')))
  }
  for (const s of samples) {
    const m = ERROR_CODES[s.code as keyof typeof ERROR_CODES]
    t.same(rows.get(s.code), [String(s.statusCode), m.stage, m.outcome, m.ban ?? 'no'], `${s.code}: status, stage, outcome, ban`)
  }
  t.equal(rows.size, samples.length, 'no row for a code that does not exist')
})
