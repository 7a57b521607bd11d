import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { gatewayFiles, startGatewayProcess, startPlainUpstream } from '../helpers/gateway-process.js'
import { httpsClient } from '../helpers/http.js'

/*
 * Issue #25: a gateway without the AWS credentials its Lambda upstream needs said ready and answered
 * every request 502, with nothing in the log on how to fix it. Now `portcullis check` and /readyz say
 * so, with the fix, and the 502's log line carries it too. The real CLI, the real AWS credential
 * chain, with the environment a machine without an AWS identity has.
 */

const CLI = new URL('../../dist/cli.js', import.meta.url).pathname
const run = promisify(execFile)

const AWS_VARS = Object.keys(process.env).filter(k => k.startsWith('AWS_'))
for (const k of AWS_VARS) delete process.env[k]
const noFiles = t.testdir()
Object.assign(process.env, {
  AWS_EC2_METADATA_DISABLED: 'true', // no instance metadata service here
  AWS_CONFIG_FILE: join(noFiles, 'none-config'),
  AWS_SHARED_CREDENTIALS_FILE: join(noFiles, 'none-credentials')
})

async function setup (t: Test) {
  const files = await gatewayFiles(t)
  const fn = await startPlainUpstream(t, 'fn')
  await files.writeConfig(fn.url)
  // The hello route's upstream signs with SigV4, as in front of a Lambda function URL.
  const { readFile, writeFile } = await import('node:fs/promises')
  const yaml = (await readFile(files.configFile, 'utf8')).replace('    plaintext: true', '    plaintext: true\n    credentials: { awsSigV4: { region: eu-west-1 } }')
  await writeFile(files.configFile, yaml)
  return files
}

async function readyz (adminUrl: string): Promise<{ status: number, body: { details: Record<string, { ok: boolean, detail?: string }> } }> {
  const res = await fetch(`${adminUrl}/readyz`)
  return { status: res.status, body: await res.json() as never }
}

t.test('without AWS credentials: check fails with the fix, /readyz is not ready with the fix, the 502 log line has it', async t => {
  const files = await setup(t)
  const check = await run(process.execPath, [CLI, 'check', '-c', files.configFile]).then(() => null, (e: { code: number, stderr: string }) => e)
  t.equal(check?.code, 2, 'check exits 2')
  t.match(check?.stderr, /- \/upstreams\/0\/credentials\/awsSigV4: no AWS credentials \(.*\); give the gateway an AWS identity .*AWS_ACCESS_KEY_ID/)
  const skipped = await run(process.execPath, [CLI, 'check', '--skip-credentials', '-c', files.configFile])
  t.match(skipped.stdout, /ok \(1 routes/, '--skip-credentials checks the config alone')

  const gw = await startGatewayProcess(t, files.configFile)
  let r = await readyz(gw.adminUrl)
  while (r.body.details['credentials:fn']?.detail === 'looking for credentials') {
    await new Promise(resolve => setTimeout(resolve, 100))
    r = await readyz(gw.adminUrl)
  }
  t.equal(r.status, 503, 'not ready')
  t.match(r.body.details['credentials:fn'], { ok: false, detail: /^no AWS credentials .*AWS_ACCESS_KEY_ID/ })

  const res = await httpsClient(t, files.caFile).send(`${gw.url}/hello`, { token: await files.token() })
  t.equal(res.status, 502)
  await gw.waitForLog(/upstream credentials failed/)
  const line = gw.log().split('\n').find(l => l.includes('upstream credentials failed'))!
  t.match(JSON.parse(line), { kind: 'aws-sigv4', fix: /AWS_ACCESS_KEY_ID/ }, 'the log line says how to fix it')
})

t.test('with AWS credentials in the environment: check passes and the gateway is ready', async t => {
  const files = await setup(t)
  process.env.AWS_ACCESS_KEY_ID = 'AKIDEXAMPLE'
  process.env.AWS_SECRET_ACCESS_KEY = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY'
  t.teardown(() => { delete process.env.AWS_ACCESS_KEY_ID; delete process.env.AWS_SECRET_ACCESS_KEY })
  const check = await run(process.execPath, [CLI, 'check', '-c', files.configFile])
  t.match(check.stdout, /ok \(1 routes, 1 upstreams, 1 issuers\)/)
  const gw = await startGatewayProcess(t, files.configFile)
  let r = await readyz(gw.adminUrl)
  while (r.body.details['credentials:fn']?.detail === 'looking for credentials') {
    await new Promise(resolve => setTimeout(resolve, 100))
    r = await readyz(gw.adminUrl)
  }
  t.equal(r.status, 200)
  t.match(r.body.details['credentials:fn'], { ok: true, detail: 'found' })
})
