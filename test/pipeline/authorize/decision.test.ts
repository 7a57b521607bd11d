import t from 'tap'
import { createDecisionReader, toDecision } from '../../../src/pipeline/authorize/decision.js'
import { deepFreeze } from '../../../src/pipeline/authorize/wasm-eval.js'

const NO_HEADERS = { upstream: {}, client: {} }

t.test('a bare boolean is a decision without reasons or headers', async t => {
  t.same(toDecision(true), { allow: true, reasons: [], headers: NO_HEADERS })
  t.same(toDecision(false), { allow: false, reasons: [], headers: NO_HEADERS })
})

t.test('an object with only allow gets empty reasons and headers', async t => {
  t.same(toDecision({ allow: true }), { allow: true, reasons: [], headers: NO_HEADERS })
  t.same(toDecision({ allow: false }), { allow: false, reasons: [], headers: NO_HEADERS })
})

t.test('a full decision is kept, header names lower-cased', async t => {
  const decision = toDecision({
    allow: false,
    reasons: ['not_owner', 'outside_hours'],
    status: 404,
    message: 'no such order',
    headers: {
      upstream: { 'X-Tenant': 'acme', 'x-scope': 'orders:read' },
      client: { 'Retry-After': '30', 'x-policy': 'v2 ünï' }
    }
  })
  t.same(decision, {
    allow: false,
    reasons: ['not_owner', 'outside_hours'],
    status: 404,
    message: 'no such order',
    headers: {
      upstream: { 'x-tenant': 'acme', 'x-scope': 'orders:read' },
      client: { 'retry-after': '30', 'x-policy': 'v2 ünï' }
    }
  })
})

t.test('status and message edges that are still valid', async t => {
  t.equal(toDecision({ allow: false, status: 400 })?.status, 400)
  t.equal(toDecision({ allow: false, status: 499 })?.status, 499)
  t.equal(toDecision({ allow: false, message: 'x'.repeat(200) })?.message, 'x'.repeat(200))
  t.same(toDecision({ allow: true, headers: {} })?.headers, NO_HEADERS)
  t.same(toDecision({ allow: true, headers: { upstream: { 'x-empty': '' } } })?.headers, { upstream: { 'x-empty': '' }, client: {} })
  t.same(toDecision({ allow: true, headers: { client: { 'x-tab': 'a\tb' } } })?.headers.client, { 'x-tab': 'a\tb' })
})

// Anything that is not clearly a decision must deny (null), never be read leniently.
const malformed: Array<[string, unknown]> = [
  ['undefined', undefined],
  ['null', null],
  ['a number', 1],
  ['a string', 'true'],
  ['an array', [true]],
  ['an empty array', []],
  ['an empty object', {}],
  ['allow missing', { reasons: [] }],
  ['allow as a string', { allow: 'true' }],
  ['allow as a number', { allow: 1 }],
  ['allow null', { allow: null }],
  ['reasons as a string', { allow: false, reasons: 'nope' }],
  ['reasons with a number', { allow: false, reasons: ['a', 2] }],
  ['reasons with an object', { allow: false, reasons: [{ r: 'a' }] }],
  ['reasons null', { allow: false, reasons: null }],
  ['status 399', { allow: false, status: 399 }],
  ['status 500', { allow: false, status: 500 }],
  ['status 200', { allow: false, status: 200 }],
  ['status 403.5', { allow: false, status: 403.5 }],
  ['status as a string', { allow: false, status: '403' }],
  ['status NaN', { allow: false, status: Number.NaN }],
  ['message too long', { allow: false, message: 'x'.repeat(201) }],
  ['message as a number', { allow: false, message: 42 }],
  ['headers as a string', { allow: true, headers: 'x-a: b' }],
  ['headers null', { allow: true, headers: null }],
  ['headers as a number', { allow: true, headers: 1 }],
  ['headers as an empty array', { allow: true, headers: [] }],
  ['upstream headers as an array', { allow: true, headers: { upstream: [['x-a', 'b']] } }],
  ['client headers null', { allow: true, headers: { client: null } }],
  ['upstream headers as a string', { allow: true, headers: { upstream: 'x-a: b' } }],
  ['header name with a space', { allow: true, headers: { upstream: { 'x a': 'b' } } }],
  ['header name with a colon', { allow: true, headers: { upstream: { 'x-a:': 'b' } } }],
  ['empty header name', { allow: true, headers: { upstream: { '': 'b' } } }],
  ['non-ASCII header name', { allow: true, headers: { client: { 'x-ü': 'b' } } }],
  ['header value with CR', { allow: true, headers: { upstream: { 'x-a': 'b\rSet-Cookie: x=1' } } }],
  ['header value with LF', { allow: true, headers: { client: { 'x-a': 'b\nx-evil: 1' } } }],
  ['header value with CRLF', { allow: true, headers: { upstream: { 'x-a': 'b\r\nx-evil: 1' } } }],
  ['header value with NUL', { allow: true, headers: { upstream: { 'x-a': 'b\u0000' } } }],
  ['header value beyond Latin-1', { allow: true, headers: { upstream: { 'x-a': '\u2028' } } }],
  ['header value as a number', { allow: true, headers: { upstream: { 'x-a': 1 } } }],
  ['header value as an array', { allow: true, headers: { upstream: { 'x-a': ['1', '2'] } } }],
  ['a good decision with one bad header among good ones', { allow: true, headers: { upstream: { 'x-a': 'ok', host: 'evil' } } }]
]

t.test('malformed decisions are null (deny)', async t => {
  for (const [name, value] of malformed) t.equal(toDecision(value), null, name)
})

// Names that would let a policy reframe the request or forge the gateway's own identity headers.
const reserved = [
  'host', 'Host', 'content-length', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer',
  'proxy-authorization', 'proxy-connection', 'authorization', 'Authorization',
  'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'X-Forwarded-User', 'forwarded',
  'x-portcullis-subject', 'x-portcullis-issuer', 'x-portcullis-request-id', 'X-Portcullis-Subject'
]

t.test('reserved header names are refused on either side', async t => {
  for (const name of reserved) {
    for (const side of ['upstream', 'client']) {
      t.equal(toDecision({ allow: true, headers: { [side]: { [name]: 'v' } } }), null, `${side} ${name}`)
    }
  }
})

t.test('names that only look like reserved ones are allowed', async t => {
  const headers = { 'x-forwarded': 'a', 'hosts': 'b', 'x-portcullis-tenant': 'c', 'x-te': 'd' }
  t.same(toDecision({ allow: true, headers: { upstream: headers } })?.headers.upstream, headers)
})

t.test('the decision reader judges a shared value once and shares its frozen decision', async t => {
  const read = createDecisionReader()
  const value = deepFreeze({ allow: true, reasons: ['r'], headers: { client: { 'x-a': '1' } } })
  const first = read(value)
  t.same(first, { allow: true, reasons: ['r'], headers: { upstream: {}, client: { 'x-a': '1' } } })
  t.equal(read(value), first, 'the same value: the same decision')
  t.ok(Object.isFrozen(first) && Object.isFrozen(first!.headers.client))
  t.not(read(deepFreeze({ allow: true, reasons: ['r'], headers: { client: { 'x-a': '2' } } })), first, 'another value is judged on its own')
  t.equal(read(true), read(true))
  t.equal(read(false)?.allow, false)
  t.equal(read(deepFreeze({ allow: 'yes' })), null, 'a malformed value is still null')
  t.equal(read(undefined), null)
})
