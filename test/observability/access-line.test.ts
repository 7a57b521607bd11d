import t, { type Test } from 'tap'
import { Writable } from 'node:stream'
import Fastify from 'fastify'
import { createAccessLog, lazyRequestLogger, loggerOptions, quietRequestLogging } from '../../src/observability/logger.js'

// The access line skips pino's field-by-field serialisation (issue #19) but must stay the line pino
// would write: same framing, same fields in the same order, same values, the same level gate. Other
// lines keep pino's redaction.

function capture (t: Test) {
  const lines: string[] = []
  const stream = new Writable({ write (chunk, _enc, done) { lines.push(String(chunk)); done() } })
  const app = (level: string) => {
    const app = Fastify({ logger: loggerOptions(level, stream), logController: quietRequestLogging() })
    t.teardown(() => app.close())
    return app
  }
  return { lines, app }
}

const fields = {
  request_id: '3d1f2c4e-8a7b-4c1d-9e2f-0a1b2c3d4e5f',
  access: true,
  method: 'GET',
  protocol: 'HTTP/1.1',
  path: '/hello/"quoted"\\back\nline\u2028',
  status: 200,
  duration_ms: 1.25,
  client_ip: '127.0.0.1',
  route_id: 'hello',
  outcome: 'forwarded',
  code: null,
  subject: `alice","subject":"root`,
  principal_type: 'jwt',
  authn_reason: null,
  decision_id: 'd-1',
  policy_revision: 'rev-1',
  allow: true,
  reasons: ['ok', 'role "reader"'],
  rate_limit: 'passed',
  upstream_status: 200,
  upstream_ms: Number.NaN // pino writes null for a number that is not finite; so must the access line
}

const withoutTime = (line: string): string => line.replace(/,"time":\d+/, ',"time":0')

t.test('the access line is byte for byte what the request logger would write', async t => {
  const { lines, app } = capture(t)
  const log = app('info').log
  const { request_id: requestId, ...rest } = fields
  log.child({ request_id: requestId }).info(rest, 'request completed')
  createAccessLog(log, 'request completed')(fields)
  t.equal(lines.length, 2)
  t.equal(withoutTime(lines[1]!), withoutTime(lines[0]!))
  const parsed = JSON.parse(lines[1]!) as Record<string, unknown>
  t.strictSame(Object.keys(parsed), ['level', 'time', 'pid', 'hostname', ...Object.keys(fields), 'msg'], 'fields in order')
  t.equal(parsed.subject, fields.subject, 'a hostile value stays inside its string')
  t.equal(parsed.upstream_ms, null)
})

t.test('the access line follows the logger level', async t => {
  const { lines, app } = capture(t)
  createAccessLog(app('warn').log, 'request completed')(fields)
  createAccessLog(app('silent').log, 'request completed')(fields)
  t.equal(lines.length, 0, 'no access line above info')
})

t.test('a logger with its own per-line formatting gets the line through pino', async t => {
  const lines: string[] = []
  const stream = new Writable({ write (chunk, _enc, done) { lines.push(String(chunk)); done() } })
  const app = Fastify({ logger: { ...loggerOptions('info', stream) as object, mixin: () => ({ zone: 'a' }) }, logController: quietRequestLogging() })
  t.teardown(() => app.close())
  createAccessLog(app.log, 'request completed')(fields)
  t.match(JSON.parse(lines[0]!), { zone: 'a', access: true, msg: 'request completed' }, 'the mixin is applied')
})

t.test('every other line keeps the redaction', async t => {
  const { lines, app } = capture(t)
  const log = app('info').log
  log.info({ token: 'secret-token', headers: { authorization: 'Bearer x', cookie: 'c=1' } }, 'something')
  t.notMatch(lines[0]!, /secret-token|Bearer x|c=1/)
  t.match(JSON.parse(lines[0]!), { token: '[redacted]', headers: { authorization: '[redacted]', cookie: '[redacted]' } })
})

t.test('a request logger made on first use logs as the request child would: request_id, level, redaction', async t => {
  const lines: string[] = []
  const stream = new Writable({ write (chunk, _enc, done) { lines.push(String(chunk)); done() } })
  const app = Fastify({ logger: loggerOptions('info', stream), logController: quietRequestLogging(), childLoggerFactory: lazyRequestLogger, genReqId: () => 'req-1' })
  t.teardown(() => app.close())
  app.get('/quiet', async () => 'ok')
  app.get('/loud', async request => {
    request.log.debug('not at info')
    request.log.warn({ token: 'secret-token', n: 1 }, 'something odd')
    request.log.child({ part: 'x' }).error('nested')
    return request.log.level
  })
  t.equal((await app.inject('/quiet')).body, 'ok')
  t.equal(lines.length, 0, 'nothing logged, nothing written')
  t.equal((await app.inject('/loud')).body, 'info', 'the level is the parent\'s')
  t.equal(lines.length, 2)
  t.match(JSON.parse(lines[0]!), { level: 40, request_id: 'req-1', token: '[redacted]', n: 1, msg: 'something odd' })
  t.match(JSON.parse(lines[1]!), { level: 50, request_id: 'req-1', part: 'x', msg: 'nested' })
})
