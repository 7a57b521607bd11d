import t, { type Test } from 'tap'
import { randomUUID } from 'node:crypto'
import { readFile, readdir, writeFile, mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { PERSISTED_BUNDLE } from '../../src/pipeline/authorize/policy-store.js'
import { upstreamCalls } from '../helpers/authn.js'
import { startBundleServer } from '../helpers/bundle-server.js'
import { startDemoHarness, type DemoHarness } from '../helpers/demo.js'
import { makeSigningKey, opaBuild, packDir, unpack } from '../helpers/signed-bundles.js'

// Bundles through the real gateway: an OPA-compatible bundle server over mutual TLS with a bearer
// token and ETags, signed bundles made by the real opa, the last good bundle kept on disk.

const TOKEN = 'bundle-server-token-' + randomUUID()

async function signedBundle (t: Test, key: string, allowed: string[], revision: string): Promise<Buffer> {
  return readFile(await opaBuild(t, { sign: { key, alg: 'ES256' }, data: { allowed }, revision }))
}

/** The same bundle with data.json changed after signing. */
async function tamper (archive: Buffer, dir: string): Promise<Buffer> {
  await mkdir(dir, { recursive: true })
  await writeFile(join(dir, 'in.tar.gz'), archive)
  const out = join(dir, 'out')
  await unpack(join(dir, 'in.tar.gz'), out)
  await writeFile(join(out, 'data.json'), JSON.stringify({ allowed: ['alice', 'bob', 'mallory'] }))
  return packDir(out, await readdir(out))
}

async function status (demo: DemoHarness): Promise<Record<string, any>> {
  return (await demo.client.send(`${demo.adminUrl}/status`)).json<{ policy: Record<string, any> }>().policy
}

async function metric (demo: DemoHarness, name: string): Promise<number> {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec((await demo.client.send(`${demo.adminUrl}/metrics`)).text)
  return Number(m?.[1])
}

t.test('bundle server: mTLS and bearer, ETag polling, signed bundles swapped in, a tampered one refused', async t => {
  const dir = t.testdir()
  const key = await makeSigningKey(dir, 'ES256')
  const server = await startBundleServer(t, TOKEN)
  await writeFile(join(dir, 'server-ca.pem'), server.ca)
  await writeFile(join(dir, 'client.pem'), server.client.cert)
  await writeFile(join(dir, 'client.key'), server.client.key)
  const first = await signedBundle(t, key.priv, ['alice'], 'rev-1')
  server.serve(first)

  const persist = join(dir, 'persisted')
  const demo = await startDemoHarness(t, {
    configure: c => {
      c.policy = {
        entrypoint: 'gateway/authz/decision',
        server: { url: server.url, pollIntervalSeconds: 3600, bearerToken: TOKEN, tls: { ca: join(dir, 'server-ca.pem'), cert: join(dir, 'client.pem'), key: join(dir, 'client.key') } },
        verification: { keys: { default: { algorithm: 'ES256', key: key.pub } } },
        persistDirectory: persist
      }
    }
  })
  const policy = demo.gateway.gateway.policy
  t.same(server.requests[0], { clientCertCn: 'portcullis-gateway', authorization: `Bearer ${TOKEN}` }, 'mTLS and bearer token, no ETag yet')
  const alice = await demo.client.send(`${demo.url}/hello`, { token: await demo.token({ sub: 'alice' }) })
  t.equal(alice.status, 200)
  t.match(alice.headers['x-portcullis-decision-id'], /^[0-9a-f-]{36}$/, 'the decision id is returned to the client')
  const bob = await demo.client.send(`${demo.url}/hello`, { token: await demo.token({ sub: 'bob' }) })
  t.equal(bob.status, 403)
  t.match(bob.headers['x-portcullis-decision-id'], /^[0-9a-f-]{36}$/, 'denials carry it too')
  t.not(bob.headers['x-portcullis-decision-id'], alice.headers['x-portcullis-decision-id'])
  t.match(await status(demo), { revision: 'rev-1', origin: 'source', signed_by: 'default', source: server.url, last_error: null })
  t.same(await readFile(join(persist, PERSISTED_BUNDLE)), first, 'the active bundle is kept on disk')

  t.equal(await policy.reload(), false, 'unchanged: nothing new activated')
  t.match(server.requests.at(-1), { ifNoneMatch: /^"[0-9a-f]{64}"$/ }, 'the next poll sends If-None-Match with the ETag')

  const second = await signedBundle(t, key.priv, ['alice', 'bob'], 'rev-2')
  server.serve(second)
  t.equal(await policy.reload(), true)
  t.equal((await demo.client.send(`${demo.url}/hello`, { token: await demo.token({ sub: 'bob' }) })).status, 200, 'the new policy decides')
  t.equal((await status(demo)).revision, 'rev-2')
  const info = (await demo.client.send(`${demo.adminUrl}/metrics`)).text.match(/^portcullis_policy_bundle_info\{.*$/gm)
  t.same(info, ['portcullis_policy_bundle_info{revision="rev-2"} 1'], 'the active revision as a metric, one series')

  const calls = await upstreamCalls(demo)
  server.serve(await tamper(second, join(dir, 'tamper')))
  t.equal(await policy.reload(), false, 'a tampered bundle is not activated')
  const after = await status(demo)
  t.equal(after.revision, 'rev-2', 'the last good bundle stays active')
  t.match(after.last_error, { message: /data\.json: digest mismatch/ })
  t.equal(after.failures, 1)
  t.equal(await metric(demo, 'portcullis_policy_bundle_load_failures_total'), 1)
  t.equal((await demo.client.send(`${demo.url}/hello`, { token: await demo.token({ sub: 'mallory' }) })).status, 403, 'mallory was only in the tampered data')
  t.equal(await upstreamCalls(demo), calls)
  t.same(await readFile(join(persist, PERSISTED_BUNDLE)), second, 'the refused bundle is not persisted')
})

t.test('the persisted bundle is used while the server is down, and refused when changed on disk', async t => {
  const dir = t.testdir()
  const key = await makeSigningKey(dir, 'ES256')
  const server = await startBundleServer(t, TOKEN)
  const url = server.url
  await server.close()
  const good = await signedBundle(t, key.priv, ['alice'], 'rev-kept')

  const start = async (persist: string, archive: Buffer): Promise<DemoHarness> => {
    await mkdir(persist, { recursive: true })
    await writeFile(join(persist, PERSISTED_BUNDLE), archive)
    return startDemoHarness(t, {
      configure: c => {
        c.policy = {
          server: { url, pollIntervalSeconds: 3600, plaintext: false, tls: { ca: join(dir, 'ca.pem') } },
          verification: { keys: { default: { algorithm: 'ES256', key: key.pub } } },
          persistDirectory: persist
        }
      }
    })
  }
  await writeFile(join(dir, 'ca.pem'), server.ca)

  const kept = await start(join(dir, 'good'), good)
  t.match(await status(kept), { revision: 'rev-kept', origin: 'persisted', last_error: { message: /./ } }, 'the server failure is recorded')
  t.equal((await kept.client.send(`${kept.url}/hello`, { token: await kept.token({ sub: 'alice' }) })).status, 200)

  const tampered = await start(join(dir, 'bad'), await tamper(good, join(dir, 'tamper')))
  t.match(await status(tampered), { revision: null, last_error: { message: /digest mismatch/ } })
  t.equal((await tampered.client.send(`${tampered.adminUrl}/readyz`)).status, 503)
  const refused = await tampered.client.send(`${tampered.url}/hello`, { token: await tampered.token({ sub: 'alice' }) })
  t.equal(refused.status, 503)
  t.equal(refused.json().code, 'GW_ERR_AUTHZ_NOT_READY')
  t.equal(await upstreamCalls(tampered), 0)
})
