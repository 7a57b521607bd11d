import type { RouteHandlerMethod } from 'fastify'
import type { Config } from '../../config/schema.js'
import { stageOf, type Stage, type StageServices } from '../types.js'
import { routePlugin } from './plugin.js'

/** Stage 2, route match: the route table, handing allowed requests to `handler` (the forward stage). */
export function createRouteStage (config: Pick<Config, 'routes' | 'limits'>, { health }: StageServices, handler: RouteHandlerMethod): Stage {
  health.addStatus('routes', () => config.routes.map(r => ({ id: r.id, prefix: r.prefix, methods: r.methods, upstream: r.upstream })))
  return stageOf(routePlugin, { config, handler })
}
