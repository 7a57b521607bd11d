import { LogController, type FastifyServerOptions } from 'fastify'

/*
 * pino options shared by both listeners. The access line is built field by field from safe values,
 * so redaction here is the second line of defence: any credential that still reaches a log object
 * under a usual name is censored.
 */
// Exact paths only: wildcard paths make pino's redaction walk every logged object on every line.
export const REDACT_PATHS = [
  'req.headers.authorization', 'req.headers.cookie', 'req.headers["proxy-authorization"]',
  'headers.authorization', 'headers.cookie', 'headers["set-cookie"]', 'headers["proxy-authorization"]',
  'err.headers.authorization', 'token', 'password', 'secret'
]

export function loggerOptions (level: string): FastifyServerOptions['logger'] {
  return {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    // The access line carries what matters; the default req/res serialisers would log raw URLs.
    serializers: {}
  }
}

/** Turns off Fastify's own per-request lines: the gateway writes one access line of its own. */
export function quietRequestLogging (): LogController {
  return new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' })
}
