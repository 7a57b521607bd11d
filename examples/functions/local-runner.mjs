// The local runner's common part: reads local.json (written by `portcullis init function`: this
// folder's certificates, the gateway's identity and the handler's environment), then serves over
// mutual TLS, admitting only the gateway's client certificate, as the function's platform would.
import { readFile } from 'node:fs/promises'
import { createServer } from 'node:https'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))

export async function loadLocal () {
  const local = JSON.parse(await readFile(resolve(here, 'local.json'), 'utf8'))
  for (const [name, value] of Object.entries(local.env)) {
    // Files are relative to this folder; what the environment already says wins.
    process.env[name] ??= name === 'PORTCULLIS_JWKS' && !/^https?:\/\//.test(value) ? resolve(here, value) : value
  }
  return local
}

/** Serves `listener` (a Node request listener) over mutual TLS to the gateway only. */
export async function serveOverMtls (local, listener) {
  const server = createServer({
    cert: await readFile(resolve(here, local.cert)),
    key: await readFile(resolve(here, local.key)),
    ca: await readFile(resolve(here, local.ca)),
    requestCert: true,
    rejectUnauthorized: true // no certificate from that CA: no TLS session at all
  }, (req, res) => {
    const peer = req.socket.getPeerX509Certificate()
    if (!peer?.subjectAltName?.split(', ').includes(`URI:${local.gateway}`)) {
      res.writeHead(403, { 'content-type': 'application/json' }).end('{"refused":"not the gateway"}')
      return
    }
    listener(req, res).catch(err => {
      process.stderr.write(`${err.stack}\n`)
      if (!res.headersSent) res.writeHead(500).end()
    })
  })
  await new Promise((resolve, reject) => server.once('error', reject).listen(local.port, local.host, resolve))
  process.stdout.write(`${local.platform} function listening on https://${local.host}:${local.port} (mutual TLS; admits ${local.gateway})\n`)
  const stop = () => server.close(() => process.exit(0))
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  return server
}

export async function readBody (req) {
  const chunks = []
  for await (const chunk of req) chunks.push(chunk)
  return Buffer.concat(chunks)
}
