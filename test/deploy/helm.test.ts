import t, { type Test } from 'tap'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { deployTools, ROOT, runTool } from '../helpers/deploy-tools.js'

/*
 * deploy/helm/portcullis: `helm lint --strict`, then what `helm template` renders checked by
 * kubeconform -strict against the Kubernetes schemas we claim, and compared with docker/kubernetes/
 * (the same resources, hardening and probes), for the defaults and for a values file that changes them.
 */

const CHART = join(ROOT, 'deploy/helm/portcullis')
const VERSIONS = ['1.33.0', '1.37.0']
const tools = await deployTools()

/** `helm template` for a Kubernetes version (the chart's kubeVersion is checked against it). */
async function render (t: Test, dir: string, version: string, ...args: string[]): Promise<{ file: string, docs: Array<Record<string, any>> }> {
  const res = await runTool(tools.helm, ['template', 'gw', CHART, '--kube-version', version, ...args])
  t.equal(res.code, 0, `helm template --kube-version ${version} ${args.join(' ')}${res.code === 0 ? '' : `:\n${res.output.slice(0, 2000)}`}`)
  const file = join(dir, `rendered-${version}.yaml`)
  await writeFile(file, res.output)
  return { file, docs: parseAllDocuments(res.output).map(d => d.toJS() as Record<string, any>).filter(d => d !== null) }
}

/** Rendered for every Kubernetes version we claim, each rendering valid against that version's schemas. */
async function renderValid (t: Test, dir: string, ...args: string[]): Promise<Array<Record<string, any>>> {
  let docs: Array<Record<string, any>> = []
  for (const version of VERSIONS) {
    const rendered = await render(t, dir, version, ...args)
    docs = rendered.docs
    const res = await runTool(tools.kubeconform, ['-strict', '-summary', '-kubernetes-version', version, '-schema-location', tools.schemas, rendered.file])
    t.equal(res.code, 0, `Kubernetes ${version}:\n${res.output}`)
    t.match(res.output, `Valid: ${docs.length}, Invalid: 0, Errors: 0, Skipped: 0`, `all ${docs.length} rendered resources valid for ${version}`)
  }
  return docs
}

t.test('helm lint --strict passes', async t => {
  const res = await runTool(tools.helm, ['lint', '--strict', CHART])
  t.equal(res.code, 0, res.output)
  t.match(res.output, /1 chart\(s\) linted, 0 chart\(s\) failed/)
})

t.test('the defaults render the resources of docker/kubernetes, valid against the schemas', async t => {
  const docs = await renderValid(t, t.testdir())
  t.same(docs.map(d => d.kind).sort(), ['ConfigMap', 'Deployment', 'HorizontalPodAutoscaler', 'NetworkPolicy', 'PodDisruptionBudget', 'Service'])
  const deployment = docs.find(d => d.kind === 'Deployment')!
  const pod = deployment.spec.template.spec
  const [gateway] = pod.containers as Array<Record<string, any>>
  t.equal(deployment.spec.replicas, undefined, 'the autoscaler owns the replica count')
  t.match(gateway!.securityContext, { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } })
  t.match(gateway!.readinessProbe.httpGet, { path: '/readyz', port: 'admin' })
  t.equal(gateway!.image, 'registry.example.com/portcullis:0.2.0', 'tag defaults to the appVersion')
  const config = parseAllDocuments(docs.find(d => d.kind === 'ConfigMap')!.data['config.yaml'])[0]!.toJS() as Record<string, any>
  t.match(config, { listen: { port: 8443 }, admin: { port: 9090 }, rateLimit: { store: { type: 'redis', url: '${REDIS_URL}' } } })
  t.same(docs.find(d => d.kind === 'Service')!.spec.selector, deployment.spec.template.metadata.labels)
})

t.test('values change what they say: fixed replicas, no autoscaler, other ports, no Redis secret', async t => {
  const dir = t.testdir()
  const values = join(dir, 'values.yaml')
  await writeFile(values, [
    'autoscaling: { enabled: false }', 'replicaCount: 3', 'networkPolicy: { enabled: false }', 'image: { tag: "9.9.9" }',
    'secrets: { redis: "" }', 'config: { admin: { port: 9191 } }', ''
  ].join('\n'))
  const docs = await renderValid(t, dir, '-f', values)
  t.same(docs.map(d => d.kind).sort(), ['ConfigMap', 'Deployment', 'PodDisruptionBudget', 'Service'])
  const deployment = docs.find(d => d.kind === 'Deployment')!
  const [gateway] = deployment.spec.template.spec.containers as Array<Record<string, any>>
  t.equal(deployment.spec.replicas, 3)
  t.equal(gateway!.image, 'registry.example.com/portcullis:9.9.9')
  t.match(gateway!.ports, [{ name: 'https', containerPort: 8443 }, { name: 'admin', containerPort: 9191 }])
  t.notOk((gateway!.env as Array<{ name: string }>).some(e => e.name === 'REDIS_URL'), 'no REDIS_URL without its Secret')
})

t.test('a misspelt field in the values is refused by the schemas', async t => {
  const dir = t.testdir()
  const values = join(dir, 'values.yaml')
  await writeFile(values, 'resources: { requets: { cpu: 1 } }\n')
  const { file } = await render(t, dir, VERSIONS[0]!, '-f', values)
  const check = await runTool(tools.kubeconform, ['-strict', '-kubernetes-version', VERSIONS[0]!, '-schema-location', tools.schemas, file])
  t.not(check.code, 0, 'kubeconform refuses the unknown field')
  t.match(check.output, /requets/)
})
