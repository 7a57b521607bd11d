import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { exec, ROOT, runTool } from '../helpers/deploy-tools.js'
import { startSecurityHarness } from '../helpers/security.js'

/*
 * Issue #21: h2spec (pinned, scripts/h2spec.sh) in strict mode against the real public listener.
 * Every case must pass except these, which are Node's own HTTP/2 behaviour and not the gateway's to
 * change (docs/http2.md lists them): no option of http2.createSecureServer reaches them (checked on
 * Node 20.20 and 24.22). Each still ends the offending connection; only the error code or frame differs from what
 * h2spec expects. Which of them fail depends on Node's version (measured with raw frames and h2spec,
 * the same on every run); a case here that passes is fine.
 */
const NODE_LIMITATIONS = new Map([
  // node_http2.cc, Http2Session::HandlePingFrame: a PING ACK with no PING outstanding is made a session
  // error ("there is no legitimate reason to receive an unsolicited PING ack"): GOAWAY INTERNAL_ERROR and
  // close, on Node 20.20 and 24.22 alike (h2spec wants it ignored).
  ['http2/6.7 Sends a PING frame with ACK', 'Node closes the connection on an unsolicited PING ACK'],
  // The connection's window beyond 2^31-1: Node 20.20 (nghttp2 1.61) tears the session down with GOAWAY
  // INTERNAL_ERROR before nghttp2's FLOW_CONTROL_ERROR; Node 24.22 (nghttp2 1.70) sends FLOW_CONTROL_ERROR (passes).
  ['http2/6.9.1 Sends multiple WINDOW_UPDATE frames increasing the flow control window to above 2^31-1', 'GOAWAY INTERNAL_ERROR instead of FLOW_CONTROL_ERROR (Node 20)'],
  // A stream's window beyond 2^31-1: Node 20.20 sends RST_STREAM FLOW_CONTROL_ERROR, then closes the
  // connection (passes); Node 24.22 makes it a connection error, GOAWAY FLOW_CONTROL_ERROR (h2spec wants the stream error).
  ['http2/6.9.1 Sends multiple WINDOW_UPDATE frames increasing the flow control window to above 2^31-1 on a stream', 'GOAWAY FLOW_CONTROL_ERROR instead of RST_STREAM FLOW_CONTROL_ERROR (Node 24)']
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
  t.comment(`h2spec on Node ${process.versions.node} (nghttp2 ${process.versions.nghttp2}): ${cases.length - failed.length} of ${cases.length} passed; ` +
    `known Node limitations hit: ${failed.length}${failed.length > 0 ? ` (${failed.map(n => n.replace(/^http2\//, '')).join('; ')})` : ''}`)
  // The gateway itself stayed healthy: a normal request is still answered.
  const res = await h.send(h.head('GET', '/public/after-h2spec'))
  t.equal(res.responses[0]?.status, 200, 'an HTTP/1.1 request after the run is served')
})
