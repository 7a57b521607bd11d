import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { DEFAULT_BUNDLE, DEFAULT_POLICIES_DIR, resolveOpa } from '../../scripts/opa.mjs'
import { readBundleFile } from '../../src/pipeline/authorize/bundle.js'
import { httpsClient } from '../helpers/http.js'
import { gatewayFiles, startGatewayProcess } from '../helpers/gateway-process.js'

// Issue 18: with the listener on "::", Node reports an IPv4 client as "::ffff:127.0.0.1". The gateway
// normalises it once, so the policy, the headers sent upstream and the access log all see 127.0.0.1,
// and library/network_time (net.cidr_contains) decides as `opa eval` does for that client.

const run = promisify(execFile)

interface Setup { url: string, port: string, token: string, client: ReturnType<typeof httpsClient>, seen: Array<{ xff: string | undefined, forwarded: string | undefined }>, log: () => string, waitForLog: (p: RegExp) => Promise<void> }

/** A gateway on "::" judging with library/network_time (route hello needs network "internal"). */
async function start (t: Test, extra = ''): Promise<Setup> {
  const files = await gatewayFiles(t)
  const seen: Setup['seen'] = []
  const fn = createServer((req, res) => {
    seen.push({ xff: req.headers['x-forwarded-for'] as string | undefined, forwarded: req.headers.forwarded })
    req.resume()
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
  })
  await new Promise<void>(resolve => fn.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { fn.closeAllConnections(); fn.close() })
  await writeFile(files.configFile, `
listen: { host: "::", port: 0, tls: { cert: gw.crt, key: gw.key } }
admin: { host: 127.0.0.1, port: 0 }
logging: { level: info }
issuers:
  - { id: local, issuer: https://idp.test, audiences: [api], algorithms: [ES256], jwks: { file: jwks.json } }
policy: { bundle: "${DEFAULT_BUNDLE}", entrypoint: library/network_time/decision }
upstreams: [{ id: fn, url: "http://127.0.0.1:${(fn.address() as AddressInfo).port}", plaintext: true }]
routes:
  - { id: hello, prefix: /hello, methods: [GET], upstream: fn, metadata: { network: internal } }
${extra}`)
  const gw = await startGatewayProcess(t, files.configFile)
  const port = new URL(gw.url.replace('[::]', 'localhost')).port
  return { url: `https://127.0.0.1:${port}`, port, token: await files.token(), client: httpsClient(t, files.caFile), seen, log: gw.log, waitForLog: gw.waitForLog }
}

t.test('an IPv4 client of a "::" listener is 127.0.0.1 to the policy, upstream and logs', async t => {
  const { url, token, client, seen, log, waitForLog } = await start(t)
  const res = await client.send(`${url}/hello`, { token })
  // Before the fix the policy saw "::ffff:127.0.0.1", which the WASM net.cidr_contains does not find
  // in 127.0.0.0/8: 403 "your network may not use this route".
  t.equal(res.status, 200, `library/network_time lets the internal client in (${res.text.slice(0, 120)})`)
  t.equal(seen.length, 1)
  t.equal(seen[0]?.xff, '127.0.0.1', 'upstream is told the dotted quad in X-Forwarded-For')
  t.match(seen[0]?.forwarded, /^for=127\.0\.0\.1;proto=https;/, 'and in Forwarded')
  await waitForLog(/"access":true/)
  t.match(log(), /"client_ip":"127\.0\.0\.1"/, 'the access line carries it')
  t.notMatch(log(), /::ffff:/i, 'the mapped form appears nowhere')

  // What opa eval decides for the address Node reported, mapped form included: the same as the gateway.
  const bundle = await readBundleFile(DEFAULT_BUNDLE)
  const dir = t.testdir()
  const input = (ip: string) => ({
    method: 'GET', path: '/hello', segments: ['hello'], query: {}, headers: {}, client: { ip }, tls: { client_certificate: null },
    principal: { type: 'jwt', issuer: 'https://idp.test', subject: 'carol', claims: {} }, route: { id: 'hello', metadata: { network: 'internal' } }, time_ns: 0
  })
  await writeFile(join(dir, 'data.json'), JSON.stringify(bundle.data))
  for (const ip of ['::ffff:127.0.0.1', '127.0.0.1']) {
    await writeFile(join(dir, 'input.json'), JSON.stringify(input(ip)))
    const { stdout } = await run(await resolveOpa(), [
      'eval', '--format', 'json', '--input', join(dir, 'input.json'), '-d', join(dir, 'data.json'),
      '-d', join(DEFAULT_POLICIES_DIR, 'library', 'network_time', 'network_time.rego'), 'data.library.network_time.decision.allow'
    ])
    const allow = (JSON.parse(stdout) as { result: Array<{ expressions: Array<{ value: unknown }> }> }).result[0]!.expressions[0]!.value
    t.equal(allow, true, `opa eval allows ${ip}, as the gateway did`)
  }
})

t.test('a mapped address named by a trusted proxy is the dotted quad too', async t => {
  const { url, token, client, seen } = await start(t, 'rateLimit: { trustedProxies: ["127.0.0.1"] }')
  const inside = await client.send(`${url}/hello`, { token, headers: { 'x-forwarded-for': '::ffff:10.1.2.3' } })
  t.equal(inside.status, 200, `the client 10.1.2.3 is in the internal network (${inside.text.slice(0, 120)})`)
  t.equal(seen[0]?.xff, '10.1.2.3', 'and upstream is told so')
  const outside = await client.send(`${url}/hello`, { token, headers: { 'x-forwarded-for': '::ffff:203.0.113.9' } })
  t.equal(outside.status, 403, 'a client outside it is refused')
  t.equal(outside.json().error, 'your network may not use this route')
})
