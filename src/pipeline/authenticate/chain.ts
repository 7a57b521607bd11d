import { GW_ERR_AUTHN_MISSING } from '../../errors.js'
import type { AuthnResult, RouteContext } from '../types.js'
import type { Authenticator } from './jwt.js'

/**
 * Runs authenticators in their configured order: not-applicable is skipped, a failure stops the chain,
 * the first principal wins. No principal at all is a failure too: every route is protected.
 */
export async function runAuthenticators (
  authenticators: readonly Authenticator[],
  headers: Readonly<Record<string, string | string[] | undefined>>,
  route: RouteContext
): Promise<AuthnResult> {
  for (const a of authenticators) {
    const result = await a.authenticate(headers, route)
    if (result.kind !== 'not-applicable') return result
  }
  return { kind: 'failure', error: new GW_ERR_AUTHN_MISSING(), reason: 'missing' }
}
