import t from 'tap'
import { toDecision } from '../../../src/pipeline/authorize/decision.js'

// The rate-limit hints a policy may add to its decision; anything malformed denies the whole request.

t.test('key, cost and tier are kept', async t => {
  t.same(toDecision({ allow: true, rateLimit: { key: 'tenant:acme', cost: 5, tier: 'pro' } })?.rateLimit, { key: 'tenant:acme', cost: 5, tier: 'pro' })
  t.same(toDecision({ allow: true, rateLimit: { tier: 'free' } })?.rateLimit, { tier: 'free' })
  t.same(toDecision({ allow: true, rateLimit: {} })?.rateLimit, {})
  t.equal(toDecision({ allow: true })?.rateLimit, undefined, 'absent when the policy gives none')
})

t.test('a malformed hint makes the whole decision unusable', async t => {
  const bad: unknown[] = [
    null, [], 'pro', 5,
    { cost: 0 }, { cost: -1 }, { cost: 1.5 }, { cost: '2' }, { cost: 2 ** 60 },
    { key: '' }, { key: 7 }, { key: 'x'.repeat(257) },
    { tier: '' }, { tier: 'Pro' }, { tier: 'a b' }, { tier: 3 },
    { tiers: 'pro' }
  ]
  for (const rateLimit of bad) {
    t.equal(toDecision({ allow: true, rateLimit }), null, JSON.stringify(rateLimit))
  }
})
