import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { createCa } from '../../src/tls/pki.js'
import { makeKey, type SigningKey } from './idp.js'
import { freePort } from './ports.js'
import { killProcess } from './redis.js'

const SERVER = new URL('./idp-server.mjs', import.meta.url).pathname

export interface IdpProcess {
  issuer: string
  caFile: string
  /** The key the IdP publishes at start. */
  key: SigningKey
  /** Publishes exactly these keys from now on. */
  publish: (keys: SigningKey[]) => Promise<void>
  /** Every answer waits this long (0: none). */
  slow: (ms: number) => Promise<void>
  stop: () => Promise<void>
  start: () => Promise<void>
  pause: () => void
  resume: () => void
}

/** A real HTTPS OpenID provider in a child process on a fixed loopback port (so a restart keeps its URL). */
export async function startIdpProcess (t: Test): Promise<IdpProcess> {
  // A folder of its own: t.testdir() is one per test, and the gateway's files live there.
  const dir = mkdtempSync(join(tmpdir(), 'portcullis-idp-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const ca = await createCa('IdP process CA')
  const pair = await ca.issue({ commonName: 'idp', ipAddresses: ['127.0.0.1'], usage: 'server' })
  const files = { ca: join(dir, 'ca.crt'), cert: join(dir, 'idp.crt'), key: join(dir, 'idp.key'), jwks: join(dir, 'jwks.json') }
  await Promise.all([writeFile(files.ca, ca.cert), writeFile(files.cert, pair.cert), writeFile(files.key, pair.key)])
  const port = await freePort()
  const issuer = `https://127.0.0.1:${port}`
  const key = makeKey('ES256', 'k1')
  let proc: ChildProcess | null = null

  const publish = async (keys: SigningKey[]): Promise<void> => writeFile(files.jwks, JSON.stringify({ keys: keys.map(k => k.publicJwk) }))
  const start = async (): Promise<void> => {
    const child = spawn(process.execPath, [SERVER, String(port), files.cert, files.key, files.jwks, issuer], { stdio: ['ignore', 'pipe', 'inherit'] })
    proc = child
    await new Promise<void>((resolve, reject) => {
      child.stdout!.once('data', () => resolve())
      child.once('exit', code => reject(new Error(`the IdP process exited (${code})`)))
    })
  }
  const stop = async (): Promise<void> => {
    const p = proc
    proc = null
    await killProcess(p)
  }
  await publish([key])
  await start()
  t.teardown(stop)
  return {
    issuer,
    caFile: files.ca,
    key,
    publish,
    slow: async ms => writeFile(`${files.jwks}.delay`, String(ms)),
    stop,
    start,
    pause: () => { proc?.kill('SIGSTOP') },
    resume: () => { proc?.kill('SIGCONT') }
  }
}
