import cluster from 'node:cluster'

/*
 * Scenario 2 on two CPUs: the unchanged bare proxy (bare-proxy.ts) in N workers of Node's cluster
 * module sharing one port, as `portcullis start --workers N` shares its port, so that the ratio of
 * Portcullis --workers 2 to the bare proxy compares the same process model on the same CPUs.
 * Usage: node --import tsx bench/servers/bare-proxy-cluster.ts <port> <upstream-url> <dir> [workers]
 * (each worker reads the same arguments; the fourth is ignored by bare-proxy.ts).
 */
if (cluster.isPrimary) {
  const count = Number(process.argv[5] ?? 2)
  for (let i = 0; i < count; i++) cluster.fork()
  // A worker that dies is not replaced: the bench would measure fewer workers without saying so.
  cluster.on('exit', (_worker, code, signal) => {
    if (signal === null && code !== 0) process.stderr.write(`bare proxy worker exited ${code}\n`)
  })
  const stop = (): void => {
    for (const w of Object.values(cluster.workers ?? {})) w?.kill('SIGTERM')
    process.exit(0)
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
} else {
  await import('./bare-proxy.js')
}
