import t from 'tap'
import { readFile } from 'node:fs/promises'
import { Ajv } from 'ajv'
import addFormats from 'ajv-formats'
import { METRICS_FILE, POLICY_INPUT_FILE, REFERENCE_FILE, SCHEMA_FILE, metricsMarkdown, policyInputMarkdown, referenceMarkdown, schemaJson } from '../../scripts/reference-docs.js'

// The configuration and metrics references and the published JSON Schema are generated from the code
// they describe; a change without `npm run docs:reference` fails here rather than drifting.

t.test('docs/configuration.md, docs/metrics.md and config/portcullis.schema.json are up to date', async t => {
  t.equal(await readFile(SCHEMA_FILE, 'utf8'), schemaJson(), `${SCHEMA_FILE} is stale: run npm run docs:reference`)
  t.equal(await readFile(REFERENCE_FILE, 'utf8'), referenceMarkdown(), `${REFERENCE_FILE} is stale: run npm run docs:reference`)
  t.equal(await readFile(METRICS_FILE, 'utf8'), await metricsMarkdown(), `${METRICS_FILE} is stale: run npm run docs:reference`)
  t.equal(await readFile(POLICY_INPUT_FILE, 'utf8'), await policyInputMarkdown(), `${POLICY_INPUT_FILE} is stale: run npm run docs:reference`)
})

t.test('the published schema is usable on its own and catches a typo an editor should flag', async t => {
  const ajv = new Ajv({ allErrors: true, strict: false })
  addFormats.default(ajv)
  const validate = ajv.compile(JSON.parse(await readFile(SCHEMA_FILE, 'utf8')))
  const config = {
    listen: { port: 8443, tls: { cert: 'gw.crt', key: 'gw.key' } },
    issuers: [{ id: 'idp', issuer: 'https://idp.example', audiences: ['gw'], algorithms: ['ES256'], jwks: { discovery: true } }],
    policy: { bundle: 'bundle.tar.gz' },
    upstreams: [{ id: 'fn', url: 'https://fn.example' }],
    routes: [{ id: 'r', prefix: '/r', methods: ['GET'], upstream: 'fn' }]
  }
  t.ok(validate(structuredClone(config)), JSON.stringify(validate.errors))
  const typo = structuredClone(config) as Record<string, any>
  typo.routes[0].authentification = 'jwt'
  t.notOk(validate(typo), 'an unknown key is an error')
  t.same(validate.errors?.map(e => [e.instancePath, e.keyword, e.params]), [['/routes/0', 'additionalProperties', { additionalProperty: 'authentification' }]], 'and only that')
})
