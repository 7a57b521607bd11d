import t from 'tap'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { Test } from 'tap'
import { startDemoHarness } from '../helpers/demo.js'

// Tracing against a local OTLP/HTTP receiver (what a collector's otlphttp receiver accepts: JSON
// ExportTraceServiceRequest posted to /v1/traces), with the demo's real mTLS function as upstream.

interface OtlpSpan { traceId: string, spanId: string, parentSpanId?: string, name: string, kind: number }

async function startOtlpReceiver (t: Test): Promise<{ url: string, spans: OtlpSpan[], waitFor: (n: number) => Promise<void> }> {
  const spans: OtlpSpan[] = []
  let wake = (): void => {}
  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8').on('data', (c: string) => { body += c }).on('end', () => {
      if (req.url === '/v1/traces' && req.headers['content-type']?.includes('json') === true) {
        const doc = JSON.parse(body) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }> }
        for (const rs of doc.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans)
        wake()
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => new Promise<void>(resolve => { server.closeAllConnections(); server.close(() => resolve()) }))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/traces`,
    spans,
    waitFor: async n => { while (spans.length < n) await new Promise<void>(resolve => { wake = resolve }) }
  }
}

const CLIENT_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
const CLIENT_SPAN = '00f067aa0ba902b7'

t.test('with an OTLP endpoint: stage spans under the client\'s trace, and the function gets the gateway\'s span as parent', async t => {
  const receiver = await startOtlpReceiver(t)
  const demo = await startDemoHarness(t, { configure: raw => { raw.tracing = { otlpUrl: receiver.url } } })
  const res = await demo.client.send(`${demo.url}/hello`, {
    token: await demo.token(),
    headers: { traceparent: `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`, tracestate: 'vendor=client' }
  })
  t.equal(res.status, 200)
  const seen = res.json<{ headers: Record<string, string> }>().headers
  const [, traceId, parentId] = /^00-([0-9a-f]{32})-([0-9a-f]{16})-01$/.exec(seen.traceparent ?? '') ?? []
  t.equal(traceId, CLIENT_TRACE, 'the function continues the client\'s trace')
  t.not(parentId, CLIENT_SPAN, 'its parent is the gateway\'s span, not the client\'s')

  await demo.close() // flushes the exporter
  await receiver.waitFor(5)
  const byName = new Map(receiver.spans.map(s => [s.name, s]))
  const root = byName.get('portcullis request')
  t.equal(root?.traceId, CLIENT_TRACE)
  t.equal(root?.parentSpanId, CLIENT_SPAN, 'the request span is a child of the client\'s')
  for (const stage of ['authenticate', 'authorize', 'rate limit', 'upstream']) {
    t.equal(byName.get(stage)?.parentSpanId, root?.spanId, `${stage} span under the request span`)
  }
  t.equal(byName.get('upstream')?.spanId, parentId, 'the function\'s parent is the upstream span')
})

t.test('without an OTLP endpoint: nothing is added, a client\'s traceparent passes through untouched', async t => {
  const demo = await startDemoHarness(t)
  const token = await demo.token()
  const traceparent = `00-${CLIENT_TRACE}-${CLIENT_SPAN}-01`
  const passed = (await demo.client.send(`${demo.url}/hello`, { token, headers: { traceparent } })).json<{ headers: Record<string, string> }>()
  t.equal(passed.headers.traceparent, traceparent)
  const plain = (await demo.client.send(`${demo.url}/hello`, { token })).json<{ headers: Record<string, string> }>()
  t.equal(plain.headers.traceparent, undefined)
})
