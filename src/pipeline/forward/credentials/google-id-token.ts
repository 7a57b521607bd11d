import { createRequire } from 'node:module'
import type { GoogleAuth, IdTokenClient } from 'google-auth-library'
import { credentialKind } from './kind.js'

/*
 * Google-signed ID tokens for Cloud Run and Cloud Functions, from google-auth-library: on Google
 * Cloud from the metadata server (GCE_METADATA_HOST moves it), elsewhere through workload identity
 * federation or a service account (GOOGLE_APPLICATION_CREDENTIALS). The library's IdTokenClient
 * caches each token and fetches a new one five minutes before it expires.
 */

/** Returns `Bearer <id token>` for the configured audience. */
export type GoogleIdTokens = () => Promise<string>

// google-auth-library (~13 MiB of RSS) is loaded only by a gateway that uses this credential.
const load = createRequire(import.meta.url)

export function createGoogleIdTokens (audience: string, auth: GoogleAuth = newGoogleAuth()): GoogleIdTokens {
  // The client is found once (which probes the environment); a failed attempt is tried again next time.
  let client: Promise<IdTokenClient> | null = null
  return async () => {
    client ??= auth.getIdTokenClient(audience)
    try {
      const headers = await (await client).getRequestHeaders()
      const value = headers.get('authorization')
      if (value === null || !value.startsWith('Bearer ')) throw new Error('no ID token in the request headers')
      return value
    } catch (err) {
      client = null
      throw err
    }
  }
}

/** What to do when the gateway cannot get Google ID tokens; in the readiness check and the 502's log line. */
export const GOOGLE_ID_TOKEN_FIX = 'run the gateway as a service account with roles/run.invoker: on Google Cloud through the metadata server (Workload Identity on GKE), elsewhere with GOOGLE_APPLICATION_CREDENTIALS naming a key file or a workload identity federation config (docs/functions/cloud-run.md)'

/**
 * Readiness: whether google-auth-library finds a source of ID tokens for `audience` (a key file, an
 * external account, the metadata server). It fetches no token, so the gateway's cache is untouched.
 */
export async function googleIdTokenProblem (audience: string, auth: GoogleAuth = newGoogleAuth()): Promise<string | null> {
  try {
    await auth.getIdTokenClient(audience)
    return null
  } catch (err) {
    return `no Google credentials (${(err as Error).message.split('\n')[0]}); ${GOOGLE_ID_TOKEN_FIX}`
  }
}

function newGoogleAuth (): GoogleAuth {
  return new (load('google-auth-library') as { GoogleAuth: new () => GoogleAuth }).GoogleAuth()
}

/**
 * A Google ID token in Authorization, or in X-Serverless-Authorization (which Cloud Run also reads)
 * where the route forwards the client's own Authorization.
 */
export const googleIdTokenKind = credentialKind({
  key: 'googleIdToken',
  headers: () => ['x-serverless-authorization'],
  needsBody: () => false,
  create: (settings, { upstream, googleAuth }) => {
    const tokens = createGoogleIdTokens(settings.audience ?? upstream.url.replace(/\/$/, ''), googleAuth as GoogleAuth | undefined)
    return {
      attach: async (input, _body, route) => {
        input.headers[route.forwardAuthorization ? 'x-serverless-authorization' : 'authorization'] = await tokens()
      }
    }
  }
})
