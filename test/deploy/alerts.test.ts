import t from 'tap'
import { execFile } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Registry } from 'prom-client'
import { parse } from 'yaml'
import { createClusterMetrics, createMetrics } from '../../src/observability/metrics.js'
import { ROOT } from '../helpers/deploy-tools.js'
import { systemTool } from '../helpers/system-tools.js'

// The shipped alerting rules, checked and unit-tested by the real promtool (Debian's prometheus
// package), and wired into the Prometheus of docker-compose.yml.

const exec = promisify(execFile)
const RULES = join(ROOT, 'docker/prometheus/alerts.yml')
const run = async (...args: string[]): Promise<{ code: number, output: string }> =>
  exec(systemTool('promtool'), args, { cwd: join(ROOT, 'docker/prometheus') }).then(
    r => ({ code: 0, output: r.stdout + r.stderr }),
    (err: { code: number, stdout: string, stderr: string }) => ({ code: err.code, output: err.stdout + err.stderr }))

interface Rule { alert: string, expr: string, labels?: Record<string, string> }
const rules = (parse(await readFile(RULES, 'utf8')) as { groups: Array<{ rules: Rule[] }> }).groups.flatMap(g => g.rules)

t.test('promtool check rules accepts alerts.yml', async t => {
  const r = await run('check', 'rules', RULES)
  t.equal(r.code, 0, r.output)
})

t.test('promtool test rules: each alert fires on its fixture and stays silent on the near misses', async t => {
  const r = await run('test', 'rules', 'alerts.test.yml')
  t.equal(r.code, 0, r.output)
  t.match(r.output, /SUCCESS/)
})

t.test('every alert the issue asks for is there, and each is unit-tested', async t => {
  const names = rules.map(r => r.alert)
  for (const name of ['PortcullisAuthnFailureSpike', 'PortcullisDenialSpike', 'PortcullisPolicyBundleNotLoaded', 'PortcullisPolicyBundleFailing',
    'PortcullisPolicyBundleStale', 'PortcullisUpstreamErrorRate', 'PortcullisCertificateExpiringSoon', 'PortcullisRateLimitStoreDown',
    'PortcullisRedisStoreErrors', 'PortcullisEventLoopLag']) t.ok(names.includes(name), name)
  const tests = await readFile(join(ROOT, 'docker/prometheus/alerts.test.yml'), 'utf8')
  for (const name of names) {
    t.match(tests, new RegExp(`alertname: ${name}\\n\\s+exp_alerts:\\n\\s+- exp_labels`), `${name} has a fixture that fires`)
  }
  for (const r of rules) t.ok(['critical', 'warning', 'info'].includes(r.labels?.severity ?? ''), `${r.alert} has a severity`)
})

t.test('the rules use only metrics the gateway exports', async t => {
  const registry = new Registry()
  createMetrics(registry)
  // With --workers, the primary adds its own to the same scrape.
  const primary = new Registry()
  createClusterMetrics(primary, () => ({ starting: 0, listening: 0, waiting: 0 }))
  const exported = new Set<string>()
  for (const m of [...registry.getMetricsAsArray(), ...primary.getMetricsAsArray()]) {
    exported.add(m.name)
    if (String(m.type) === 'histogram') for (const s of ['_bucket', '_sum', '_count']) exported.add(m.name + s)
  }
  for (const r of rules) {
    for (const name of r.expr.match(/portcullis_[a-z0-9_]+/g) ?? []) t.ok(exported.has(name), `${r.alert}: ${name} is exported`)
  }
})

t.test('docker-compose.yml loads the rules into its Prometheus', async t => {
  const compose = parse(await readFile(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as { services: Record<string, { volumes: string[] }> }
  t.ok(compose.services.prometheus!.volumes.includes('./docker/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro'), 'mounted beside prometheus.yml')
  const r = await run('check', 'config', 'prometheus.yml')
  t.equal(r.code, 0, r.output)
  t.match(r.output, /1 rule files found/, 'prometheus.yml names the rule file')
  t.match(r.output, `SUCCESS: ${rules.length} rules found`, 'and Prometheus reads every rule in it')
})
