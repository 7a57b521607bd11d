import { GoogleAuth, type IdTokenClient } from 'google-auth-library'
import { credentialKind } from './kind.js'

/*
 * Google-signed ID tokens for Cloud Run and Cloud Functions, from google-auth-library: on Google
 * Cloud from the metadata server (GCE_METADATA_HOST moves it), elsewhere through workload identity
 * federation or a service account (GOOGLE_APPLICATION_CREDENTIALS). The library's IdTokenClient
 * caches each token and fetches a new one five minutes before it expires.
 */

/** Returns `Bearer <id token>` for the configured audience. */
export type GoogleIdTokens = () => Promise<string>

export function createGoogleIdTokens (audience: string, auth: GoogleAuth = new GoogleAuth()): GoogleIdTokens {
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
