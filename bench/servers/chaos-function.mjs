// A function behind mutual TLS as a process of its own, so that `npm run chaos` can kill, pause
// (SIGSTOP) and restart it: it answers every request with a small JSON body, and only to clients
// whose certificate chains to the given CA (the gateway's).
//   node chaos-function.mjs <port> <cert.pem> <key.pem> <client-ca.pem>
import { readFileSync } from 'node:fs'
import { createServer } from 'node:https'

const [port, cert, key, ca] = process.argv.slice(2)
const server = createServer({
  cert: readFileSync(cert),
  key: readFileSync(key),
  ca: readFileSync(ca),
  requestCert: true,
  rejectUnauthorized: true
}, (req, res) => {
  req.resume()
  res.writeHead(200, { 'content-type': 'application/json' })
  res.end(JSON.stringify({ ok: true, path: req.url }))
})
// Longer than the gateway's idle time, so the gateway, not the function, closes idle connections.
server.keepAliveTimeout = 60_000
server.listen(Number(port), '127.0.0.1', () => { process.stdout.write('listening\n') })
