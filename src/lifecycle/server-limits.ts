import type { Server } from 'node:http'
import type { Socket } from 'node:net'
import type { Config } from '../config/schema.js'

/*
 * The connection limits both listeners get from `limits` (public and admin alike: a slowloris on the
 * admin port would otherwise lock the operator out, and the admin token crosses it).
 */

/**
 * Node HTTP server options for either listener. A missing Host is left to the listener's own hooks,
 * so that it gets the gateway's JSON body rather than Node's empty one.
 */
export function serverOptions (limits: Config['limits']) {
  return {
    maxHeaderSize: limits.maxHeaderBytes,
    requireHostHeader: false,
    // Node enforces headersTimeout/requestTimeout only when it checks, every 30 s by default.
    connectionsCheckingInterval: Math.min(1000, limits.headersTimeoutMs)
  }
}

/** Fastify options that carry the same limits. */
export function fastifyLimits (limits: Config['limits']) {
  return {
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs
  }
}

/**
 * Server settings Fastify has no option for. A slow head (slowloris) is cut at headersTimeout; one
 * header field beyond maxHeaders is kept so that a hook can see and refuse it; a connection that never
 * sends a byte is closed after headersTimeout too (Node's head timer starts at the first byte). On TLS,
 * both the raw connection (no ClientHello ever) and the secured one (no request ever).
 */
export function applyServerLimits (server: Server, limits: Config['limits'], tls: boolean): void {
  server.headersTimeout = limits.headersTimeoutMs
  server.maxHeadersCount = limits.maxHeaders + 1
  server.maxConnections = limits.maxConnections
  const closeIfSilent = (socket: Socket): void => {
    // bytesRead, not a 'data' listener: the HTTP parser may consume the socket without emitting data.
    const idle = setTimeout(() => { if (socket.bytesRead === 0) socket.destroy() }, limits.headersTimeoutMs)
    idle.unref()
    socket.once('close', () => clearTimeout(idle))
  }
  server.on('connection', closeIfSilent)
  if (tls) server.on('secureConnection', closeIfSilent)
}
