// Runs handler.mjs locally as Azure Functions invokes an HTTP function (Node.js v4 model): a
// Fetch-style request in, `{ status, headers, body | jsonBody }` out.
import { loadLocal, readBody, serveOverMtls } from './local-runner.mjs'

const local = await loadLocal()
const { handler } = await import('./handler.mjs')

await serveOverMtls(local, async (req, res) => {
  const body = await readBody(req)
  const headers = new Headers()
  for (const [name, value] of Object.entries(req.headers)) for (const v of [value].flat()) headers.append(name, v)
  const request = new Request(`https://${req.headers.host}${req.url}`, { method: req.method, headers, ...(body.length > 0 ? { body } : {}) })
  const result = await handler(request, { log: (...args) => console.log(...args) })
  const json = result.jsonBody !== undefined
  res.writeHead(result.status ?? 200, { ...(json ? { 'content-type': 'application/json' } : {}), ...result.headers })
    .end(json ? JSON.stringify(result.jsonBody) : result.body ?? '')
})
