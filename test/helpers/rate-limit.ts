import { join } from 'node:path'
import type { Test } from 'tap'
import { buildBundle } from '../../scripts/opa.mjs'
import { startDemoHarness, type DemoHarness } from './demo.js'

/*
 * The real gateway (demo issuer, mTLS function, real TLS) with a policy that hands the rate-limit
 * stage hints taken from token claims, for the rate-limit end-to-end tests.
 */

/**
 * Allows verified principals except under /admin (403 from the policy), and passes `tier`, `tenant`
 * (as the bucket key) and `cost` claims on as the decision's rateLimit hints.
 */
export const HINT_POLICY = `package gateway.authz

default decision := {"allow": false, "status": 403, "message": "denied by the test policy"}

hint["tier"] := input.principal.claims.tier

hint["key"] := input.principal.claims.tenant

hint["cost"] := input.principal.claims.cost

decision := {"allow": true, "rateLimit": hint} if {
	input.principal.type in {"jwt", "mtls"}
	not startswith(input.path, "/admin")
}
`

export async function compileHintPolicy (t: Test): Promise<string> {
  const dir = t.testdir({ gateway: { 'authz.rego': HINT_POLICY } })
  const out = join(dir, 'bundle.tar.gz')
  await buildBundle({ policiesDir: dir, out, force: true })
  return out
}

/** The demo with the hint policy and `rateLimit` replaced by the given section. */
export async function startLimitedGateway (t: Test, rateLimit: Record<string, unknown>, routes?: Array<Record<string, unknown>>): Promise<DemoHarness> {
  const bundle = await compileHintPolicy(t)
  return startDemoHarness(t, {
    bundle,
    configure: raw => {
      raw.rateLimit = rateLimit
      if (routes !== undefined) raw.routes = routes
    }
  })
}

export async function metricsText (demo: DemoHarness): Promise<string> {
  return (await demo.client.send(`${demo.adminUrl}/metrics`)).text
}

/** The value of one sample line (labels as written by prom-client), 0 when absent. */
export async function metricValue (demo: DemoHarness, series: string): Promise<number> {
  const text = await metricsText(demo)
  const line = text.split('\n').find(l => l.startsWith(`${series} `))
  return line === undefined ? 0 : Number(line.slice(series.length + 1))
}
