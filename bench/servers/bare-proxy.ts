import { readFileSync } from 'node:fs'
import Fastify from 'fastify'
import replyFrom from '@fastify/reply-from'

/*
 * Scenario 2, the JavaScript floor: Fastify + @fastify/reply-from (undici) over the same TLS listener
 * and the same mTLS upstream as Portcullis, with no authentication, policy, limits or logs.
 * Usage: node --import tsx bench/servers/bare-proxy.ts <port> <upstream-url> <dir with certs>
 */
const [port, upstream, dir] = process.argv.slice(2) as [string, string, string]
const file = (name: string): string => readFileSync(`${dir}/${name}`, 'utf8')

const app = Fastify({ https: { cert: file('gateway.crt'), key: file('gateway.key') }, logger: false })
await app.register(replyFrom, {
  base: upstream,
  undici: { connections: 64, connect: { ca: file('ca.crt'), cert: file('client.crt'), key: file('client.key'), servername: 'localhost' } }
})
app.all('/*', (request, reply) => reply.from(request.url))
await app.listen({ host: '127.0.0.1', port: Number(port) })
