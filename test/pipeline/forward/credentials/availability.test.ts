import t from 'tap'
import { execFile } from 'node:child_process'
import { createServer } from 'node:http'
import { promisify } from 'node:util'
import type { AddressInfo } from 'node:net'
import { GoogleAuth } from 'google-auth-library'
import { azureManagedIdentityProblem } from '../../../../src/pipeline/forward/credentials/azure-managed-identity.js'
import { googleIdTokenProblem } from '../../../../src/pipeline/forward/credentials/google-id-token.js'
import { startMetadataServer } from '../../../helpers/cloud.js'
import { freePort } from '../../../helpers/ports.js'

const run = promisify(execFile)

// Issue #25: each platform's module says whether its credentials can be had, and how to provide them.

t.test('Google: a metadata server is a source of ID tokens; none at all is a problem with the fix', async t => {
  delete process.env.GOOGLE_APPLICATION_CREDENTIALS
  const metadata = await startMetadataServer(t)
  process.env.GCE_METADATA_HOST = metadata.host
  t.equal(await googleIdTokenProblem('https://fn.run.app', new GoogleAuth()), null)
  t.same(metadata.issued, [], 'no token was fetched to find out')
  t.teardown(() => { delete process.env.GCE_METADATA_HOST })
  // In a process of its own: google-auth-library remembers per process whether it is on Google Cloud.
  const module = new URL('../../../../dist/pipeline/forward/credentials/google-id-token.js', import.meta.url).href
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e',
    `const { googleIdTokenProblem } = await import(${JSON.stringify(module)}); process.stdout.write(String(await googleIdTokenProblem('https://fn.run.app')))`],
  { env: { ...process.env, GCE_METADATA_HOST: `127.0.0.1:${await freePort()}` } }) // nothing listens there
  const problem = stdout
  t.match(problem, /^no Google credentials \(.+\); run the gateway as a service account with roles\/run\.invoker.*GOOGLE_APPLICATION_CREDENTIALS/)
})

t.test('Azure: an identity endpoint or an answering instance metadata service; neither is a problem with the fix', async t => {
  t.equal(await azureManagedIdentityProblem({ IDENTITY_ENDPOINT: 'http://127.0.0.1:1/msi/token' }), null, 'App Service')
  const imds = createServer((req, res) => res.writeHead(req.headers.metadata === 'true' ? 200 : 400).end('{}'))
  await new Promise<void>(resolve => imds.listen(0, '127.0.0.1', resolve))
  t.teardown(() => imds.close())
  t.equal(await azureManagedIdentityProblem({}, `http://127.0.0.1:${(imds.address() as AddressInfo).port}`), null, 'a VM')
  const none = await azureManagedIdentityProblem({}, `http://127.0.0.1:${await freePort()}`)
  t.match(none, /^no managed identity \(no IDENTITY_ENDPOINT or MSI_ENDPOINT, and no instance metadata service\); run the gateway on Azure with a managed identity/)
})
