import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { startDemo, type DemoOptions, type RunningDemo } from '../../src/demo/run.js'
import { mintDemoToken, type DemoTokenOptions } from '../../src/demo/token.js'
import { httpsClient, type Client } from './http.js'

export interface DemoHarness extends RunningDemo {
  client: Client
  /** The gateway's public base URL. */
  url: string
  adminUrl: string
  token: (opts?: Partial<DemoTokenOptions>) => Promise<string>
}

/**
 * The real demo on ephemeral ports: issuer, mTLS function and gateway over real sockets, with keys
 * and certificates generated into a fresh test folder. Closed at teardown.
 */
export async function startDemoHarness (t: Test, opts: Partial<DemoOptions> = {}): Promise<DemoHarness> {
  // Its own temp folder, so a test's t.testdir() (policies, bundles) is left alone.
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-demo-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const demo = await startDemo({
    dir,
    ports: { gateway: 0, admin: 0, issuer: 0, fn: 0 },
    logLevel: 'silent',
    bundleWatchIntervalMs: 0,
    ...opts
  })
  t.teardown(() => demo.close())
  return {
    ...demo,
    client: httpsClient(t, demo.paths.caCert),
    url: demo.gateway.url,
    adminUrl: demo.gateway.adminUrl,
    token: async (o = {}) => mintDemoToken(demo.paths, { sub: 'alice', roles: ['reader'], ttl: 300, claims: {}, ...o })
  }
}
