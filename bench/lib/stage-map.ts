/*
 * Which stage of the request path a profile sample belongs to (npm run bench:stages). One table,
 * STAGE_RULES, read top to bottom for each frame: the first rule whose pattern is in the frame's URL
 * names its category.
 *
 * A sample's stack is walked from the innermost frame outwards, and the first frame that an OWNER rule
 * matches decides: the gateway's own code under dist/ (a stage folder, or a file of observability/)
 * and the libraries that belong to exactly one stage (fast-jwt to authenticate, undici to forward,
 * pino to the access log ...). So a stage is charged with what it calls, down to the next stage, and
 * the bare proxy's reply-from and undici land in "forward" like the gateway's own forwarder. Only a
 * sample without any owner frame (the incoming request's TLS, HTTP parsing, Fastify's router and hook
 * runner) goes to the innermost frame that a PLACE rule matches: where it ran. Frames no rule matches
 * (V8 builtins, WASM code) are skipped, so they count for their caller: the policy's WASM for
 * opa-wasm, undici's llhttp for undici.
 */

export interface StageRule { pattern: string, category: string, owner: boolean }

/** `dist` is the `file://` URL of the gateway's dist/ folder, ending in a slash. */
export function stageRules (dist: string): StageRule[] {
  const own = (path: string, category: string): StageRule => ({ pattern: `${dist}${path}`, category, owner: true })
  const pkgs = (names: string[], category: string, owner: boolean): StageRule[] => names.map(n => ({ pattern: `/node_modules/${n}/`, category, owner }))
  return [
    { pattern: '/bench/lib/profile-hook', category: 'profiler', owner: true },
    own('pipeline/guard/', 'edge guards'),
    own('pipeline/route/', 'route'),
    own('pipeline/authenticate/', 'authenticate'),
    own('pipeline/deny-list/', 'deny list'),
    own('pipeline/authorize/', 'authorize'),
    own('pipeline/rate-limit/', 'rate limit'),
    own('pipeline/forward/credentials/', 'credentials'),
    own('pipeline/forward/', 'forward'),
    own('pipeline/error-reply.js', 'error replies'),
    own('pipeline/', 'pipeline, other'),
    own('observability/metrics.js', 'metrics'),
    own('observability/event-loop-delay.js', 'metrics'),
    own('observability/histogram.js', 'metrics'),
    // The observe hook builds the access line (and counts the request through metrics.js, matched above).
    own('observability/plugin.js', 'access log'),
    own('observability/logger.js', 'access log'),
    own('observability/decision-log.js', 'decision log'),
    own('observability/decision-upload.js', 'decision log'),
    own('observability/tracing.js', 'tracing (off)'),
    own('observability/', 'observability, other'),
    // A place, not an owner: the socket listener (lifecycle/listener.js) calls Fastify for every
    // request, and Fastify's own work must count as Fastify's, as it does for the bare proxy.
    { pattern: dist, category: 'gateway, other (app, server, lifecycle)', owner: false },
    // The bare proxy's only code is its handler, which calls reply.from.
    { pattern: '/bench/servers/', category: 'forward', owner: true },
    // Libraries that serve one stage; a general one (lru-cache, mnemonist) counts for whoever calls it.
    ...pkgs(['fast-jwt', 'jose'], 'authenticate', true),
    ...pkgs(['@open-policy-agent/opa-wasm'], 'authorize', true),
    ...pkgs(['@fastify/rate-limit', 'ioredis', 'redis-parser'], 'rate limit', true),
    ...pkgs(['undici', '@fastify/reply-from'], 'forward', true),
    ...pkgs(['@smithy', '@aws-sdk', '@aws-crypto', 'google-auth-library', 'gcp-metadata', '@azure'], 'credentials', true),
    ...pkgs(['prom-client', 'tdigest', 'bintrees'], 'metrics', true),
    // sonic-boom too: its writes finish from the event loop, with no pino frame left on the stack.
    ...pkgs(['pino', 'sonic-boom', 'fast-redact', 'pino-std-serializers'], 'access log', true),
    ...pkgs(['@opentelemetry'], 'tracing (off)', true),
    // Places: where a sample with no owner frame ran.
    ...pkgs(['fastify', 'find-my-way', 'avvio', 'light-my-request', '@fastify', 'fast-json-stringify', 'fast-querystring', 'fast-decode-uri-component',
      'toad-cache', 'rfdc', 'secure-json-parse', 'content-type', 'process-warning', 'abstract-logging', 'fastify-plugin', 'ret', 'safe-regex2', 'proxy-addr', 'forwarded', 'ipaddr.js'],
    'Fastify (router, hooks, reply)', false),
    { pattern: '/node_modules/', category: 'other libraries', owner: false },
    { pattern: 'node:_tls', category: 'Node: TLS', owner: false },
    { pattern: 'node:tls', category: 'Node: TLS', owner: false },
    { pattern: 'node:internal/tls/', category: 'Node: TLS', owner: false },
    { pattern: 'node:_http', category: 'Node: HTTP', owner: false },
    { pattern: 'node:http', category: 'Node: HTTP', owner: false },
    { pattern: 'node:internal/http', category: 'Node: HTTP', owner: false },
    { pattern: 'node:', category: 'Node: net, streams, timers, promises', owner: false }
  ]
}

/** Samples that are not JavaScript: V8 names them by function name, with no URL. */
export const SPECIAL: Record<string, string> = {
  '(garbage collector)': 'GC (main thread)',
  '(program)': 'native (TLS records, HTTP parser, libuv)',
  '(root)': 'native (TLS records, HTTP parser, libuv)',
  '(idle)': 'idle'
}

/** The rows of the stage table, in request order, then the places. */
export const CATEGORY_ORDER = [
  'edge guards', 'route', 'authenticate', 'deny list', 'authorize', 'rate limit', 'forward', 'credentials',
  'metrics', 'access log', 'decision log', 'tracing (off)', 'error replies', 'pipeline, other', 'observability, other',
  'gateway, other (app, server, lifecycle)',
  'Fastify (router, hooks, reply)', 'Node: HTTP', 'Node: TLS', 'Node: net, streams, timers, promises', 'other libraries',
  'native (TLS records, HTTP parser, libuv)', 'GC (main thread)', 'profiler', 'unattributed'
]

export interface Frame { functionName: string, url: string }

/** The category of a sample whose stack is `stack`, innermost frame first. */
export function categorize (stack: Frame[], rules: StageRule[]): string {
  const leaf = stack[0]
  if (leaf !== undefined && leaf.url === '' && SPECIAL[leaf.functionName] !== undefined) return SPECIAL[leaf.functionName]!
  let place: string | undefined
  for (const frame of stack) {
    if (frame.url === '' || frame.url.startsWith('wasm:')) continue
    const rule = rules.find(r => frame.url.includes(r.pattern))
    if (rule === undefined) continue
    if (rule.owner) return rule.category
    place ??= rule.category
  }
  return place ?? 'unattributed'
}
