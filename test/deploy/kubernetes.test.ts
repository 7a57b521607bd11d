import t from 'tap'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseAllDocuments } from 'yaml'
import { validateConfig } from '../../src/config/load.js'
import { createCa } from '../../src/tls/pki.js'
import { DEFAULT_BUNDLE, buildBundle } from '../../scripts/opa.mjs'
import { deployTools, ROOT, runTool } from '../helpers/deploy-tools.js'

/*
 * docker/kubernetes/ checked offline against the Kubernetes API schemas (kubeconform, strict: unknown
 * fields are errors), for the oldest and newest Kubernetes versions we claim, then read for what an
 * operator relies on: hardening, probes on real admin endpoints, and a config the gateway accepts.
 */

const DIR = join(ROOT, 'docker/kubernetes')
const VERSIONS = ['1.33.0', '1.37.0']
const tools = await deployTools()

async function manifests (): Promise<Array<{ file: string, doc: Record<string, any> }>> {
  const kustomization = (parseAllDocuments(await readFile(join(DIR, 'kustomization.yaml'), 'utf8'))[0]!.toJS()) as { resources: string[] }
  const out: Array<{ file: string, doc: Record<string, any> }> = []
  for (const file of kustomization.resources) {
    for (const doc of parseAllDocuments(await readFile(join(DIR, file), 'utf8'))) out.push({ file, doc: doc.toJS() as Record<string, any> })
  }
  return out
}

function kind (docs: Array<{ doc: Record<string, any> }>, k: string): Record<string, any> {
  const found = docs.find(d => d.doc.kind === k)
  if (found === undefined) throw new Error(`no ${k} in docker/kubernetes`)
  return found.doc
}

t.test('every manifest is valid against the Kubernetes schemas (kubeconform -strict)', async t => {
  const docs = await manifests()
  const files = [...new Set(docs.map(d => join(DIR, d.file)))]
  for (const version of VERSIONS) {
    const res = await runTool(tools.kubeconform, ['-strict', '-summary', '-kubernetes-version', version, '-schema-location', tools.schemas, ...files])
    t.equal(res.code, 0, `Kubernetes ${version}:\n${res.output}`)
    t.match(res.output, `Valid: ${docs.length}, Invalid: 0, Errors: 0, Skipped: 0`, `all ${docs.length} resources checked for ${version}`)
  }
  const second = await runTool(tools['kubernetes-validate'], ['--strict', '--quiet', '-k', VERSIONS.at(-1)!, ...files])
  t.equal(second.code, 0, `kubernetes-validate agrees:\n${second.output}`)
})

t.test('the validator catches a misspelt field (the schemas really are applied)', async t => {
  const dir = t.testdir()
  const bad = (await readFile(join(DIR, 'deployment.yaml'), 'utf8')).replace('readOnlyRootFilesystem', 'readOnlyRootFileSystem')
  await writeFile(join(dir, 'deployment.yaml'), bad)
  const res = await runTool(tools.kubeconform, ['-strict', '-kubernetes-version', VERSIONS[0]!, '-schema-location', tools.schemas, join(dir, 'deployment.yaml')])
  t.not(res.code, 0)
  t.match(res.output, /readOnlyRootFileSystem/)
})

t.test('the Deployment is hardened, probed on the admin listener, and covered by the PDB and HPA', async t => {
  const docs = await manifests()
  const deployment = kind(docs, 'Deployment')
  const pod = deployment.spec.template.spec
  const [gateway] = pod.containers as Array<Record<string, any>>
  t.match(pod.securityContext, { runAsNonRoot: true, runAsUser: 1000, seccompProfile: { type: 'RuntimeDefault' } })
  t.match(gateway!.securityContext, { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, privileged: false, capabilities: { drop: ['ALL'] } })
  t.equal(pod.automountServiceAccountToken, false)
  t.ok(gateway!.resources.requests.cpu !== undefined && gateway!.resources.requests.memory !== undefined, 'resource requests set')
  const admin = (gateway!.ports as Array<{ name: string, containerPort: number }>).find(p => p.name === 'admin')
  t.equal(admin?.containerPort, 9090)
  t.match(gateway!.livenessProbe.httpGet, { path: '/healthz', port: 'admin' })
  t.match(gateway!.readinessProbe.httpGet, { path: '/readyz', port: 'admin' })
  // The kubelet waits this long after SIGTERM: the preStop pause plus the gateway's 10 s drain must fit.
  t.ok(pod.terminationGracePeriodSeconds > 10 + (gateway!.lifecycle?.preStop?.sleep?.seconds ?? 0), 'grace period outlasts preStop + drain')

  const labels = deployment.spec.template.metadata.labels
  t.same(deployment.spec.selector.matchLabels, labels)
  t.same(kind(docs, 'PodDisruptionBudget').spec.selector.matchLabels, labels, 'the PDB selects the gateway pods')
  t.same(kind(docs, 'Service').spec.selector, labels)
  t.match(kind(docs, 'HorizontalPodAutoscaler').spec, { scaleTargetRef: { kind: 'Deployment', name: deployment.metadata.name } })
  t.ok(kind(docs, 'HorizontalPodAutoscaler').spec.minReplicas >= 2, 'never scaled below two replicas')
  t.equal(deployment.spec.replicas, undefined, 'the autoscaler owns the replica count; apply does not reset it')

  // Every Secret the pods need is named where an operator looks before `kubectl apply -k`.
  const secrets = new Set<string>([
    ...(pod.volumes as Array<Record<string, any>>).flatMap(v => v.secret?.secretName ?? []),
    ...(gateway!.env as Array<Record<string, any>>).flatMap(e => e.valueFrom?.secretKeyRef?.name ?? [])
  ])
  t.same([...secrets].sort(), ['portcullis-redis', 'portcullis-server-tls', 'portcullis-upstream-tls'])
  const kustomization = await readFile(join(ROOT, 'docker/kubernetes/kustomization.yaml'), 'utf8')
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
  for (const name of secrets) {
    t.ok(kustomization.includes(name), `kustomization.yaml names ${name}`)
    t.ok(readme.includes(name), `the README names ${name}`)
  }

  const mounts = Object.fromEntries((gateway!.volumeMounts as Array<{ name: string, mountPath: string }>).map(m => [m.name, m.mountPath]))
  const volumes = Object.fromEntries((pod.volumes as Array<Record<string, any>>).map(v => [v.name, v]))
  t.equal(volumes[Object.keys(mounts).find(n => mounts[n] === '/etc/portcullis/config.yaml')!]?.configMap?.name, kind(docs, 'ConfigMap').metadata.name)
  for (const name of ['server-tls', 'upstream-tls']) t.ok(volumes[name]?.secret?.secretName, `${name} comes from a Secret`)
})

t.test('the ConfigMap holds a config this gateway accepts, with the Deployment\'s env and mounted files', async t => {
  const docs = await manifests()
  const raw = (parseAllDocuments(kind(docs, 'ConfigMap').data['config.yaml'])[0]!.toJS()) as unknown
  const deployment = kind(docs, 'Deployment')
  // Values from Secrets get a stand-in of the documented form.
  const secrets: Record<string, string> = { 'portcullis-redis/url': 'rediss://:s3cret@redis.example:6380' }
  const env = Object.fromEntries((deployment.spec.template.spec.containers[0].env as Array<{ name: string, value?: string, valueFrom?: { secretKeyRef: { name: string, key: string } } }>)
    .map(e => [e.name, e.value ?? secrets[`${e.valueFrom!.secretKeyRef.name}/${e.valueFrom!.secretKeyRef.key}`]!]))
  // Stand-ins for the mounted Secrets, made now, at the paths the Deployment mounts them to.
  const ca = await createCa('k8s test CA')
  const pair = await ca.issue({ commonName: 'gw', dnsNames: ['portcullis'], usage: 'both' })
  const root = t.testdir({
    server: { 'tls.crt': pair.cert, 'tls.key': pair.key },
    upstream: { 'ca.crt': ca.cert, 'tls.crt': pair.cert, 'tls.key': pair.key }
  })
  await buildBundle({})
  const text = JSON.stringify(raw).replaceAll('/etc/portcullis/tls', root).replaceAll('/app/build/bundle.tar.gz', DEFAULT_BUNDLE)
  const config = await validateConfig(JSON.parse(text), { baseDir: root, env, source: 'configmap.yaml' })
  t.equal(config.admin.host, '0.0.0.0', 'admin reachable by the kubelet and Prometheus')
  t.equal(config.admin.port, 9090)
  t.equal(config.listen.port, 8443)
  t.match(config.rateLimit.store, { type: 'redis', url: secrets['portcullis-redis/url'] }, 'one rate-limit budget for every replica the autoscaler runs')
})
