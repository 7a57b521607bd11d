import t, { type Test } from 'tap'
import { execFile, spawn } from 'node:child_process'
import { randomBytes, randomUUID } from 'node:crypto'
import { chmod, copyFile, mkdir, readFile, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { importJWK, SignJWT, type JWK } from 'jose'
import { Agent } from 'undici'
import { parseAllDocuments, stringify } from 'yaml'
import { compose } from '../helpers/compose.js'
import { ROOT } from '../helpers/deploy-tools.js'
import { buildImage, podman, waitFor } from '../helpers/podman.js'
import { freePort } from '../helpers/ports.js'
import { systemTool } from '../helpers/system-tools.js'

/*
 * docker/kubernetes/ running: `podman kube play` starts the Deployment (two replicas, the
 * autoscaler's minimum) with its ConfigMap, and the compose demo function as a Pod, each played with
 * its Service, all from the real image, on a Podman network of their own. Podman runs no
 * autoscaler, Secrets controller, Services or cluster DNS (it plays Pods and Deployments, and ConfigMaps
 * as their volumes), so the rendering makes only these changes: replicas from the HPA's minReplicas,
 * the image built here, no containerPorts (Podman 4 would publish each on the host, where two replicas
 * collide; the probes get the port numbers), the ConfigMap mounted as a folder (Podman 4 has no
 * subPath for it), Secrets as hostPath folders of the same files,
 * REDIS_URL as a value, the issuer's keys from a file instead of discovery, an admin token for the
 * revocation API, and the function's Service name resolved by a hostAlias to its pod. Redis is this
 * machine's redis-server on the network's gateway address (no Redis image can be had here).
 */

const exec = promisify(execFile)
const id = randomUUID().slice(0, 8)
const IMAGE = `localhost/portcullis:kube-test-${id}`
const DIR = join(ROOT, 'docker/kubernetes')

await buildImage(IMAGE)
t.teardown(async () => { await podman(['rmi', '--force', IMAGE]) })

type Doc = Record<string, any>

async function manifests (): Promise<Doc[]> {
  const { resources } = parseAllDocuments(await readFile(join(DIR, 'kustomization.yaml'), 'utf8'))[0]!.toJS() as { resources: string[] }
  const docs: Doc[] = []
  for (const file of resources) docs.push(...parseAllDocuments(await readFile(join(DIR, file), 'utf8')).map(d => d.toJS() as Doc))
  return docs
}

/** Plays a YAML stream; torn down (`kube down`) at the end of the test. */
async function play (t: Test, file: string, docs: Doc[], network: string): Promise<void> {
  await writeFile(file, docs.map(d => stringify(d)).join('---\n'))
  t.teardown(async () => { await podman(['kube', 'down', file]) })
  const res = await podman(['kube', 'play', '--network', network, file])
  if (res.code !== 0) throw new Error(`podman kube play ${file} failed:\n${res.stderr}`)
}

async function podIp (pod: string): Promise<string> {
  const infra = (await podman(['pod', 'inspect', pod, '--format', '{{.InfraContainerID}}'])).stdout.trim()
  const ip = (await podman(['inspect', infra, '--format', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}'])).stdout.trim()
  if (ip === '') throw new Error(`pod ${pod} has no address`)
  return ip
}

async function podLogs (pod: string): Promise<string> {
  const res = await podman(['pod', 'logs', pod])
  return res.stdout + res.stderr
}

t.test('podman kube play: two replicas with Redis and the function behind a Service; 200 with a token; a revocation at one replica holds at the other', { timeout: 900_000 }, async t => {
  const dir = t.testdir()
  // A network of its own; its gateway address is where the pods reach this machine.
  const network = `portcullis-kube-${id}`
  const created = await podman(['network', 'create', network])
  if (created.code !== 0) throw new Error(`podman network create failed: ${created.stderr}`)
  t.teardown(async () => { await podman(['network', 'rm', '--force', network]) })
  const [net] = JSON.parse((await podman(['network', 'inspect', network])).stdout) as Array<{ subnets: Array<{ gateway: string }> }>
  const hostIp = net!.subnets[0]!.gateway

  // The files the Secrets would hold, from docker/make-certs.sh, readable by the pods' uid 1000.
  const certs = join(dir, 'certs')
  await exec('bash', [join(ROOT, 'docker/make-certs.sh'), certs])
  const folders: Record<string, Record<string, string>> = {
    'server-tls': { 'tls.crt': 'gateway/gateway.crt', 'tls.key': 'gateway/gateway.key' },
    'upstream-tls': { 'ca.crt': 'gateway/ca.crt', 'tls.crt': 'gateway/gateway-client.crt', 'tls.key': 'gateway/gateway-client.key' },
    issuer: { 'jwks.json': 'gateway/jwks.json' },
    function: { 'function.crt': 'function/function.crt', 'function.key': 'function/function.key', 'ca.crt': 'function/ca.crt' }
  }
  for (const [folder, files] of Object.entries(folders)) {
    await mkdir(join(dir, folder), { mode: 0o755 })
    for (const [name, from] of Object.entries(files)) {
      await copyFile(join(certs, from), join(dir, folder, name))
      await chmod(join(dir, folder, name), 0o644)
    }
  }
  const adminToken = randomBytes(24).toString('hex')
  await mkdir(join(dir, 'admin'), { mode: 0o755 })
  await writeFile(join(dir, 'admin', 'token'), adminToken, { mode: 0o644 })
  await chmod(dir, 0o755)

  // The function: the compose service's command in the image, as a Pod, behind the Service `function`.
  const fnService = compose.services.function!
  const fnName = `function-${id}`
  await play(t, join(dir, 'function.yaml'), [{
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: fnName, labels: { app: fnName } },
    spec: {
      securityContext: { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000 },
      containers: [{
        name: 'function',
        image: IMAGE,
        command: fnService.entrypoint,
        args: fnService.command,
        securityContext: { readOnlyRootFilesystem: true, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] } },
        volumeMounts: [{ name: 'certs', mountPath: '/certs', readOnly: true }]
      }],
      volumes: [{ name: 'certs', hostPath: { path: join(dir, 'function'), type: 'Directory' } }]
    }
  }, {
    apiVersion: 'v1', kind: 'Service', metadata: { name: 'function' },
    spec: { selector: { app: fnName }, ports: [{ name: 'https', port: 8445, targetPort: 8445 }] }
  }], network)
  const fnIp = await podIp(fnName)

  // Redis on the network's gateway address, which exists once a pod has joined the network.
  const redisPort = await freePort()
  const redis = spawn(systemTool('redis-server'), ['--bind', hostIp, '--port', String(redisPort), '--protected-mode', 'no', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
  const redisExited = new Promise(resolve => redis.once('exit', resolve))
  t.teardown(async () => { redis.kill('SIGKILL'); await redisExited })
  await waitFor('redis-server', async () => new Promise<true | undefined>(resolve => {
    const s = connect(redisPort, hostIp, () => { s.destroy(); resolve(true) }).on('error', () => resolve(undefined))
  }))

  // docker/kubernetes, rendered for kube play as described at the top.
  const docs = await manifests()
  const byKind = (kind: string): Doc => docs.find(d => d.kind === kind)!
  const configMap = byKind('ConfigMap')
  const config = parseAllDocuments(configMap.data['config.yaml'])[0]!.toJS() as Doc
  config.issuers[0].jwks = { file: '/etc/portcullis/issuer/jwks.json' }
  config.admin.tokenFile = '/etc/portcullis/admin/token'
  config.upstreams[0].tls.servername = 'function'
  configMap.data['config.yaml'] = stringify(config)
  const deployment = byKind('Deployment')
  const name = `portcullis-${id}`
  deployment.metadata.name = name
  deployment.spec.replicas = byKind('HorizontalPodAutoscaler').spec.minReplicas
  const pod = deployment.spec.template.spec
  pod.hostAliases = [{ ip: fnIp, hostnames: ['function'] }]
  const gateway = pod.containers[0]
  gateway.image = IMAGE
  // Podman 4 publishes every containerPort on the host, where two replicas would collide; the probes
  // named them, so they get the numbers.
  const portNumbers = Object.fromEntries((gateway.ports as Array<{ name: string, containerPort: number }>).map(p => [p.name, p.containerPort]))
  delete gateway.ports
  for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) gateway[probe].httpGet.port = portNumbers[gateway[probe].httpGet.port]
  const env = gateway.env as Array<{ name: string, value?: string, valueFrom?: unknown }>
  const issuer = env.find(e => e.name === 'OIDC_ISSUER')!.value!
  env.find(e => e.name === 'FUNCTION_URL')!.value = 'https://function:8445'
  const redisUrl = env.find(e => e.name === 'REDIS_URL')!
  delete redisUrl.valueFrom
  redisUrl.value = `redis://${hostIp}:${redisPort}`
  for (const volume of pod.volumes as Doc[]) {
    if (volume.secret !== undefined) {
      delete volume.secret
      volume.hostPath = { path: join(dir, volume.name), type: 'Directory' }
    }
  }
  // Podman 4 mounts a ConfigMap's subPath as a folder: the whole ConfigMap instead, and -c follows it.
  const configMount = (gateway.volumeMounts as Doc[]).find(m => m.subPath === 'config.yaml')!
  delete configMount.subPath
  configMount.mountPath = '/etc/portcullis/config'
  gateway.args = (gateway.args as string[]).map(a => a === '/etc/portcullis/config.yaml' ? '/etc/portcullis/config/config.yaml' : a)
  pod.volumes.push({ name: 'issuer', hostPath: { path: join(dir, 'issuer'), type: 'Directory' } },
    { name: 'admin', hostPath: { path: join(dir, 'admin'), type: 'Directory' } })
  gateway.volumeMounts.push({ name: 'issuer', mountPath: '/etc/portcullis/issuer', readOnly: true },
    { name: 'admin', mountPath: '/etc/portcullis/admin', readOnly: true })
  await play(t, join(dir, 'gateway.yaml'), [configMap, deployment, byKind('Service')], network)

  const pods = [`${name}-pod-0`, `${name}-pod-1`]
  const ips = await Promise.all(pods.map(podIp))
  t.not(ips[0], ips[1], 'two replicas, each a pod with its own address')
  for (const [i, ip] of ips.entries()) {
    const ready = await waitFor(`replica ${i} /readyz`, async () => {
      const res = await fetch(`http://${ip}:9090/readyz`)
      return res.status === 200 ? (await res.json()) as Doc : undefined
    }, 240).catch(async (err: Error) => { throw new Error(`${err.message}:\n${await podLogs(pods[i]!)}`) })
    t.match(ready, { status: 'ready', checks: { policy: true, 'issuer:corp-idp': true } }, `replica ${i} ready`)
  }
  const status = await (await fetch(`http://${ips[0]}:9090/status`)).json() as Doc
  t.match(status, { rate_limit_store: { type: 'redis', up: true } }, 'limits and revocations in the shared Redis')

  // A token of the Deployment's issuer (OIDC_ISSUER), signed with the key whose JWKS the pods read.
  const jwk = JSON.parse(await readFile(join(certs, 'issuer-signing-key.json'), 'utf8')) as JWK & { kid: string }
  const token = await new SignJWT({ roles: ['reader'] })
    .setProtectedHeader({ alg: 'ES256', kid: jwk.kid, typ: 'at+jwt' })
    .setIssuer(issuer).setAudience('portcullis').setSubject('alice').setExpirationTime('10m').setJti(randomUUID())
    .sign(await importJWK(jwk, 'ES256'))
  // The gateway's certificate names `gateway`: verified against that name whichever pod answers.
  const agent = new Agent({ connect: { ca: await readFile(join(certs, 'ca.crt'), 'utf8'), servername: 'gateway' } })
  t.teardown(() => agent.close())
  const get = async (ip: string): Promise<{ status: number, body: string }> => {
    const res = await agent.request({ origin: `https://${ip}:8443`, path: '/orders/42', method: 'GET', headers: { authorization: `Bearer ${token}` } })
    return { status: res.statusCode, body: await res.body.text() }
  }
  for (const [i, ip] of ips.entries()) {
    const res = await get(ip)
    t.equal(res.status, 200, res.status === 200 ? `replica ${i}: 200` : `replica ${i}: ${res.body.slice(0, 300)}`)
    t.match(JSON.parse(res.body), { path: '/orders/42', headers: { 'x-portcullis-subject': 'alice' }, gateway: { verified: true } },
      `replica ${i} reached the function through its Service name over mutual TLS`)
  }

  // Revoked at replica 0 with the CLI, as an operator would; replica 1 refuses the subject too.
  const revoke = await exec(process.execPath, [join(ROOT, 'dist/cli.js'), 'revoke', '--sub', 'alice', '--ttl', '10m', '--reason', 'kube test',
    '--admin-url', `http://${ips[0]}:9090`], { env: { ...process.env, PORTCULLIS_ADMIN_TOKEN: adminToken } })
  t.match(revoke.stdout, /alice/, 'revoked at replica 0')
  const refused = await waitFor('the revocation at replica 1', async () => {
    const res = await get(ips[1]!)
    return res.status === 200 ? undefined : res
  }, 40)
  t.equal(refused.status, 401, 'replica 1 refuses the revoked subject')
  t.match(JSON.parse(refused.body), { code: 'GW_ERR_AUTHN_REVOKED' })
  t.equal((await get(ips[0]!)).status, 401, 'and so does replica 0')
})
