import t from 'tap'
import { createBanList } from '../../../src/pipeline/deny-list/bans.js'
import { createRevocationList } from '../../../src/pipeline/deny-list/revocations.js'
import type { Principal } from '../../../src/pipeline/types.js'

// The ban and revocation tables on a clock the test moves: windows, doubling, the cap, forgetting.

const RULE = { enabled: true, failures: 3, windowSeconds: 10, on: ['authn', 'authz'] as Array<'authn' | 'authz'>, banSeconds: 5, maxBanSeconds: 20 }

function clock () {
  let now = 1_000_000
  return { now: () => now, advance: (s: number) => { now += s * 1000 } }
}

t.test('failures within the window ban; the same number spread wider does not', async t => {
  const c = clock()
  const bans = createBanList(c.now)
  t.teardown(bans.close)
  for (let i = 0; i < 3; i++) { t.equal(bans.fail('ip', 'slow', RULE), null); c.advance(6) }
  t.equal(bans.banned('ip', 'slow'), null, '3 failures over 18 s: never 3 within 10 s')
  t.equal(bans.fail('ip', 'fast', RULE), null)
  t.equal(bans.fail('ip', 'fast', RULE), null)
  const ban = bans.fail('ip', 'fast', RULE)
  t.match(ban, { scope: 'ip', value: 'fast', strikes: 1, until: c.now() + 5000 })
  t.ok(bans.banned('ip', 'fast'))
  t.equal(bans.banned('sub', 'fast'), null, 'scopes are separate')
  c.advance(5)
  t.equal(bans.banned('ip', 'fast'), null, 'ends after banSeconds')
})

t.test('each further ban doubles, up to the cap; a long quiet spell forgets the strikes', async t => {
  const c = clock()
  const bans = createBanList(c.now)
  t.teardown(bans.close)
  const strike = (): number => {
    let ban = null
    for (let i = 0; i < 3; i++) ban = bans.fail('sub', 'mallory', RULE)
    t.ok(ban, 'banned')
    const seconds = (ban!.until - c.now()) / 1000
    c.advance(seconds)
    return seconds
  }
  t.same([strike(), strike(), strike(), strike()], [5, 10, 20, 20], '5, 10, 20, then capped at 20')
  c.advance(2 * 20)
  t.equal(strike(), 5, 'after twice the cap without trouble, back to banSeconds')
})

t.test('lifting clears the ban and its strikes; failures while banned do not extend it', async t => {
  const c = clock()
  const bans = createBanList(c.now)
  t.teardown(bans.close)
  for (let i = 0; i < 3; i++) bans.fail('ip', '10.0.0.1', RULE)
  const until = bans.banned('ip', '10.0.0.1')!.until
  for (let i = 0; i < 10; i++) t.equal(bans.fail('ip', '10.0.0.1', RULE), null)
  t.equal(bans.banned('ip', '10.0.0.1')!.until, until, 'unchanged')
  t.same(bans.list().map(b => b.value), ['10.0.0.1'])
  t.equal(bans.count('ip'), 1)
  t.equal(bans.lift('ip', '10.0.0.1'), true)
  t.equal(bans.lift('ip', '10.0.0.1'), false)
  t.equal(bans.banned('ip', '10.0.0.1'), null)
  for (let i = 0; i < 3; i++) bans.fail('ip', '10.0.0.1', RULE)
  t.equal(bans.banned('ip', '10.0.0.1')!.strikes, 1, 'starts again from the first ban')
})

t.test('a ban imposed by another replica: in force here, the longer one wins, its strikes carry on', async t => {
  const c = clock()
  const bans = createBanList(c.now)
  t.teardown(bans.close)
  bans.impose({ scope: 'sub', value: 'mallory', until: c.now() + 30_000, strikes: 2 })
  t.match(bans.banned('sub', 'mallory'), { until: c.now() + 30_000, strikes: 2 })
  bans.impose({ scope: 'sub', value: 'mallory', until: c.now() + 10_000, strikes: 1 })
  t.equal(bans.banned('sub', 'mallory')!.until, c.now() + 30_000, 'a shorter ban does not cut a longer one')
  bans.impose({ scope: 'ip', value: '10.0.0.9', until: c.now() - 1, strikes: 1 })
  t.equal(bans.banned('ip', '10.0.0.9'), null, 'an expired one is ignored')
  c.advance(31)
  t.equal(bans.banned('sub', 'mallory'), null, 'it ends when it says')
  for (let i = 0; i < 3; i++) bans.fail('sub', 'mallory', RULE)
  t.equal(bans.banned('sub', 'mallory')!.strikes, 3, 'this replica\'s next ban doubles from the shared strikes')
})

t.test('revocations match by token id, subject or certificate thumbprint, until they end', async t => {
  const c = clock()
  const list = createRevocationList(c.now)
  const cert = { thumbprintSha256: 'T'.repeat(43) } as Principal['certificate']
  const p = (sub: string, jti?: string): Principal => ({ type: 'jwt', issuer: 'i', issuerId: 'i', subject: sub, claims: jti !== undefined ? { jti } : {}, certificate: null })
  list.add({ kind: 'jti', value: 'j1', at: c.now(), until: c.now() + 10_000 })
  list.add({ kind: 'sub', value: 'eve', at: c.now(), until: c.now() + 20_000 })
  list.add({ kind: 'cert', value: 'T'.repeat(43), at: c.now(), until: c.now() + 30_000 })
  list.add({ kind: 'sub', value: 'already-over', at: c.now(), until: c.now() - 1 })
  t.equal(list.match(p('alice', 'j1'), null)?.kind, 'jti')
  t.equal(list.match(p('alice', 'j2'), null), null)
  t.equal(list.match(p('eve'), null)?.kind, 'sub')
  t.equal(list.match(p('alice'), cert)?.kind, 'cert')
  t.equal(list.match({ ...p('alice'), certificate: cert }, null)?.kind, 'cert', 'the certificate on the principal counts too')
  t.equal(list.match(null, null), null)
  t.equal(list.list().length, 3, 'an already ended revocation is not kept')
  c.advance(10)
  t.equal(list.match(p('alice', 'j1'), null), null, 'the jti revocation ended')
  t.equal(list.count('sub'), 1)
  c.advance(20)
  t.same(list.list(), [])
})
