import fp from 'fastify-plugin'
import type { FastifyPluginAsync } from 'fastify'
import type { Forwarder } from './forwarder.js'

export interface ForwardOptions { forwarder: Forwarder }

/** Stage 6 wiring: the forwarder is the route handler (see route/plugin.ts); this owns its lifecycle. */
const forward: FastifyPluginAsync<ForwardOptions> = async (app, { forwarder }) => {
  app.decorateRequest('upstreamStatus', null)
  app.decorateRequest('upstreamMs', null)
  app.addHook('onClose', async () => forwarder.close())
}

export const forwardPlugin = fp(forward, { name: 'gateway-forward', fastify: '5.x', dependencies: ['gateway-rate-limit'] })
