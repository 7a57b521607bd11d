import { createRequire } from 'node:module'
import type { GoogleAuth, IdTokenClient } from 'google-auth-library'

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

export function createGoogleIdTokens (audience: string, auth: GoogleAuth = new (load('google-auth-library') as { GoogleAuth: new () => GoogleAuth }).GoogleAuth()): GoogleIdTokens {
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
