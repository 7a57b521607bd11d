import { ConfigError } from '../../src/config/load.js'

/*
 * The smallest config the loader accepts, as a parsed object (for validateConfig tests), and the
 * files it and its usual variations name, for t.testdir(): tests change what they are about on a
 * fresh copy.
 */

export const CONFIG_FILES = {
  certs: { 'server.crt': 'dummy cert\n', 'server.key': 'dummy key\n', 'ca.crt': 'dummy ca\n', 'client.crt': 'c\n', 'client.key': 'k\n' },
  keys: { 'jwks.json': '{"keys":[]}\n' }
}

export function minimalConfig (): Record<string, any> {
  return {
    listen: { tls: { cert: 'certs/server.crt', key: 'certs/server.key' } },
    issuers: [{ id: 'idp', issuer: 'https://idp.example.com', audiences: ['api'], algorithms: ['RS256'], jwks: { file: 'keys/jwks.json' } }],
    policy: { bundle: 'build/bundle.tar.gz' },
    upstreams: [{ id: 'fn', url: 'https://fn.internal.example/base' }],
    routes: [{ id: 'hello', prefix: '/hello', methods: ['GET'], upstream: 'fn' }]
  }
}

/** The ConfigError a refused config produces; anything else (including acceptance) fails the test. */
export async function refusal (pending: Promise<unknown>): Promise<ConfigError> {
  const err = await pending.then(() => undefined, (e: unknown) => e)
  if (!(err instanceof ConfigError)) throw new Error(`expected a ConfigError, got ${err === undefined ? 'an accepted config' : String(err)}`)
  return err
}

export function paths (err: ConfigError): string[] {
  return err.problems.map(p => p.path)
}
