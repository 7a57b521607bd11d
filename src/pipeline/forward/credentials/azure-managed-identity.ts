import { createRequire } from 'node:module'
import type * as AzureIdentity from '@azure/identity'
import type { AccessToken, TokenCredential } from '@azure/identity'

/*
 * A Microsoft Entra token of the gateway's managed identity, for Azure Functions behind App Service
 * authentication. @azure/identity finds the identity endpoint the platform documents (App Service
 * IDENTITY_ENDPOINT / IDENTITY_HEADER, Azure Arc, the VM instance metadata service). The token is
 * kept until five minutes before it expires, and one fetch serves all requests waiting for it.
 */

const REFRESH_EARLY_MS = 5 * 60_000

// @azure/identity (~24 MiB of RSS) is loaded only by a gateway that uses this credential.
const load = createRequire(import.meta.url)

/** Returns `Bearer <access token>` for the configured scope. */
export type AzureTokens = () => Promise<string>

export function createAzureManagedIdentityTokens (opts: { scope: string, clientId?: string | undefined }, credential?: TokenCredential): AzureTokens {
  const source = credential ?? managedIdentity(opts.clientId)
  let token: AccessToken | null = null
  let pending: Promise<AccessToken> | null = null
  return async () => {
    if (token !== null && token.expiresOnTimestamp - Date.now() > REFRESH_EARLY_MS) return `Bearer ${token.token}`
    pending ??= source.getToken(opts.scope).then(t => {
      if (t === null) throw new Error('managed identity returned no token')
      return t
    }).finally(() => { pending = null })
    token = await pending
    return `Bearer ${token.token}`
  }
}

function managedIdentity (clientId: string | undefined): TokenCredential {
  const { ManagedIdentityCredential } = load('@azure/identity') as typeof AzureIdentity
  return clientId !== undefined ? new ManagedIdentityCredential({ clientId }) : new ManagedIdentityCredential()
}
