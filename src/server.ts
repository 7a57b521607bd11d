import { createGateway, type Gateway, type GatewayOptions } from './app.js'
import type { Config } from './config/schema.js'

export interface RunningGateway {
  gateway: Gateway
  /** https://host:port of the public listener (the real port when 0 was configured). */
  url: string
  adminUrl: string
  close: () => Promise<void>
}

function urlOf (address: string, fallbackHost: string, scheme: string): string {
  const { port } = new URL(address)
  const host = fallbackHost === '0.0.0.0' || fallbackHost === '::' ? '127.0.0.1' : fallbackHost
  return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`
}

/** Builds the gateway and opens both listeners. */
export async function startGateway (config: Config, opts: GatewayOptions = {}): Promise<RunningGateway> {
  const gateway = await createGateway(config, opts)
  try {
    const publicAddress = await gateway.app.listen({ host: config.listen.host, port: config.listen.port })
    const adminAddress = await gateway.admin.listen({ host: config.admin.host, port: config.admin.port })
    return {
      gateway,
      url: urlOf(publicAddress, config.listen.host, config.listen.tls !== undefined ? 'https' : 'http'),
      adminUrl: urlOf(adminAddress, config.admin.host, 'http'),
      close: gateway.close
    }
  } catch (err) {
    await gateway.close()
    throw err
  }
}

/**
 * Process lifecycle: on SIGTERM or SIGINT stop accepting, let in-flight requests finish (bounded),
 * then exit. A second signal exits at once.
 */
export function closeOnSignals (close: () => Promise<void>, log: { info: (o: object, m: string) => void }, graceMs = 10_000): void {
  let closing = false
  const onSignal = (signal: NodeJS.Signals): void => {
    if (closing) process.exit(1)
    closing = true
    log.info({ signal }, 'shutting down: draining in-flight requests')
    const timer = setTimeout(() => process.exit(1), graceMs).unref()
    close().then(() => { clearTimeout(timer); process.exit(0) }, () => process.exit(1))
  }
  process.on('SIGTERM', onSignal)
  process.on('SIGINT', onSignal)
}
