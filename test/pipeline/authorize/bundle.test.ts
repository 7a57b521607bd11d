import t from 'tap'
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, readdirSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import * as tar from 'tar'
import { parseBundle, readBundleFile } from '../../../src/pipeline/authorize/bundle.js'

// parseBundle does not compile the module, so any bytes stand in for policy.wasm.
const WASM = Buffer.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, 0xff, 0x10])

/** Packs `files` (paths relative to `cwd`) into a gzipped tar in memory, as `opa build` would. */
async function pack (cwd: string, files: string[], opts: { rename?: Record<string, string> } = {}): Promise<Buffer> {
  const chunks: Buffer[] = []
  const stream = tar.c({
    gzip: true,
    cwd,
    ...(opts.rename !== undefined
      ? { onWriteEntry: (entry: { path: string }) => { entry.path = opts.rename![entry.path] ?? entry.path } }
      : {})
  }, files)
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}

t.test('a bundle with policy.wasm, data.json and a manifest', async t => {
  const dir = t.testdir({
    'policy.wasm': WASM,
    'data.json': JSON.stringify({ roles: { alice: ['admin'] } }),
    '.manifest': JSON.stringify({ revision: 'v42-abc', roots: ['gateway'] })
  })
  const archive = await pack(dir, ['policy.wasm', 'data.json', '.manifest'])
  const bundle = await parseBundle(archive)
  t.same(bundle.wasm, WASM, 'the wasm bytes are returned unchanged')
  t.same(bundle.data, { roles: { alice: ['admin'] } })
  t.equal(bundle.revision, 'v42-abc', 'the manifest revision is used')
  t.equal(bundle.digest, createHash('sha256').update(archive).digest('hex'))
})

t.test('entries named /policy.wasm or ./policy.wasm (as opa build writes them) are found', async t => {
  const dir = t.testdir({ 'policy.wasm': WASM, 'data.json': '{"a":1}' })
  for (const prefix of ['/', './']) {
    const archive = await pack(dir, ['policy.wasm', 'data.json'], {
      rename: { 'policy.wasm': `${prefix}policy.wasm`, 'data.json': `${prefix}data.json` }
    })
    const bundle = await parseBundle(archive)
    t.same(bundle.wasm, WASM, `${prefix}policy.wasm`)
    t.same(bundle.data, { a: 1 }, `${prefix}data.json`)
  }
})

t.test('without a manifest the revision is derived from the archive digest', async t => {
  const dir = t.testdir({ 'policy.wasm': WASM })
  const archive = await pack(dir, ['policy.wasm'])
  const bundle = await parseBundle(archive)
  const digest = createHash('sha256').update(archive).digest('hex')
  t.match(bundle.revision, /^sha256:[0-9a-f]{12}$/)
  t.equal(bundle.revision, `sha256:${digest.slice(0, 12)}`)
  t.same(bundle.data, {}, 'no data.json means empty data')
})

t.test('a manifest without a usable revision falls back to the digest', async t => {
  const manifests = [{}, { revision: '' }, { revision: 7 }]
  const dir = t.testdir(Object.fromEntries(manifests.map((m, i) => [`b${i}`, { 'policy.wasm': WASM, '.manifest': JSON.stringify(m) }])))
  for (const [i, manifest] of manifests.entries()) {
    const bundle = await parseBundle(await pack(join(dir, `b${i}`), ['policy.wasm', '.manifest']))
    t.match(bundle.revision, /^sha256:[0-9a-f]{12}$/, JSON.stringify(manifest))
  }
})

t.test('different archives get different derived revisions', async t => {
  const dir = t.testdir({ a: { 'policy.wasm': WASM }, b: { 'policy.wasm': Buffer.concat([WASM, Buffer.from([1])]) } })
  const ra = (await parseBundle(await pack(join(dir, 'a'), ['policy.wasm']))).revision
  const rb = (await parseBundle(await pack(join(dir, 'b'), ['policy.wasm']))).revision
  t.not(ra, rb)
})

t.test('a bundle without policy.wasm is refused', async t => {
  const dir = t.testdir({ 'data.json': '{}', '.manifest': '{"revision":"r1"}', 'policy.rego': 'package x' })
  await t.rejects(parseBundle(await pack(dir, ['data.json', '.manifest', 'policy.rego'])), /policy\.wasm/)
})

t.test('a policy.wasm that is not at the root of the bundle does not count', async t => {
  const dir = t.testdir({ nested: { 'policy.wasm': WASM } })
  await t.rejects(parseBundle(await pack(dir, ['nested/policy.wasm'])), /policy\.wasm/)
})

t.test('a directory named policy.wasm does not count', async t => {
  const dir = t.testdir({ 'policy.wasm': { 'x.txt': 'x' } })
  await t.rejects(parseBundle(await pack(dir, ['policy.wasm'])), /policy\.wasm/)
})

t.test('data.json or .manifest that is not a JSON object is refused', async t => {
  const texts = ['[1,2]', '"roles"', 'null', '42', 'true']
  const dir = t.testdir({
    ...Object.fromEntries(texts.map((text, i) => [`d${i}`, { 'policy.wasm': WASM, 'data.json': text }])),
    manifest: { 'policy.wasm': WASM, '.manifest': '["r1"]' }
  })
  for (const [i, text] of texts.entries()) {
    await t.rejects(parseBundle(await pack(join(dir, `d${i}`), ['policy.wasm', 'data.json'])), /data\.json is not a JSON object/, `data.json ${text}`)
  }
  await t.rejects(parseBundle(await pack(join(dir, 'manifest'), ['policy.wasm', '.manifest'])), /\.manifest is not a JSON object/)
})

t.test('data.json that is not JSON at all is refused', async t => {
  const dir = t.testdir({ 'policy.wasm': WASM, 'data.json': '{roles: ' })
  await t.rejects(parseBundle(await pack(dir, ['policy.wasm', 'data.json'])), /bundle data.json is not valid JSON/)
})

t.test('an archive that is not a gzipped tar is refused', async t => {
  await t.rejects(parseBundle(Buffer.from('this is not a bundle')))
  await t.rejects(parseBundle(Buffer.alloc(0)))
  const dir = t.testdir({ 'policy.wasm': WASM })
  const archive = await pack(dir, ['policy.wasm'])
  await t.rejects(parseBundle(archive.subarray(0, 30)), 'a truncated archive')
})

t.test('a bundle with an entry that could step outside it is refused as a whole, nothing is written', async t => {
  const escape = `portcullis-escape-${randomBytes(6).toString('hex')}`
  const root = t.testdir({
    [escape]: 'evil',
    bundle: { 'policy.wasm': WASM, 'data.json': '{"ok":true}' }
  })
  const cwd = join(root, 'bundle')
  const before = readdirSync(root, { recursive: true }).sort()
  for (const [name, files] of [
    ['../escape', ['policy.wasm', 'data.json', `../${escape}`]],
    ['../policy.wasm', ['../bundle/policy.wasm']]
  ] as const) {
    await t.rejects(parseBundle(await pack(cwd, [...files])), /escapes the bundle/, name)
  }
  for (const bad of ['a/../policy.wasm', 'a//b', 'a\\b', '/./policy.wasm']) {
    const archive = await pack(cwd, ['policy.wasm', 'data.json'], { rename: { 'data.json': bad } })
    await t.rejects(parseBundle(archive), /escapes the bundle/, bad)
  }
  t.same(readdirSync(root, { recursive: true }).sort(), before, 'no file appears in the test folder')
  t.notOk(existsSync(join(process.cwd(), '..', escape)), 'nothing written beside the working directory')
  t.notOk(existsSync(join(process.cwd(), escape)), 'nothing written in the working directory')
})

t.test('links and duplicate entries are refused', async t => {
  const dir = t.testdir({ 'policy.wasm': WASM, 'data.json': '{}', link: t.fixture('symlink', 'policy.wasm') })
  await t.rejects(parseBundle(await pack(dir, ['policy.wasm', 'link'])), /SymbolicLink, not a file/)
  const twice = await pack(dir, ['policy.wasm', 'data.json'], { rename: { 'data.json': 'policy.wasm' } })
  await t.rejects(parseBundle(twice), /appears twice/)
})

t.test('a bundle that inflates beyond the cap (gzip bomb) is refused before it is read', async t => {
  // 32 MiB of zeros compress to ~32 KiB: small on the wire, large once inflated.
  const dir = t.testdir({ 'policy.wasm': WASM, 'data.json': JSON.stringify({ pad: '0'.repeat(32 * 1024 * 1024) }) })
  const archive = await pack(dir, ['policy.wasm', 'data.json'])
  t.ok(archive.length < 1024 * 1024, `the archive itself is small (${archive.length} bytes)`)
  await t.rejects(parseBundle(archive, { maxBytes: 8 * 1024 * 1024 }), /expands beyond 8388608 bytes/)
  await t.rejects(parseBundle(archive, { maxBytes: archive.length - 1 }), /larger than/)
  const bundle = await parseBundle(archive, { maxBytes: 64 * 1024 * 1024 })
  t.equal((bundle.data.pad as string).length, 32 * 1024 * 1024, 'under a larger cap the same bundle loads')
})

t.test('data.json files in folders are merged at their path, as OPA does', async t => {
  const dir = t.testdir({
    'policy.wasm': WASM,
    'data.json': '{"top":1}',
    roles: { 'data.json': '{"alice":["admin"]}', team: { 'data.json': '{"x":true}' } },
    clash: { 'data.json': '{"top":2}' }
  })
  const bundle = await parseBundle(await pack(dir, ['policy.wasm', 'data.json', 'roles/data.json', 'roles/team/data.json']))
  t.same(bundle.data, { top: 1, roles: { alice: ['admin'], team: { x: true } } })
  const conflicting = await pack(dir, ['policy.wasm', 'data.json', 'clash/data.json'], { rename: { 'clash/data.json': 'top/data.json' } })
  await t.rejects(parseBundle(conflicting), /conflicts with data at top/)
})

t.test('readBundleFile reads and parses a bundle file', async t => {
  const dir = t.testdir({ 'policy.wasm': WASM, '.manifest': '{"revision":"from-file"}' })
  const file = join(dir, 'bundle.tar.gz')
  await writeFile(file, await pack(dir, ['policy.wasm', '.manifest']))
  const bundle = await readBundleFile(file)
  t.equal(bundle.revision, 'from-file')
  t.same(bundle.wasm, WASM)
})

t.test('readBundleFile on a missing file rejects with ENOENT', async t => {
  await t.rejects(readBundleFile(join(t.testdir({}), 'absent.tar.gz')), { code: 'ENOENT' })
})
