import { createServer, type AddressInfo } from 'node:net'

/**
 * A loopback port free right now, for a process that must be told its port before it starts (redis,
 * nginx, prometheus, a CLI with fixed ports). Another process could take it in between; tests accept
 * that small race rather than parse each tool's log for the port it picked.
 */
export async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise<void>(resolve => server.close(() => resolve()))
  return port
}
