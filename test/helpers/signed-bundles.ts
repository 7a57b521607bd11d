import { execFile } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import type { Test } from 'tap'
import * as tar from 'tar'
import { resolveOpa } from '../../scripts/opa.mjs'

const run = promisify(execFile)

export type SigningAlg = 'RS256' | 'ES256' | 'EdDSA'

/** A key pair made at test time, as PEM files in `dir`. */
export async function makeSigningKey (dir: string, alg: SigningAlg, name: string = alg): Promise<{ priv: string, pub: string }> {
  const pair = alg === 'RS256'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : alg === 'ES256' ? generateKeyPairSync('ec', { namedCurve: 'P-256' }) : generateKeyPairSync('ed25519')
  const priv = join(dir, `${name}.key.pem`)
  const pub = join(dir, `${name}.pub.pem`)
  await writeFile(priv, pair.privateKey.export({ type: 'pkcs8', format: 'pem' }))
  await writeFile(pub, pair.publicKey.export({ type: 'spki', format: 'pem' }))
  return { priv, pub }
}

export const SMALL_POLICY = `package gateway.authz

default decision := {"allow": false, "reasons": ["test.deny"]}

decision := {"allow": true, "reasons": ["test.allow"]} if input.principal.subject in data.allowed
`

/**
 * `opa build -t wasm` of `rego` (and `data`) in a fresh temporary folder; signed with
 * `--signing-key` when `sign` is given. Returns the archive path.
 */
export async function opaBuild (t: Test, opts: { rego?: string, /** JSON text, or a value to stringify */ data?: unknown, sign?: { key: string, alg: SigningAlg, claims?: Record<string, unknown> }, revision?: string } = {}): Promise<string> {
  // Its own folder: t.testdir() is one per test and left to the test itself.
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-bundle-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  await mkdir(join(dir, 'src', 'gateway'), { recursive: true })
  await writeFile(join(dir, 'src', 'gateway', 'authz.rego'), opts.rego ?? SMALL_POLICY)
  await writeFile(join(dir, 'src', 'data.json'), typeof opts.data === 'string' ? opts.data : JSON.stringify(opts.data ?? { allowed: ['alice'] }))
  const out = join(dir, 'bundle.tar.gz')
  const args = ['build', '-b', '-t', 'wasm', '-e', 'gateway/authz/decision', '-o', out]
  if (opts.revision !== undefined) args.push('--revision', opts.revision)
  if (opts.sign !== undefined) {
    args.push('--signing-key', opts.sign.key, '--signing-alg', opts.sign.alg)
    if (opts.sign.claims !== undefined) {
      await writeFile(join(dir, 'claims.json'), JSON.stringify(opts.sign.claims))
      args.push('--claims-file', join(dir, 'claims.json'))
    }
  }
  await run(await resolveOpa(), [...args, '.'], { cwd: join(dir, 'src') })
  return out
}

/** `opa sign --bundle <archive>`: the .signatures.json that OPA writes for it. */
export async function opaSign (archive: string, key: string, alg: SigningAlg): Promise<Buffer> {
  const cwd = join(archive, '..')
  await run(await resolveOpa(), ['sign', '--signing-key', key, '--signing-alg', alg, '--bundle', archive], { cwd })
  return readFile(join(cwd, '.signatures.json'))
}

/** Unpacks an archive into `dir` (which is created). */
export async function unpack (archive: string, dir: string): Promise<void> {
  await mkdir(dir, { recursive: true })
  await tar.x({ file: archive, cwd: dir })
}

/** Packs every entry of `dir` (dotfiles included) into a gzipped tar, as a bundle. */
export async function packDir (dir: string, names: string[]): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of tar.c({ gzip: true, cwd: dir, portable: true }, names)) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}
