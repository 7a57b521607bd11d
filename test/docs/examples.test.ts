import t from 'tap'
import { execFile } from 'node:child_process'
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises'
import { join, relative, resolve } from 'node:path'
import { promisify } from 'node:util'
import { DEFAULT_BUNDLE, resolveOpa } from '../../scripts/opa.mjs'
import { loadConfig } from '../../src/config/load.js'
import { readBundleFile } from '../../src/pipeline/authorize/bundle.js'
import { createPolicyEngine } from '../../src/pipeline/authorize/policy-engine.js'
import { createCa } from '../../src/tls/pki.js'

/*
 * The examples in docs/ are checked by the code the gateway runs: every YAML block that starts with
 * `# portcullis config:` is a whole config, loaded by the gateway's own loader (schema, cross-checks,
 * files), and its policy entrypoint must exist in the bundle `npm run policy:build` makes; every
 * Rego block that is a whole module passes `opa check --strict` against the input schema and the
 * gateway's capabilities; every JavaScript block must at least parse as an ES module.
 */

const ROOT = resolve(import.meta.dirname, '../..')
const run = promisify(execFile)

async function markdownFiles (dir: string): Promise<string[]> {
  const out: string[] = []
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name)
    if (entry.isDirectory()) out.push(...await markdownFiles(path))
    else if (entry.name.endsWith('.md')) out.push(path)
  }
  return out
}

const blocks: Array<{ file: string, lang: string, code: string }> = []
for (const file of await markdownFiles(join(ROOT, 'docs'))) {
  for (const m of (await readFile(file, 'utf8')).matchAll(/```(yaml|js|rego)\n([\s\S]*?)```/g)) {
    blocks.push({ file: relative(ROOT, file), lang: m[1]!, code: m[2]! })
  }
}

t.test('every whole config in the docs loads, with a policy entrypoint the bundle has', async t => {
  const configs = blocks.filter(b => b.lang === 'yaml' && b.code.startsWith('# portcullis config:'))
  t.ok(configs.length >= 4, `${configs.length} configs found`)
  const ca = await createCa('Docs CA')
  const pair = await ca.issue({ commonName: 'gateway.example.com', dnsNames: ['gateway.example.com'], usage: 'both' })
  const tls = t.testdir({
    'gateway.crt': pair.cert, 'gateway.key': pair.key, 'gateway-client.crt': pair.cert, 'gateway-client.key': pair.key,
    'functions-ca.crt': ca.cert, 'orders-fn.key': 'a-function-key-from-a-secret\n'
  })
  process.env.PORTCULLIS_TLS_DIR = tls
  t.teardown(() => { delete process.env.PORTCULLIS_TLS_DIR })
  const bundle = await readBundleFile(DEFAULT_BUNDLE)
  for (const [i, block] of configs.entries()) {
    const dir = join(t.testdirName, `config-${i}`)
    await mkdir(join(dir, 'build'), { recursive: true })
    await copyFile(DEFAULT_BUNDLE, join(dir, 'build', 'bundle.tar.gz'))
    await writeFile(join(dir, 'portcullis.yaml'), block.code)
    const config = await loadConfig(join(dir, 'portcullis.yaml'))
    t.pass(`${block.file}: the config loads`)
    const engine = await createPolicyEngine(bundle, config.policy.entrypoint)
    t.equal(engine.entrypoint, config.policy.entrypoint, `${block.file}: entrypoint ${config.policy.entrypoint} is in the bundle`)
  }
})

t.test('every JavaScript example in the docs parses as an ES module', async t => {
  const scripts = blocks.filter(b => b.lang === 'js')
  t.ok(scripts.length >= 4, `${scripts.length} examples found`)
  for (const [i, block] of scripts.entries()) {
    const file = join(t.testdirName, `example-${i}.mjs`)
    await mkdir(t.testdirName, { recursive: true })
    await writeFile(file, block.code)
    const res = await run(process.execPath, ['--check', file]).then(() => null, (err: { stderr: string }) => err.stderr)
    t.equal(res, null, `${block.file}: example ${i} parses`)
  }
})

t.test('every Rego module in the docs passes opa check --strict with the input schema and capabilities', async t => {
  const modules = blocks.filter(b => b.lang === 'rego' && b.code.startsWith('package '))
  t.ok(modules.length >= 1, `${modules.length} modules found`)
  const opa = await resolveOpa()
  for (const [i, block] of modules.entries()) {
    const dir = join(t.testdirName, `rego-${i}`)
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'policy.rego'), block.code)
    const check = async (): Promise<string | null> => run(opa, ['check', '--strict', '--schema', join(ROOT, 'policies/input.schema.json'),
      '--capabilities', join(ROOT, 'policies/capabilities.json'), dir]).then(() => null, (err: { stdout: string, stderr: string }) => err.stdout + err.stderr)
    let res = await check()
    // A module that extends the demo policy (a rule in package gateway.authz using its helpers) is
    // checked beside it, as it will be built.
    if (res !== null && block.code.startsWith('package gateway.authz\n') && !block.code.includes('decision :=')) {
      await copyFile(join(ROOT, 'policies/gateway/authz.rego'), join(dir, 'authz.rego'))
      res = await check()
    }
    t.equal(res, null, `${block.file}: module ${i} checks`)
  }
})
