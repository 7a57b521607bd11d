// An Azure Functions HTTP handler (Node.js v4 programming model: a Fetch-style request in, a
// response object out) that trusts a request only with the gateway's assertion for exactly this
// method, path and body. On Azure, register it in your app:
//   import { app } from '@azure/functions'
//   app.http('my-function', { route: 'my-function/{*rest}', authLevel: 'function', handler })
import { AssertionError, verifier } from './verifier.mjs'

export async function handler (request) {
  const url = new URL(request.url)
  const body = Buffer.from(await request.arrayBuffer())
  const target = url.pathname + url.search
  try {
    const who = await verifier.verify({ method: request.method, url: target, headers: Object.fromEntries(request.headers) }, body)
    return { status: 200, jsonBody: { hello: who.sub, platform: 'azure', method: request.method, path: target, roles: who.claims?.roles ?? [] } }
  } catch (err) {
    if (err instanceof AssertionError) return { status: 401, jsonBody: { refused: err.reason } }
    throw err
  }
}
