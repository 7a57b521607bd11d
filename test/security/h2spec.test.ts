import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { exec, ROOT, runTool } from '../helpers/deploy-tools.js'
import { startSecurityHarness } from '../helpers/security.js'

/*
 * Issue #21: h2spec (pinned, scripts/h2spec.sh) in strict mode against the real public listener.
 * Every case must pass except these, which are Node's own HTTP/2 behaviour and not the gateway's to
 * change (docs/http2.md lists them). Each still ends the offending connection; only the error code
 * or frame differs from what h2spec expects. A case here that starts passing (a later Node) is fine.
 */
const NODE_LIMITATIONS = new Map([
  // node_http2.cc treats an unsolicited PING ACK as a connection error ("no legitimate reason") and closes.
  ['http2/6.7 Sends a PING frame with ACK', 'Node closes the connection on an unsolicited PING ACK'],
  // nghttp2 reports the window overflow; Node then tears the session down with GOAWAY INTERNAL_ERROR.
  ['http2/6.9.1 Sends multiple WINDOW_UPDATE frames increasing the flow control window to above 2^31-1', 'GOAWAY INTERNAL_ERROR instead of FLOW_CONTROL_ERROR'],
  ['http2/6.9.1 Sends multiple WINDOW_UPDATE frames increasing the flow control window to above 2^31-1 on a stream', 'connection closed instead of RST_STREAM FLOW_CONTROL_ERROR']
])

t.test('h2spec --strict passes against the public listener (but for Node limitations named here)', async t => {
  const { stdout } = await exec('bash', [join(ROOT, 'scripts/h2spec.sh')])
  const h2spec = stdout.trim()
  const h = await startSecurityHarness(t)
  const report = join(t.testdirName, 'h2spec.xml')
  const run = await runTool(h2spec, ['--strict', '--tls', '--insecure', '--port', String(h.port), '--path', '/public/h2spec', '--timeout', '10', '--junit-report', report])
  const xml = await readFile(report, 'latin1')
  const cases = [...xml.matchAll(/<testcase package="([^"]+)" classname="([^"]+)"[^>]*>(\s*<(error|failure|skipped))?/g)]
    .map(m => ({ name: `${m[1]} ${m[2]!.replace(/&#34;/g, '"').replace(/&amp;/g, '&')}`, outcome: m[4] ?? 'passed' }))
  t.ok(cases.length >= 146, `${cases.length} cases ran (h2spec 2.2.1 has 146 with --strict)`)
  t.equal(cases.filter(c => c.outcome === 'skipped').length, 0, 'none skipped')
  const failed = cases.filter(c => c.outcome === 'error' || c.outcome === 'failure').map(c => c.name)
  t.strictSame(failed.filter(n => !NODE_LIMITATIONS.has(n)), [], 'no failure but the known Node limitations', { output: run.output.slice(-4000) })
  t.comment(`h2spec: ${cases.length - failed.length} of ${cases.length} passed; known Node limitations hit: ${failed.length}`)
  // The gateway itself stayed healthy: a normal request is still answered.
  const res = await h.send(h.head('GET', '/public/after-h2spec'))
  t.equal(res.responses[0]?.status, 200, 'an HTTP/1.1 request after the run is served')
})
