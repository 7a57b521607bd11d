import t from 'tap'
import { createLocalJWKSet, jwtVerify } from 'jose'
import { createTurnBatch } from '../../../../src/pipeline/forward/credentials/turn-batch.js'
import { assertionKind } from '../../../../src/pipeline/forward/credentials/assertion.js'
import { createKeyRing } from '../../../../src/pipeline/forward/credentials/signing-keys.js'
import type { AttachInput, KindContext } from '../../../../src/pipeline/forward/credentials/kind.js'
import type { AssertionConfig, UpstreamConfig } from '../../../../src/config/schema.js'

t.test('work queued in one turn runs together at its end, each promise with its own result', async t => {
  const atTurnEnd = createTurnBatch()
  const order: string[] = []
  const a = atTurnEnd(() => { order.push('a'); return 1 })
  setImmediate(() => order.push('an immediate queued between a and b'))
  const b = atTurnEnd(() => { order.push('b'); return 2 })
  order.push('the turn goes on')
  t.same(await Promise.all([a, b]), [1, 2])
  await new Promise(resolve => setImmediate(resolve))
  t.same(order, ['the turn goes on', 'a', 'b', 'an immediate queued between a and b'], 'a and b ran after the turn, one after the other')
})

t.test('a failing job rejects its own promise only; work queued by a job waits for the next turn', async t => {
  const atTurnEnd = createTurnBatch()
  const ran: string[] = []
  let later: Promise<string> | undefined
  const results = await Promise.allSettled([
    atTurnEnd(() => { throw new Error('no key') }),
    atTurnEnd(() => {
      later = atTurnEnd(() => { ran.push('later'); return 'later' })
      ran.push('second')
      return 'second'
    })
  ])
  t.equal(results[0].status, 'rejected')
  t.match((results[0] as PromiseRejectedResult).reason, { message: 'no key' })
  t.same(results[1], { status: 'fulfilled', value: 'second' })
  t.same(ran, ['second'], 'the job queued during the run is not run in it')
  t.equal(await later, 'later')
  t.same(ran, ['second', 'later'])
})

t.test('assertions attached in one turn are each bound to their own request', async t => {
  const config: AssertionConfig = {
    issuer: 'https://gw.test', algorithm: 'ES256', header: 'x-portcullis-assertion', ttlSeconds: 60, claims: [],
    rotateAfterSeconds: 3600, publishAheadSeconds: 300
  }
  const keys = await createKeyRing({ config, timer: false })
  const upstream = { id: 'fn', url: 'https://fn.test/' } as UpstreamConfig
  const attacher = await assertionKind.create({ bindBody: true }, { upstream, config: { assertion: config }, keys, env: {} } as KindContext)
  const inputs: AttachInput[] = Array.from({ length: 20 }, (_, i) => ({
    routeId: 'r', host: 'fn.test', method: i % 2 === 0 ? 'GET' : 'POST', path: `/items/${i}`, requestId: `req-${i}`,
    principal: { type: 'jwt', issuerId: 'idp', issuer: 'https://idp.test', subject: `user-${i}`, claims: {}, certificate: null },
    clientAuthorization: undefined, headers: {}, body: null, log: { warn: () => {} }
  }))
  await Promise.all(inputs.map(async (input, i) => attacher.attach(input, i % 2 === 0 ? null : Buffer.from(`body ${i}`), { forwardAuthorization: false })))
  const jwks = createLocalJWKSet(keys.jwks())
  const seen = new Set<unknown>()
  for (const [i, input] of inputs.entries()) {
    const { payload } = await jwtVerify(input.headers['x-portcullis-assertion'] as string, jwks, { issuer: 'https://gw.test', audience: 'https://fn.test' })
    t.match(payload, { sub: `user-${i}`, rid: `req-${i}`, path: `/items/${i}`, method: i % 2 === 0 ? 'GET' : 'POST' }, `request ${i}`)
    t.equal(payload.body_sha256, i % 2 === 0
      ? '47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU'
      : Buffer.from(await crypto.subtle.digest('SHA-256', Buffer.from(`body ${i}`))).toString('base64url'), `request ${i}'s body`)
    seen.add(payload.jti)
  }
  t.equal(seen.size, inputs.length, 'a jti each')
})
