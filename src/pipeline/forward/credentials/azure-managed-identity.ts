import { createRequire } from 'node:module'
import type * as AzureIdentity from '@azure/identity'
import type { AccessToken, TokenCredential } from '@azure/identity'
import { credentialKind } from './kind.js'

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

/** What to do when there is no managed identity; in the readiness check and the 502's log line. */
export const AZURE_MANAGED_IDENTITY_FIX = 'run the gateway on Azure with a managed identity (App Service, Container Apps, a VM; clientId for a user-assigned one) allowed to call the function, or use azureFunctionKey (docs/functions/azure-functions.md)'

/**
 * Readiness: whether a managed identity endpoint is there (App Service's IDENTITY_ENDPOINT, the older
 * MSI_ENDPOINT, or the instance metadata service answering). It asks for no token.
 */
export async function azureManagedIdentityProblem (env: NodeJS.ProcessEnv = process.env, imds = 'http://169.254.169.254'): Promise<string | null> {
  if ((env.IDENTITY_ENDPOINT ?? '') !== '' || (env.MSI_ENDPOINT ?? '') !== '') return null
  try {
    const res = await fetch(`${imds}/metadata/instance?api-version=2021-02-01`, { headers: { Metadata: 'true' }, signal: AbortSignal.timeout(2000) })
    await res.body?.cancel()
    if (res.ok) return null
    return `no managed identity (the instance metadata service answered ${res.status}); ${AZURE_MANAGED_IDENTITY_FIX}`
  } catch {
    return `no managed identity (no IDENTITY_ENDPOINT or MSI_ENDPOINT, and no instance metadata service); ${AZURE_MANAGED_IDENTITY_FIX}`
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
