import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { ROOT } from './deploy-tools.js'
import { freePort } from './ports.js'
import { systemTool } from './system-tools.js'

export interface BundleNginx {
  /** https://127.0.0.1:<port>: the certificate names `bundles`, so clients set that servername. */
  origin: string
  port: number
  stop: () => Promise<void>
}

/**
 * Debian's nginx running the compose file's bundle server block (docker/nginx/bundles.conf) as is,
 * with its port and paths moved here: `/certs/` → `certs` (what compose mounts there, docker/certs/bundles),
 * `/srv/bundles/` → `bundles`.
 * Workers run as the current user: as root, nginx would otherwise drop them to `nobody`, which cannot
 * read a test folder under a private (0700) temporary directory.
 */
export async function startBundleNginx (t: Test, dirs: { certs: string, bundles: string }): Promise<BundleNginx> {
  // Its own folder: a second t.testdir() in the calling test would empty the caller's.
  const dir = await mkdtemp(join(tmpdir(), 'portcullis-nginx-'))
  const port = await freePort()
  const server = (await readFile(join(ROOT, 'docker/nginx/bundles.conf'), 'utf8'))
    .replace('listen 8446 ssl;', `listen 127.0.0.1:${port} ssl;`)
    .replaceAll('/certs/', `${dirs.certs}/`).replaceAll('/srv/bundles/', `${dirs.bundles}/`)
  if (!server.includes(`127.0.0.1:${port}`)) throw new Error('docker/nginx/bundles.conf no longer has `listen 8446 ssl;`')
  const temp = join(dir, 'tmp')
  await writeFile(join(dir, 'nginx.conf'), `daemon off; pid ${dir}/nginx.pid; error_log stderr; user ${userInfo().username};
events {}
http { access_log off; client_body_temp_path ${temp}; proxy_temp_path ${temp}; fastcgi_temp_path ${temp};
  uwsgi_temp_path ${temp}; scgi_temp_path ${temp}; ${server} }
`)
  const nginx = spawn(systemTool('nginx'), ['-e', 'stderr', '-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  nginx.stderr.on('data', (d: Buffer) => { stderr += String(d) })
  const exited = new Promise<void>(resolve => nginx.once('exit', () => resolve()))
  const stop = async (): Promise<void> => {
    if (nginx.exitCode !== null || nginx.signalCode !== null) return
    nginx.kill('SIGQUIT')
    await exited
  }
  t.teardown(async () => { await stop(); await rm(dir, { recursive: true, force: true }) })
  for (let i = 0; ; i++) {
    const open = await new Promise<boolean>(resolve => {
      const socket = connect(port, '127.0.0.1', () => { socket.destroy(); resolve(true) }).once('error', () => resolve(false))
    })
    if (open) break
    if (i >= 100 || nginx.exitCode !== null) throw new Error(`nginx did not start on port ${port}:\n${stderr}`)
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  return { origin: `https://127.0.0.1:${port}`, port, stop }
}
