import t from 'tap'
import { canonicalizeTarget } from '../../../src/pipeline/guard/canonical-path.js'
import { pathSegments } from '../../../src/pipeline/authorize/input.js'

// [request target, path the gateway uses, query]
const accepted: Array<[string, string, string]> = [
  ['/', '/', ''],
  ['/a/b', '/a/b', ''],
  ['/a/b/', '/a/b/', ''],
  ['/a/b?x=1&y=2', '/a/b', 'x=1&y=2'],
  ['/a?', '/a', ''],
  ['/a?next=/b/../c//d%2F', '/a', 'next=/b/../c//d%2F'],
  ['/a%20b', '/a%20b', ''],
  ['/caf%C3%A9', '/caf%C3%A9', ''],
  ['/a%25b', '/a%25b', ''],
  ['/a%3Fb', '/a%3Fb', ''],
  ['/v1/users/123.json', '/v1/users/123.json', ''],
  ['/a/.well-known/..x/...', '/a/.well-known/..x/...', ''],
  ['/a-b_c~d/e:f@g!$&\'()*+,=', '/a-b_c~d/e:f@g!$&\'()*+,=', '']
]

// [request target, why it must be refused]
const rejected: Array<[string, string]> = [
  ['', 'empty target'],
  ['//a', 'leading empty segment'],
  ['/a//b', 'empty segment'],
  ['/a//', 'empty segment before the trailing slash'],
  ['/a/./b', 'dot segment'],
  ['/a/../b', 'dot-dot segment'],
  ['/a/..', 'trailing dot-dot segment'],
  ['/.', 'lone dot segment'],
  ['/%2e%2e/x', 'encoded dot-dot'],
  ['/a/%2E/b', 'encoded dot'],
  ['/a%2Fb', 'encoded slash'],
  ['/a%2fb', 'encoded slash, lower case'],
  ['/a%5cb', 'encoded backslash'],
  ['/a%5Cb', 'encoded backslash, upper case'],
  ['/a\\b', 'raw backslash'],
  ['/a%00', 'encoded NUL'],
  ['/a%0a', 'encoded line feed'],
  ['/a%7F', 'encoded DEL'],
  ['/a%41', 'needlessly encoded letter'],
  ['/a%7e', 'needlessly encoded tilde'],
  ['/a%2D', 'needlessly encoded hyphen'],
  ['/%zz', 'invalid hex'],
  ['/a%2', 'truncated percent-encoding'],
  ['/a%', 'lone percent sign'],
  ['/%c3%28', 'invalid UTF-8'],
  ['/%80', 'lone continuation byte'],
  ['/%c0%ae', 'overlong encoding of "."'],
  ['http://evil/x', 'absolute-form'],
  ['evil/x', 'relative target'],
  ['*', 'asterisk-form'],
  ['/a#f', 'fragment'],
  ['/a?x#f', 'fragment after the query'],
  ['/a b', 'raw space'],
  ['/a\tb', 'raw tab'],
  ['/a\u0000', 'raw NUL'],
  ['/a\u007f', 'raw DEL'],
  ['/café', 'raw non-ASCII'],
  ['/a\u2215b', 'raw division slash look-alike'],
  ['/public/..;/admin', 'dot-dot with a path parameter (Tomcat reads it as "..")'],
  ['/a;jsessionid=1', 'path parameter: a servlet function would strip it and see "/a"'],
  ['/a/b;v=1/c', 'path parameter mid-path']
]

t.test('canonical targets are accepted and used byte for byte', async t => {
  for (const [target, path, query] of accepted) {
    t.same(canonicalizeTarget(target), { ok: true, path, query }, JSON.stringify(target))
  }
})

t.test('ambiguous or non-canonical targets are refused with a reason', async t => {
  for (const [target, why] of rejected) {
    const verdict = canonicalizeTarget(target)
    t.equal(verdict.ok, false, `${JSON.stringify(target)} (${why})`)
    if (!verdict.ok) {
      t.type(verdict.reason, 'string')
      t.ok(verdict.reason.trim().length > 0, `${JSON.stringify(target)} has a reason`)
    }
  }
})

t.test('reasons tell the kinds of refusal apart', async t => {
  const reason = (target: string): string => {
    const v = canonicalizeTarget(target)
    return v.ok ? '<accepted>' : v.reason
  }
  t.match(reason('/a/../b'), /dot segment/)
  t.match(reason('/a//b'), /empty path segment/)
  t.match(reason('/a%2Fb'), /encoded slash/)
  t.match(reason('/a%41'), /needlessly percent-encoded/)
  t.match(reason('/%zz'), /invalid percent-encoding/)
  t.match(reason('/%c3%28'), /UTF-8/)
  t.match(reason('/a#f'), /fragment/)
  t.match(reason('http://evil/x'), /absolute path/)
})

t.test('limits.pathParameters: allow accepts ";" but never a dot segment carrying parameters', async t => {
  const allow = { pathParameters: true }
  t.same(canonicalizeTarget('/a;jsessionid=1/b;v=2', allow), { ok: true, path: '/a;jsessionid=1/b;v=2', query: '' })
  t.same(canonicalizeTarget('/a/;x', allow), { ok: true, path: '/a/;x', query: '' }, 'a segment that is only parameters')
  for (const target of ['/public/..;/admin', '/a/.;x/b', '/a/..;jsessionid=1', '/..;']) {
    const v = canonicalizeTarget(target, allow)
    t.ok(!v.ok && /dot segment/.test(v.reason), `${target} refused as a dot segment`)
  }
  t.match(canonicalizeTarget('/a;x'), { ok: false, reason: /path parameter/ }, 'refused by default, with its own reason')
})

t.test('pathSegments decodes each segment of a canonical path', async t => {
  t.same(pathSegments('/'), [])
  t.same(pathSegments('/a'), ['a'])
  t.same(pathSegments('/a/b'), ['a', 'b'])
  t.same(pathSegments('/a/b/'), ['a', 'b', ''], 'a trailing slash is an empty last segment')
  t.same(pathSegments('/a%20b/c'), ['a b', 'c'])
  t.same(pathSegments('/caf%C3%A9'), ['café'])
  t.same(pathSegments('/a%3Fb/%25'), ['a?b', '%'], 'decoded once only')
})

t.test('every accepted path splits into segments without error', async t => {
  for (const [target] of accepted) {
    const v = canonicalizeTarget(target)
    if (!v.ok) {
      t.fail(`${target} should have been accepted`)
      continue
    }
    const segments = pathSegments(v.path)
    t.ok(segments.every(s => !s.includes('/') && s !== '.' && s !== '..'), `${target} segments are plain names`)
  }
})
