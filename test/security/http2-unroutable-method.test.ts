import { connect } from 'node:http2'
import t from 'tap'
import { gatewayFiles, startGatewayProcess } from '../helpers/gateway-process.js'

/*
 * HTTP/2 carries any token as a method. One no router knows (`get`, `FOO`) would end in Fastify's
 * last-resort 404, which logs itself as a Fastify bug with the whole route tree, on every such request:
 * a log flood for the asking. The gateway answers it as any refused method, 405, and logs nothing.
 */

t.test('an HTTP/2 method no router knows: 405 with the gateway\'s body, nothing logged, nothing forwarded', async t => {
  const files = await gatewayFiles(t)
  await files.writeConfig('http://127.0.0.1:9') // never reached: a port nothing listens on
  const gw = await startGatewayProcess(t, files.configFile)
  const session = connect(gw.url, { ca: files.ca.cert })
  t.teardown(() => { session.close() })
  const token = await files.token()
  const ask = async (method: string): Promise<{ status: number, allow: unknown, body: string }> => new Promise((resolve, reject) => {
    const req = session.request({ ':method': method, ':path': '/hello', authorization: `Bearer ${token}` }, { endStream: true })
    let body = ''
    let status = 0
    let allow: unknown
    req.on('response', h => { status = Number(h[':status']); allow = h.allow })
    req.setEncoding('utf8').on('data', (c: string) => { body += c }).on('end', () => { resolve({ status, allow, body }) }).on('error', reject)
  })
  const before = gw.log().length
  for (const method of ['get', 'FOO', 'Post', 'M-SEARCHX']) {
    const r = await ask(method)
    t.equal(r.status, 405, `${method}: 405`)
    t.equal(r.allow, 'GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS', `${method}: the methods the gateway serves`)
    t.match(JSON.parse(r.body), { code: 'GW_ERR_GUARD_METHOD', request_id: null }, `${method}: the gateway's error body`)
  }
  // A method the router knows but the gateway does not serve goes through the guard, with its access line.
  const trace = await ask('TRACE')
  t.equal(trace.status, 405)
  t.match(JSON.parse(trace.body), { code: 'GW_ERR_GUARD_METHOD' })
  await gw.waitForLog(/"method":"TRACE".*"msg":"request completed"/)
  const logged = gw.log().slice(before)
  t.notMatch(logged, /fastify bug|└──/, 'no last-resort 404 and no route tree in the log')
  t.notMatch(logged, /"method":"(get|FOO|Post)"/, 'nothing else logged for them either')
  const metrics = await (await fetch(`${gw.adminUrl}/metrics`)).text()
  t.match(metrics, /portcullis_rejected_total\{reason="guard_method"\} [4-9]/, 'each counted as a refused method')
})
