import t from 'tap'
import { createPublicKey } from 'node:crypto'
import { readFile, readdir, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { parseBundle } from '../../../src/pipeline/authorize/bundle.js'
import { canonicalJson, type BundleVerification } from '../../../src/pipeline/authorize/bundle-signature.js'
import { createFileSource } from '../../../src/pipeline/authorize/bundle-source.js'
import { createPolicyEngine } from '../../../src/pipeline/authorize/policy-engine.js'
import { makeSigningKey, opaBuild, opaSign, packDir, unpack, type SigningAlg } from '../../helpers/signed-bundles.js'

// Every bundle here is made by the real OPA CLI (opa build --signing-key, opa sign) with keys made
// at test time; the refusals are the cases OPA itself refuses.

async function verification (pub: string, alg: SigningAlg, id = 'default', extra: Partial<BundleVerification> = {}): Promise<BundleVerification> {
  return { keys: new Map([[id, { algorithm: alg, key: createPublicKey(await readFile(pub)) }]]), ...extra }
}

async function entries (dir: string): Promise<string[]> {
  return readdir(dir)
}

for (const alg of ['RS256', 'ES256', 'EdDSA'] as const) {
  t.test(`a bundle signed by opa build --signing-key (${alg}) is accepted and evaluates`, async t => {
    const key = await makeSigningKey(t.testdir(), alg)
    const archive = await opaBuild(t, { sign: { key: key.priv, alg }, revision: `rev-${alg}` })
    const bundle = await parseBundle(await readFile(archive), { verification: await verification(key.pub, alg) })
    t.equal(bundle.signedBy, 'default')
    t.equal(bundle.revision, `rev-${alg}`)
    const engine = await createPolicyEngine(bundle, 'gateway/authz/decision')
    t.same(engine.evaluate({ principal: { subject: 'alice' } }), { allow: true, reasons: ['test.allow'] })
  })
}

t.test('a bundle signed afterwards with opa sign is accepted', async t => {
  const dir = t.testdir()
  const key = await makeSigningKey(dir, 'ES256')
  const archive = await opaBuild(t)
  const signatures = await opaSign(archive, key.priv, 'ES256')
  const unpacked = join(dir, 'unpacked')
  await unpack(archive, unpacked)
  await writeFile(join(unpacked, '.signatures.json'), signatures)
  const signed = await packDir(unpacked, await entries(unpacked))
  // opa sign names no key id: as in OPA, the configured keyid picks the key.
  await t.rejects(parseBundle(signed, { verification: await verification(key.pub, 'ES256') }), /names no key id/)
  const bundle = await parseBundle(signed, { verification: await verification(key.pub, 'ES256', 'default', { keyId: 'default' }) })
  t.equal(bundle.signedBy, 'default')
})

t.test('refused: unsigned, unknown key, re-signed with another key, wrong algorithm, scope', async t => {
  const dir = t.testdir()
  const key = await makeSigningKey(dir, 'ES256')
  const other = await makeSigningKey(dir, 'ES256', 'other')
  const rsa = await makeSigningKey(dir, 'RS256')
  const good = await verification(key.pub, 'ES256')

  const unsigned = await readFile(await opaBuild(t))
  await t.rejects(parseBundle(unsigned, { verification: good }), /not signed/)
  t.ok(await parseBundle(unsigned), 'the same bundle loads when verification is off')

  const byOther = await readFile(await opaBuild(t, { sign: { key: other.priv, alg: 'ES256' } }))
  await t.rejects(parseBundle(byOther, { verification: await verification(key.pub, 'ES256', 'trusted') }), /unknown key "default"/)

  const resigned = await readFile(await opaBuild(t, { sign: { key: other.priv, alg: 'ES256' } }))
  await t.rejects(parseBundle(resigned, { verification: good }), /does not verify with key "default"/, 'same key id, other key')

  const rsaSigned = await readFile(await opaBuild(t, { sign: { key: rsa.priv, alg: 'RS256' } }))
  await t.rejects(parseBundle(rsaSigned, { verification: await verification(rsa.pub, 'ES256') }), /does not verify/, 'algorithm must be the configured one')
  t.ok(await parseBundle(rsaSigned, { verification: await verification(rsa.pub, 'RS256') }))

  const signed = await readFile(await opaBuild(t, { sign: { key: key.priv, alg: 'ES256' } }))
  await t.rejects(parseBundle(signed, { verification: { ...good, scope: 'write' } }), /scope mismatch/)
  const scoped = await readFile(await opaBuild(t, { sign: { key: key.priv, alg: 'ES256', claims: { scope: 'write' } } }))
  // With a claims file opa names no key id, so the configured keyid picks the key.
  t.ok(await parseBundle(scoped, { verification: { ...good, keyId: 'default', scope: 'write' } }), 'the configured scope is accepted')
  await t.rejects(parseBundle(scoped, { verification: { ...good, keyId: 'default' } }), /scope mismatch/, 'a scoped signature needs that scope configured')
  t.ok(await parseBundle(signed, { verification: { ...await verification(key.pub, 'ES256', 'pinned'), keyId: 'pinned' } }), 'a configured keyid overrides the one in the bundle')
})

t.test('refused: tampered, extra and missing files; a reformatted data.json still verifies', async t => {
  const dir = t.testdir()
  const key = await makeSigningKey(dir, 'EdDSA')
  const v = await verification(key.pub, 'EdDSA')
  const archive = await opaBuild(t, { sign: { key: key.priv, alg: 'EdDSA' }, data: '{"allowed":["alice"],"limit":1.50,"note":"line\u2028sep <&>","ü":{"b":1,"a":2}}' })

  const variant = async (name: string, change: (d: string) => Promise<void>): Promise<Buffer> => {
    const d = join(dir, name)
    await unpack(archive, d)
    await change(d)
    return packDir(d, await entries(d))
  }
  t.ok(await parseBundle(await variant('same', async () => {}), { verification: v }), 'repacked unchanged: accepted')

  const tampered = await variant('tampered', async d => writeFile(join(d, 'data.json'), JSON.stringify({ allowed: ['alice', 'mallory'], limit: 1.50, note: 'line\u2028sep <&>', ü: { b: 1, a: 2 } })))
  await t.rejects(parseBundle(tampered, { verification: v }), /\/data\.json: digest mismatch/)

  const wasm = await variant('wasm', async d => {
    const bytes = await readFile(join(d, 'policy.wasm'))
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 1
    await writeFile(join(d, 'policy.wasm'), bytes)
  })
  await t.rejects(parseBundle(wasm, { verification: v }), /\/policy\.wasm: digest mismatch/)

  const extra = await variant('extra', async d => writeFile(join(d, 'extra.json'), '{}'))
  await t.rejects(parseBundle(extra, { verification: v }), /\/extra\.json is not included in the bundle signature/)

  const missing = await variant('missing', async d => rm(join(d, 'data.json')))
  await t.rejects(parseBundle(missing, { verification: v }), /\/data\.json specified in the bundle signature but not in the bundle/)

  const noSig = await variant('nosig', async d => rm(join(d, '.signatures.json')))
  await t.rejects(parseBundle(noSig, { verification: v }), /not signed/)

  // OPA hashes structured files over canonical JSON, so whitespace and key order do not matter,
  // but the digits of a number do.
  const reformatted = await variant('reformatted', async d => writeFile(join(d, 'data.json'),
    '{ "ü": {"a": 2, "b": 1},\n  "note": "line\\u2028sep \\u003c&>", "limit": 1.50, "allowed": ["alice"] }'))
  t.ok(await parseBundle(reformatted, { verification: v }), 'whitespace, key order and escapes do not matter')
  const renumbered = await variant('renumbered', async d => writeFile(join(d, 'data.json'),
    JSON.stringify({ allowed: ['alice'], limit: 1.5, note: 'line\u2028sep <&>', ü: { b: 1, a: 2 } })))
  await t.rejects(parseBundle(renumbered, { verification: v }), /digest mismatch/, '1.50 and 1.5 hash differently, as in OPA')
})

t.test('an unpacked signed bundle in a folder is verified the same way', async t => {
  const dir = t.testdir()
  const key = await makeSigningKey(dir, 'RS256')
  const archive = await opaBuild(t, { sign: { key: key.priv, alg: 'RS256' } })
  const folder = join(dir, 'folder')
  await unpack(archive, folder)
  const source = await createFileSource(folder, 1 << 26)
  const v = await verification(key.pub, 'RS256')
  t.equal((await parseBundle((await source.fetch())!, { verification: v })).signedBy, 'default')
  await writeFile(join(folder, 'data.json'), '{"allowed":["mallory"]}')
  await t.rejects(parseBundle((await source.fetch())!, { verification: v }), /digest mismatch/)
})

t.test('canonical JSON is OPA\'s: sorted keys by UTF-8 bytes, numbers as written, Go string escapes', async t => {
  t.equal(canonicalJson(Buffer.from('{"b":[1.0, 2e3, -0],"a":"x","\u{1F600}":1,"\uFFFD":2}')), '{"a":"x","b":[1.0,2e3,-0],"\uFFFD":2,"\u{1F600}":1}')
  t.equal(canonicalJson(Buffer.from('"<&>\\u2028\\n\\u0001"')), '"<&>\\u2028\\n\\u0001"')
  t.throws(() => canonicalJson(Buffer.from('{"a":')), /not valid JSON/)
})
