// Issue #21: the token-attack suite over HTTP/2: every client offers h2 by ALPN (test/helpers/http.ts).
process.env.PORTCULLIS_TEST_PROTOCOL = 'h2'
await import('./token-attacks.test.js')

const { default: t } = await import('tap')
const { startDemoHarness } = await import('../helpers/demo.js')
t.test('the clients of this run speak HTTP/2 to the gateway', async t => {
  const demo = await startDemoHarness(t)
  t.equal((await demo.client.send(`${demo.url}/hello`, { token: await demo.token() })).status, 200)
  const metrics = (await demo.client.send(`${demo.adminUrl}/metrics`)).text
  t.match(metrics, /portcullis_requests_by_protocol_total\{protocol="HTTP\/2"\} 1\b/, 'the request came over HTTP/2')
  t.notMatch(metrics, /portcullis_requests_by_protocol_total\{protocol="HTTP\/1.1"\}/, 'and none over HTTP/1.1')
})
