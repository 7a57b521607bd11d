import t from 'tap'
import { generateKeyPairSync } from 'node:crypto'
import { join } from 'node:path'
import { ConfigError, validateConfig } from '../../src/config/load.js'
import { minimalConfig } from '../helpers/config.js'

// The policy and decisionLog sections: every problem listed with its path, nothing replaced by a default.

const PUB = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' })
const FILES = {
  certs: { 'server.crt': 'c\n', 'server.key': 'k\n', 'ca.crt': 'ca\n' },
  keys: { 'jwks.json': '{"keys":[]}\n', 'bundle.pub.pem': PUB, 'not-a-key.pem': 'hello\n' }
}

function config (policy: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...minimalConfig(), policy, ...extra }
}

async function problems (raw: unknown, dir: string): Promise<Array<{ path: string, message: string }>> {
  const err = await validateConfig(raw, { baseDir: dir, env: {} }).then(() => undefined, (e: unknown) => e)
  if (!(err instanceof ConfigError)) throw new Error('expected the config to be refused')
  return err.problems
}

t.test('a bundle server with verification, persistence and an HTTP decision log loads, paths resolved', async t => {
  const dir = t.testdir(FILES)
  const loaded = await validateConfig(config({
    server: { url: 'https://bundles.example.net/authz.tar.gz', bearerToken: 'x', tls: { ca: 'certs/ca.crt' } },
    verification: { keys: { release: { algorithm: 'ES256', key: 'keys/bundle.pub.pem' } } },
    persistDirectory: 'state'
  }, { decisionLog: { http: { url: 'https://logs.example.net/logs' }, mask: ['/input/headers/x-email'] } }), { baseDir: dir, env: {} })
  t.match(loaded.policy, { maxBundleBytes: 67_108_864, persistDirectory: join(dir, 'state'), server: { pollIntervalSeconds: 30, tls: { ca: join(dir, 'certs', 'ca.crt') } } })
  t.equal(loaded.policy.verification?.keys.release?.key, join(dir, 'keys', 'bundle.pub.pem'))
  t.match(loaded.decisionLog, { stdout: false, maxQueuedEvents: 10_000, http: { flushIntervalMs: 5_000, maxBatchEvents: 1_000 } })
})

t.test('every policy problem is listed with its path', async t => {
  const dir = t.testdir(FILES)
  const found = await problems(config({
    bundle: 'build/bundle.tar.gz',
    server: { url: 'http://bundles.example.net/b.tar.gz', tls: { cert: 'certs/server.crt' } },
    verification: { keys: { a: { algorithm: 'ES256', key: 'keys/not-a-key.pem' }, b: { key: 'keys/missing.pem' } } }
  }, { decisionLog: { http: { url: 'http://logs.example.net' }, mask: ['/headers/x'] } }), dir)
  t.same(found.map(p => p.path).sort(), [
    '/decisionLog/http/url',
    '/decisionLog/mask/0',
    '/policy',
    '/policy/server/tls',
    '/policy/server/url',
    '/policy/verification/keys/a/key',
    '/policy/verification/keys/b/key'
  ])
  t.match(found.find(p => p.path === '/policy')?.message, 'exactly one bundle source')
  t.match(found.find(p => p.path === '/policy/verification/keys/a/key')?.message, 'is not a PEM public key')
  t.match(found.find(p => p.path === '/policy/verification/keys/b/key')?.message, 'file not readable')
})

t.test('no source at all is refused', async t => {
  const found = await problems(config({ entrypoint: 'gateway/authz/decision' }), t.testdir(FILES))
  t.same(found.map(p => p.path), ['/policy'])
})
