import t from 'tap'
import { FILE_USE } from '../../src/config/schema-common.js'
import { ConfigSchema } from '../../src/config/schema.js'

// Every path option carries its use in the schema (schema-common.ts FilePathOf): config/load.ts finds
// the paths to resolve and check by that mark alone, so an unmarked path would stay relative to the
// working directory. This lists them all; a new path option is added here on purpose.

interface Node { [FILE_USE]?: string, properties?: Record<string, Node>, patternProperties?: Record<string, Node>, items?: Node, anyOf?: Node[] }

function marked (node: Node, path: string, out: Map<string, string>): void {
  const use = node[FILE_USE]
  if (use !== undefined) { out.set(path, use); return }
  for (const [k, child] of Object.entries(node.properties ?? {})) marked(child, `${path}.${k}`, out)
  for (const child of Object.values(node.patternProperties ?? {})) marked(child, `${path}[_]`, out)
  if (node.items !== undefined) marked(node.items, `${path}[_]`, out)
  for (const branch of node.anyOf ?? []) marked(branch, path, out)
}

t.test('every path option is marked with its use', async t => {
  const out = new Map<string, string>()
  marked(ConfigSchema as Node, '', out)
  t.same(Object.fromEntries([...out].sort()), {
    '.admin.tls.cert': 'read',
    '.admin.tls.clientCa': 'read',
    '.admin.tls.key': 'read',
    '.admin.tokenFile': 'read',
    '.assertion.jwksFile': 'written',
    '.assertion.keysFile': 'written',
    '.decisionLog.file': 'written',
    '.decisionLog.http.tls.ca': 'read',
    '.decisionLog.http.tls.cert': 'read',
    '.decisionLog.http.tls.key': 'read',
    '.issuers[_].ca': 'read',
    '.issuers[_].jwks.file': 'read',
    '.listen.tls.cert': 'read',
    '.listen.tls.clientCa': 'read',
    '.listen.tls.key': 'read',
    '.policy.bundle': 'watched',
    '.policy.persistDirectory': 'written',
    '.policy.server.tls.ca': 'read',
    '.policy.server.tls.cert': 'read',
    '.policy.server.tls.key': 'read',
    '.policy.shadow.bundle': 'watched',
    '.policy.shadow.server.tls.ca': 'read',
    '.policy.shadow.server.tls.cert': 'read',
    '.policy.shadow.server.tls.key': 'read',
    '.policy.verification.keys[_].key': 'public-key',
    '.upstreams[_].credentials.azureFunctionKey.file': 'read',
    '.upstreams[_].tls.ca': 'read',
    '.upstreams[_].tls.cert': 'read',
    '.upstreams[_].tls.key': 'read'
  })
})

t.test('the mark stays out of the JSON Schema', async t => {
  const bundle = JSON.parse(JSON.stringify((ConfigSchema as Node).properties!.policy!.properties!.bundle)) as object
  t.same(Object.keys(bundle).sort(), ['description', 'minLength', 'type'], 'a marked path is a plain string schema in JSON')
})
