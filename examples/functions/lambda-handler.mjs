// An AWS Lambda function URL handler (payload format 2.0) that trusts a request only with the
// gateway's assertion for exactly this method, path and body.
import { AssertionError, verifier } from './verifier.mjs'

export const handler = async (event) => {
  const request = {
    method: event.requestContext.http.method,
    url: event.rawPath + (event.rawQueryString ? `?${event.rawQueryString}` : ''),
    headers: event.headers
  }
  const body = Buffer.from(event.body ?? '', event.isBase64Encoded ? 'base64' : 'utf8')
  try {
    const who = await verifier.verify(request, body)
    return {
      statusCode: 200,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ hello: who.sub, platform: 'aws-lambda', method: request.method, path: request.url, roles: who.claims?.roles ?? [] })
    }
  } catch (err) {
    if (err instanceof AssertionError) return { statusCode: 401, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refused: err.reason }) }
    throw err
  }
}
