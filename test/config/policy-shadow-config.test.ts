import t from 'tap'
import { join } from 'node:path'
import { ConfigError, validateConfig } from '../../src/config/load.js'
import { CONFIG_FILES, minimalConfig } from '../helpers/config.js'

// policy.shadow: defaults, paths resolved against the config's folder, every problem listed.

function config (shadow: unknown): Record<string, unknown> {
  const c = minimalConfig()
  return { ...c, policy: { ...c.policy, shadow } }
}

async function problems (raw: unknown, dir: string): Promise<Array<{ path: string, message: string }>> {
  const err = await validateConfig(raw, { baseDir: dir, env: {} }).then(() => undefined, (e: unknown) => e)
  if (!(err instanceof ConfigError)) throw new Error('expected the config to be refused')
  return err.problems
}

t.test('a shadow bundle file: sample 1 and a queue of 1024 by default, the path resolved', async t => {
  const dir = t.testdir(CONFIG_FILES)
  const loaded = await validateConfig(config({ bundle: 'build/next.tar.gz' }), { baseDir: dir, env: {} })
  t.same(loaded.policy.shadow, { bundle: join(dir, 'build', 'next.tar.gz'), sample: 1, maxQueued: 1024 })
  const server = await validateConfig(config({ server: { url: 'https://bundles.example.net/next.tar.gz', tls: { ca: 'certs/ca.crt' } }, sample: 0.25 }), { baseDir: dir, env: {} })
  t.match(server.policy.shadow, { sample: 0.25, server: { pollIntervalSeconds: 30, tls: { ca: join(dir, 'certs', 'ca.crt') } } })
})

t.test('every shadow problem is refused at start, with its path', async t => {
  const dir = t.testdir(CONFIG_FILES)
  const paths = async (shadow: unknown): Promise<string[]> => (await problems(config(shadow), dir)).map(p => `${p.path}: ${p.message}`)
  t.match(await paths({}), ['/policy/shadow: needs exactly one bundle source: bundle (a file or folder) or server'])
  t.match(await paths({ bundle: 'a.tar.gz', server: { url: 'https://b.example.net/x' } }), ['/policy/shadow: needs exactly one'])
  t.match(await paths({ server: { url: 'http://b.example.net/x' } }), ['/policy/shadow/server/url: must be an https URL'])
  t.match(await paths({ server: { url: 'https://b.example.net/x', tls: { cert: 'certs/client.crt', ca: 'certs/missing.crt' } } }), [
    '/policy/shadow/server/tls: cert and key go together',
    /^\/policy\/shadow\/server\/tls\/ca: file not readable/
  ])
  t.match(await paths({ bundle: 'a.tar.gz', sample: 1.5 }), [/^\/policy\/shadow\/sample/])
  t.match(await paths({ bundle: 'a.tar.gz', maxQueued: 0 }), [/^\/policy\/shadow\/maxQueued/])
  t.match(await paths({ bundle: 'a.tar.gz', extra: true }), [/^\/policy\/shadow/])
})
