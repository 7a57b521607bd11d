// Runs handler.mjs locally as a Lambda function URL invokes it: each request becomes a payload
// format 2.0 event, the handler's result becomes the response.
import { loadLocal, readBody, serveOverMtls } from './local-runner.mjs'

const local = await loadLocal()
const { handler } = await import('./handler.mjs')

await serveOverMtls(local, async (req, res) => {
  const body = await readBody(req)
  const q = req.url.indexOf('?')
  const rawPath = q === -1 ? req.url : req.url.slice(0, q)
  const headers = {}
  for (const [name, value] of Object.entries(req.headers)) headers[name] = Array.isArray(value) ? value.join(',') : value
  const event = {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString: q === -1 ? '' : req.url.slice(q + 1),
    headers,
    requestContext: { http: { method: req.method, path: rawPath, protocol: `HTTP/${req.httpVersion}`, sourceIp: req.socket.remoteAddress }, timeEpoch: Date.now() },
    ...(body.length > 0 ? { body: body.toString('base64'), isBase64Encoded: true } : { isBase64Encoded: false })
  }
  const result = await handler(event)
  const status = typeof result === 'object' && result !== null && 'statusCode' in result ? result.statusCode : 200
  const out = typeof result === 'object' && result !== null && 'statusCode' in result
    ? Buffer.from(result.body ?? '', result.isBase64Encoded ? 'base64' : 'utf8')
    : Buffer.from(JSON.stringify(result)) // as Lambda: anything else is JSON
  res.writeHead(status, result?.headers ?? { 'content-type': 'application/json' }).end(out)
})
