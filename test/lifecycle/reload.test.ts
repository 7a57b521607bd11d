import t from 'tap'
import { readFileSync } from 'node:fs'
import { readFile, writeFile } from 'node:fs/promises'
import { connect as tlsConnect } from 'node:tls'
import { httpsClient, type Client } from '../helpers/http.js'
import { gatewayFiles, startGatewayProcess, startPlainUpstream } from '../helpers/gateway-process.js'

// Hot reload of a real `portcullis start` process under a steady client load: every request must
// succeed, and each answer names the upstream that served it, so a swap is visible.

interface Load {
  /** Resolves once `count` answers in a row came from this upstream. */
  servedBy: (name: string, count?: number) => Promise<void>
  stop: () => Promise<{ ok: number, failed: string[] }>
}

function startLoad (client: Client, url: string, token: string, workers = 4): Load {
  let running = true
  let ok = 0
  const failed: string[] = []
  let last = ''
  let streak = 0
  const waiters: Array<() => void> = []
  const loops = Array.from({ length: workers }, async () => {
    while (running) {
      try {
        const res = await client.send(`${url}/hello/load`, { token })
        if (res.status !== 200) { failed.push(`${res.status} ${res.text.slice(0, 120)}`); continue }
        ok++
        const server = res.json<{ server: string }>().server
        streak = server === last ? streak + 1 : 1
        last = server
        for (const w of waiters.splice(0)) w()
      } catch (err) {
        failed.push((err as Error).message)
      }
    }
  })
  return {
    async servedBy (name, count = 20) {
      while (!(last === name && streak >= count)) await new Promise<void>(resolve => waiters.push(resolve))
    },
    async stop () {
      running = false
      await Promise.all(loops)
      return { ok, failed }
    }
  }
}

async function listenerCommonName (url: string, caFile: string): Promise<string> {
  const { port } = new URL(url)
  const socket = tlsConnect({ host: '127.0.0.1', port: Number(port), ca: readFileSync(caFile) })
  await new Promise<void>((resolve, reject) => socket.once('secureConnect', resolve).once('error', reject))
  const cn = socket.getPeerCertificate().subject.CN
  socket.destroy()
  return String(cn)
}

async function reloadCounts (admin: Client, adminUrl: string): Promise<Record<string, number>> {
  const text = (await admin.send(`${adminUrl}/metrics`)).text
  const out: Record<string, number> = {}
  for (const m of text.matchAll(/^portcullis_config_reloads_total\{result="(\w+)"\} (\d+)$/gm)) out[m[1]!] = Number(m[2])
  return out
}

t.test('SIGHUP and file changes swap the config under load without a failed request; a bad config is refused and the old one keeps serving', async t => {
  const a = await startPlainUpstream(t, 'a')
  const b = await startPlainUpstream(t, 'b')
  const files = await gatewayFiles(t)
  const noWatch = 'lifecycle: { watch: false }'
  const watching = 'lifecycle: { watch: true, watchIntervalMs: 100 }'
  await files.writeConfig(a.url, noWatch)
  const gw = await startGatewayProcess(t, files.configFile)
  const admin = httpsClient(t)
  const hashBefore = (await admin.send(`${gw.adminUrl}/status`)).json<{ config: { hash: string } }>().config.hash
  const load = startLoad(httpsClient(t, files.caFile), gw.url, await files.token())
  await load.servedBy('a')

  // Without watching, only the signal reloads.
  await files.writeConfig(b.url, noWatch)
  gw.child.kill('SIGHUP')
  await load.servedBy('b')
  const status = (await admin.send(`${gw.adminUrl}/status`)).json<{ config: { hash: string }, upstreams: Array<{ url: string }> }>()
  t.not(status.config.hash, hashBefore, '/status shows the new config hash')
  t.equal(status.upstreams[0]?.url, b.url)

  // Turn watching on; from then on a saved file is enough.
  await files.writeConfig(a.url, watching)
  gw.child.kill('SIGHUP')
  await load.servedBy('a')
  await files.writeConfig(b.url, watching)
  await load.servedBy('b')

  // A rotated listener certificate is served on new connections.
  t.equal(await listenerCommonName(gw.url, files.caFile), 'gw-1')
  await files.writeListenerCert('gw-2')
  let cn = 'gw-1'
  while (cn === 'gw-1') cn = await listenerCommonName(gw.url, files.caFile)
  t.equal(cn, 'gw-2', 'new handshakes present the new certificate')

  // A bad config: refused with every problem listed, and the running one keeps serving.
  await files.writeConfig(a.url, 'colour: blue\nlifecycle: { drainTimeoutMs: -5, watch: true, watchIntervalMs: 100 }')
  await gw.waitForLog(/config reload refused/)
  const refusal = gw.log().split('\n').find(l => l.includes('config reload refused')) ?? ''
  t.match(refusal, '/: unknown property \\"colour\\"')
  t.match(refusal, '/lifecycle/drainTimeoutMs: must be >= 0')
  await load.servedBy('b', 40)
  t.equal((await admin.send(`${gw.adminUrl}/readyz`)).status, 200, 'still ready')

  const { ok, failed } = await load.stop()
  t.same(failed, [], 'no request failed during the reloads')
  t.ok(ok > 0, `${ok} requests succeeded`)
  // A certificate and its key written one after the other may be seen apart: at least one each.
  const counts = await reloadCounts(admin, gw.adminUrl)
  t.ok((counts.success ?? 0) >= 4, 'successful reloads counted')
  t.ok((counts.failure ?? 0) >= 1, 'the refused reload counted')
  gw.child.kill('SIGTERM')
  t.equal(await gw.exited, 0)
})

t.test('a reload that would change the listening port is refused and names the setting', async t => {
  const a = await startPlainUpstream(t, 'a')
  const files = await gatewayFiles(t)
  await files.writeConfig(a.url, 'lifecycle: { watch: false }')
  const gw = await startGatewayProcess(t, files.configFile)
  const text = await readFile(files.configFile, 'utf8')
  await writeFile(files.configFile, text.replace('admin: { host: 127.0.0.1, port: 0 }', 'admin: { host: 127.0.0.1, port: 19999 }'))
  gw.child.kill('SIGHUP')
  await gw.waitForLog(/config reload refused/)
  t.match(gw.log(), '/admin/port: cannot change on reload; restart the gateway to apply it')
  const res = await httpsClient(t, files.caFile).send(`${gw.url}/hello/x`, { token: await files.token() })
  t.equal(res.status, 200, 'the running config still serves')
})
