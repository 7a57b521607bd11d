import { writeFile } from 'node:fs/promises'
import t, { type Test } from 'tap'
import { DEFAULT_BUNDLE, buildBundle } from '../../scripts/opa.mjs'
import { gatewayFiles, reloadAndWait, startGatewayProcess, startPlainUpstream } from '../helpers/gateway-process.js'
import { httpsClient } from '../helpers/http.js'
import { makeKey, sign, type SigningKey } from '../helpers/idp.js'
import { startIdpProcess, type IdpProcess } from '../helpers/idp-process.js'
import { sleep, type Status } from '../helpers/workers.js'

// Issue #17, cases 1, 2 and 5: the real CLI against a stand-in IdP in a process of its own, which the
// tests stop, pause and rotate. What callers get is asserted, not how the gateway gets there.

async function setup (t: Test, jwks = '{ discovery: true }', issuerExtra = '', args: string[] = []) {
  const idp = await startIdpProcess(t)
  const files = await gatewayFiles(t)
  const fn = await startPlainUpstream(t, 'fn')
  await buildBundle({})
  const config = `
listen: { host: 127.0.0.1, port: 0, tls: { cert: gw.crt, key: gw.key } }
admin: { host: 127.0.0.1, port: 0 }
issuers:
  - { id: idp, issuer: "${idp.issuer}", audiences: [api], algorithms: [ES256], jwks: ${jwks}, ca: "${idp.caFile}", fetchTimeoutMs: 5000${issuerExtra} }
policy: { bundle: "${DEFAULT_BUNDLE}" }
upstreams: [{ id: fn, url: "${fn.url}", plaintext: true }]
routes: [{ id: hello, prefix: /hello, methods: [GET], upstream: fn }]
`
  await writeFile(files.configFile, config)
  const gw = await startGatewayProcess(t, files.configFile, args)
  const client = httpsClient(t, files.caFile)
  let n = 0
  // A new subject each time: never answered from the verified-token cache.
  const token = async (key: SigningKey = idp.key): Promise<string> => sign(key, { iss: idp.issuer, aud: 'api', sub: `user-${++n}`, roles: ['reader'] })
  const call = async (tok: string) => client.send(`${gw.url}/hello`, { token: tok })
  const admin = async (path: string) => client.send(`${gw.adminUrl}${path}`)
  return { idp, files, gw, token, call, admin, config }
}


async function outage (t: Test, idp: IdpProcess, how: 'stop' | 'pause'): Promise<void> {
  if (how === 'stop') await idp.stop()
  else { idp.pause(); t.teardown(() => idp.resume()) }
}

for (const how of ['stop', 'pause'] as const) {
  t.test(`case 1: a reload while the IdP is down (${how}) keeps the keys; callers are served and the replica stays ready`, async t => {
    const { idp, gw, token, call, admin } = await setup(t)
    t.equal((await call(await token())).status, 200, 'served before the outage')
    await outage(t, idp, how)
    await reloadAndWait(gw)
    const after = await call(await token())
    t.equal(after.status, 200, `a new caller is served after the reload (was 503 GW_ERR_AUTHN_KEYS_UNAVAILABLE): ${after.text}`)
    t.equal((await admin('/readyz')).status, 200, 'still ready')
  })
}

t.test('case 2: an IdP outage longer than jwksCacheSeconds: new callers served from the stale keys, visible in /status and metrics', async t => {
  const { idp, token, call, admin } = await setup(t, '{ discovery: true, maxStaleSeconds: 3600 }', ', jwksCacheSeconds: 1')
  t.equal((await call(await token())).status, 200)
  idp.pause() // hangs: every fetch waits until its timeout
  t.teardown(() => idp.resume())
  await new Promise(resolve => setTimeout(resolve, 2500)) // past jwksCacheSeconds: a refresh is due and hangs
  const answers = await Promise.all(Array.from({ length: 5 }, async () => (await call(await token())).status))
  t.same(answers, [200, 200, 200, 200, 200], 'new callers are verified with the last good keys')
  const ready = await admin('/readyz')
  t.equal(ready.status, 200, 'the replica stays ready')
  const status = (await admin('/status')).json<{ issuers: Array<{ keys: { state: string, age_seconds: number } }> }>()
  t.equal(status.issuers[0]!.keys.state, 'stale', '/status says the keys are stale')
  const metrics = (await admin('/metrics')).text
  const age = Number(/^portcullis_issuer_keys_age_seconds\{issuer="idp"\} (\S+)$/m.exec(metrics)?.[1])
  t.ok(age >= 2, `the key-set age is exported (${age} s)`)
})

t.test('case 5: a token signed with a newly published kid is accepted at once; a withdrawn key stops; an unknown kid while the IdP is down is a retryable 503', async t => {
  const { idp, token, call } = await setup(t)
  const old = await token()
  t.equal((await call(old)).status, 200)
  const next = makeKey('ES256', 'k2')
  await idp.publish([next]) // rotation: the new key in, the old one withdrawn
  await new Promise(resolve => setTimeout(resolve, 1100)) // the default unknown-kid cooldown (1 s)
  const fresh = await call(await token(next))
  t.equal(fresh.status, 200, `the new kid is accepted on first sight (was 401 for up to 30 s): ${fresh.text}`)
  const withdrawn = await call(old)
  t.equal(withdrawn.status, 401, 'a token signed with the withdrawn key is refused, even one verified before')

  await idp.stop()
  await new Promise(resolve => setTimeout(resolve, 1100))
  const third = makeKey('ES256', 'k3')
  const down = await call(await token(third))
  t.equal(down.status, 503, 'an unknown kid that cannot be checked is retryable, not a bad token')
  t.match(down.json(), { code: 'GW_ERR_AUTHN_KEYS_UNAVAILABLE' })
  t.equal((await call(await token(next))).status, 200, 'known keys keep verifying meanwhile')
})

t.test('a listener certificate rotation during an IdP outage keeps serving', async t => {
  const { idp, files, gw, token, call } = await setup(t)
  t.equal((await call(await token())).status, 200)
  await idp.stop()
  await files.writeListenerCert('gw-rotated')
  await reloadAndWait(gw)
  t.equal((await call(await token())).status, 200, 'a new caller is served on the new certificate')
})

t.test('case 6: a worker restarted while the IdP is down starts from its sibling\'s keys; every caller is served', async t => {
  const { idp, files, gw, token, admin } = await setup(t, '{ discovery: true }', '', ['--workers', '2'])
  const status = async (): Promise<Status> => (await admin('/status')).json<Status>()
  const until = async (what: string, check: (s: Status) => boolean): Promise<Status> => {
    const start = performance.now()
    let s = await status()
    while (!check(s)) {
      if (performance.now() - start > 45_000) throw new Error(`${what}: not within 45 s; last seen ${JSON.stringify(s)}`)
      await sleep(200)
      s = await status()
    }
    return s
  }
  const listening = (s: Status) => s.workers.filter(w => w.state === 'listening')
  const before = await until('both workers ready', s => listening(s).filter(w => w.ready).length === 2)
  await idp.stop()
  const victim = before.workers[0]!.pid!
  process.kill(victim, 'SIGKILL')
  await until('a new worker listening', s => listening(s).length === 2 && !s.workers.some(w => w.pid === victim))
  // A new connection and a new subject per request: spread over both workers, never from a cache.
  const answers: number[] = []
  for (let i = 0; i < 8; i++) answers.push((await httpsClient(t, files.caFile).send(`${gw.url}/hello`, { token: await token() })).status)
  t.same(answers, Array(8).fill(200), 'the new worker verifies with the keys its sibling fetched before the outage (was 503 GW_ERR_AUTHN_KEYS_UNAVAILABLE)')
  await idp.start()
})
