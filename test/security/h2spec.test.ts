import t from 'tap'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { exec, ROOT, runTool } from '../helpers/deploy-tools.js'
import { startSecurityHarness } from '../helpers/security.js'

/*
 * Issue #21: h2spec (pinned, scripts/h2spec.sh) in strict mode against the real public listener: every
 * case passes, on Node 20 and 24. Three of them Node's HTTP/2 session answers wrongly on its own (an
 * unsolicited PING ACK, a send window past 2^31-1 for the connection or a stream); the frame guard in
 * front of it (src/lifecycle/h2-frame-guard.ts) answers them as RFC 9113 says (docs/http2.md).
 */

t.test('h2spec --strict passes against the public listener', async t => {
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
  t.strictSame(failed, [], 'no failure', { output: run.output.slice(-4000) })
  t.comment(`h2spec on Node ${process.versions.node} (nghttp2 ${process.versions.nghttp2}): ${cases.length - failed.length} of ${cases.length} passed`)
  // The gateway itself stayed healthy: a normal request is still answered.
  const res = await h.send(h.head('GET', '/public/after-h2spec'))
  t.equal(res.responses[0]?.status, 200, 'an HTTP/1.1 request after the run is served')
})
