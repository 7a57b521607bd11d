import t from 'tap'
import { randomBytes } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { gatewayFiles, startGatewayProcess, startPlainUpstream } from '../helpers/gateway-process.js'
import { httpsClient } from '../helpers/http.js'

// Issue #20 (9): the README promises one audit line per admin API call. Reads and a malformed JSON
// body wrote none, and a body with an unknown property was stripped and accepted (201). Through the
// real CLI (`portcullis start`), whose log is where an operator finds the audit trail.

interface Audit { action: string, result: string, remote_address: string, actor: string | null }

const upstream = await startPlainUpstream(t, 'fn')
const files = await gatewayFiles(t)
await files.writeConfig(upstream.url)
const adminToken = randomBytes(32).toString('base64url')
writeFileSync(join(files.dir, 'admin-token'), adminToken)
writeFileSync(files.configFile, readFileSync(files.configFile, 'utf8')
  .replace('admin: { host: 127.0.0.1, port: 0 }', 'admin: { host: 127.0.0.1, port: 0, tokenFile: admin-token }'))
const gw = await startGatewayProcess(t, files.configFile)
const client = httpsClient(t)

const audits = (): Audit[] => gw.log().split('\n').filter(l => l.includes('"admin audit"')).map(l => (JSON.parse(l) as { audit: Audit }).audit)

/** Makes one call and returns its answer and the audit lines it added (waiting for them to be written). */
async function call (method: string, path: string, body?: string, token: string | null = adminToken) {
  const before = audits().length
  const res = await client.send(`${gw.adminUrl}${path}`, {
    method,
    headers: { 'x-portcullis-actor': 'test-operator', ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body } : {}),
    ...(token !== null ? { token } : {})
  })
  // The line is written before the reply is sent; a moment for the pipe to carry it.
  for (let i = 0; i < 50 && audits().length === before; i++) await new Promise(resolve => setTimeout(resolve, 20))
  await new Promise(resolve => setTimeout(resolve, 50))
  return { res, added: audits().slice(before) }
}

t.test('reads are audited', async t => {
  for (const [path, action] of [['/admin/revocations', 'list_revocations'], ['/admin/bans', 'list_bans']] as const) {
    const { res, added } = await call('GET', path)
    t.equal(res.status, 200, path)
    t.match(added, [{ action, result: 'ok', actor: 'test-operator', remote_address: '127.0.0.1' }], `${path}: one audit line`)
    t.equal(added.length, 1)
  }
})

t.test('malformed JSON bodies are refused with 400 and audited', async t => {
  const bodies = ['{', '{"kind":"sub",', 'not json', '{"kind":"sub" "value":"x"}', '[1,2', '\u0000', '{"kind":"sub","value":"a","ttlSeconds":60}}']
  for (const body of bodies) {
    const { res, added } = await call('POST', '/admin/revocations', body)
    t.equal(res.status, 400, `body ${JSON.stringify(body)}`)
    t.match(res.json(), { code: 'invalid' })
    t.match(added, [{ action: 'POST /admin/revocations', result: 'invalid' }], `body ${JSON.stringify(body)}: one audit line`)
    t.equal(added.length, 1)
  }
})

t.test('a body with an unknown property, or a value of the wrong type, is refused and nothing is revoked', async t => {
  const valid = { kind: 'sub', value: 'mallory', ttlSeconds: 60 }
  const names = ['ttl', 'reson', 'Kind', 'until', '__proto__x', 'constructor', ...Array.from({ length: 10 }, () => `x_${randomBytes(3).toString('hex')}`)]
  const variants: Array<Record<string, unknown>> = [
    ...names.map(n => ({ ...valid, [n]: 'x' })),
    ...names.slice(0, 4).map(n => ({ ...valid, [n]: { nested: true } })),
    { ...valid, ttlSeconds: '60' }, // was coerced to 60
    { ...valid, ttlSeconds: 60.5 },
    { ...valid, value: 42 },
    { kind: 'sub', value: 'mallory' },
    {}
  ]
  for (const n of names) {
    const { res } = await call('POST', '/admin/revocations', JSON.stringify({ ...valid, [n]: 'x' }))
    t.match(res.json(), { code: 'invalid', error: `body must NOT have additional properties: "${n}"` }, `${n}: named in the answer`)
  }
  for (const v of variants) {
    const { res, added } = await call('POST', '/admin/revocations', JSON.stringify(v))
    t.equal(res.status, 400, JSON.stringify(v))
    t.match(added, [{ result: 'invalid' }], `${JSON.stringify(v)}: audited`)
    t.equal(added.length, 1)
  }
  const listed = (await call('GET', '/admin/revocations')).res.json<{ revocations: unknown[] }>()
  t.same(listed.revocations, [], 'nothing was revoked')
  const { res, added } = await call('POST', '/admin/revocations', JSON.stringify(valid))
  t.equal(res.status, 201, 'the valid body is accepted')
  t.match(added, [{ action: 'revoke', result: 'ok' }])
})

t.test('every call writes exactly one line: refusals, unknown calls and deletions included', async t => {
  const calls: Array<[string, string, string | undefined, string | null, number, string]> = [
    ['GET', '/admin/revocations', undefined, null, 401, 'unauthenticated'],
    ['GET', '/admin/bans', undefined, 'wrong-token-'.repeat(4), 401, 'unauthenticated'],
    ['GET', '/admin/nothing', undefined, adminToken, 404, 'not_found'],
    ['PUT', '/admin/revocations', '{}', adminToken, 404, 'not_found'],
    ['DELETE', '/admin/revocations/nope/x', undefined, adminToken, 404, 'not_found'],
    ['DELETE', '/admin/revocations/sub/nobody', undefined, adminToken, 404, 'not_found'],
    ['DELETE', '/admin/bans/ip/192.0.2.1', undefined, adminToken, 404, 'not_found'],
    ['DELETE', '/admin/bans/other/x', undefined, adminToken, 404, 'not_found'],
    ['DELETE', '/admin/revocations/sub/mallory', undefined, adminToken, 204, 'ok']
  ]
  for (const [method, path, body, token, status, result] of calls) {
    const { res, added } = await call(method, path, body, token)
    t.equal(res.status, status, `${method} ${path}`)
    t.equal(added.length, 1, `${method} ${path}: one audit line`)
    t.equal(added[0]?.result, result, `${method} ${path}: ${result}`)
  }
  t.notOk(gw.log().includes(adminToken), 'the admin token is never logged')
})
