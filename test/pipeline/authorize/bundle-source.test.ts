import t from 'tap'
import { createServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import { createServerSource } from '../../../src/pipeline/authorize/bundle-source.js'
import { createCa } from '../../../src/tls/pki.js'

// A bundle server known by a name its address does not carry (a container alias, a load balancer's
// IP): the certificate is checked against tls.servername, and against nothing weaker.

t.test('tls.servername: the certificate must match the configured name, not the URL\'s address', async t => {
  const ca = await createCa('bundle-source-test-ca', 1)
  const cert = await ca.issue({ commonName: 'bundles', dnsNames: ['bundles'], usage: 'server', days: 1 })
  const sni: Array<string | false | null> = []
  const server = createServer({ cert: cert.cert, key: cert.key }, (_req, res) => { res.writeHead(200, { etag: '"1"' }).end('archive') })
  server.on('secureConnection', socket => { sni.push(socket.servername) })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/bundles/bundle.tar.gz`
  const source = (servername?: string) => {
    const s = createServerSource({ url, timeoutMs: 2000, maxBytes: 1024, tls: { ca: Buffer.from(ca.cert), ...(servername !== undefined ? { servername } : {}) } })
    t.teardown(s.close)
    return s
  }

  await t.rejects(source().fetch(), /IP: 127\.0\.0\.1 is not in the cert's list/, 'without it, the address is what the certificate must name')
  await t.rejects(source('other').fetch(), /Host: other\. is not in the cert's altnames/, 'a name the certificate does not carry is refused')
  t.same(await source('bundles').fetch(), Buffer.from('archive'), 'the configured name matches')
  t.equal(sni.at(-1), 'bundles', 'and is sent as SNI')
})
