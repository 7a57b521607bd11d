import { ManagedIdentityCredential, type AccessToken, type TokenCredential } from '@azure/identity'
import { credentialKind } from './kind.js'

/*
 * A Microsoft Entra token of the gateway's managed identity, for Azure Functions behind App Service
 * authentication. @azure/identity finds the identity endpoint the platform documents (App Service
 * IDENTITY_ENDPOINT / IDENTITY_HEADER, Azure Arc, the VM instance metadata service). The token is
 * kept until five minutes before it expires, and one fetch serves all requests waiting for it.
 */

const REFRESH_EARLY_MS = 5 * 60_000

/** Returns `Bearer <access token>` for the configured scope. */
export type AzureTokens = () => Promise<string>

export function createAzureManagedIdentityTokens (opts: { scope: string, clientId?: string | undefined }, credential?: TokenCredential): AzureTokens {
  const source = credential ?? (opts.clientId !== undefined ? new ManagedIdentityCredential({ clientId: opts.clientId }) : new ManagedIdentityCredential())
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

/** The managed identity's token in Authorization. */
export const azureManagedIdentityKind = credentialKind({
  key: 'azureManagedIdentity',
  needsBody: () => false,
  create: (settings, { azureCredential }) => {
    const tokens = createAzureManagedIdentityTokens(settings, azureCredential as TokenCredential | undefined)
    return { attach: async input => { input.headers.authorization = await tokens() } }
  }
})
