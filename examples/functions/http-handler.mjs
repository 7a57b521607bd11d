// A plain Node.js request handler, as Cloud Run runs it (behind Google's front end) or as a
// function you serve yourself over mutual TLS: it trusts a request only with the gateway's
// assertion for exactly this method, path and body.
import { AssertionError, verifier } from './verifier.mjs'

const PLATFORM = process.env.FUNCTION_PLATFORM ?? 'node'

export async function handle (req, res) {
  const chunks = []
  for await (const chunk of req) chunks.push(chunk)
  const send = (status, doc) => res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(doc))
  try {
    const who = await verifier.verify(req, Buffer.concat(chunks))
    send(200, { hello: who.sub, platform: PLATFORM, method: req.method, path: req.url, roles: who.claims?.roles ?? [] })
  } catch (err) {
    if (err instanceof AssertionError) return send(401, { refused: err.reason })
    send(500, { error: 'assertion check failed' })
  }
}
