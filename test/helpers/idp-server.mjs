// A stand-in OpenID provider as a process of its own, so that a fault test can stop, pause (SIGSTOP),
// slow and restart it: HTTPS discovery and a JWKS read from a file on every request (the test
// rotates keys by rewriting the file). A file named <jwks>.delay holding a number of milliseconds
// slows every answer by that much.
//   node idp-server.mjs <port> <cert.pem> <key.pem> <jwks.json> <issuer>
import { readFileSync } from 'node:fs'
import { createServer } from 'node:https'

const [port, certFile, keyFile, jwksFile, issuer] = process.argv.slice(2)
const delay = () => { try { return Number(readFileSync(`${jwksFile}.delay`, 'utf8')) || 0 } catch { return 0 } }
const server = createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (req, res) => {
  setTimeout(() => {
    res.setHeader('content-type', 'application/json')
    if (req.url === '/.well-known/openid-configuration') res.end(JSON.stringify({ issuer, jwks_uri: `${issuer}/keys` }))
    else if (req.url === '/keys') res.end(readFileSync(jwksFile))
    else res.writeHead(404).end('{}')
  }, delay())
})
server.listen(Number(port), '127.0.0.1', () => { process.stdout.write('listening\n') })
