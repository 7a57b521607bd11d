import { LogController, type FastifyBaseLogger, type FastifyServerOptions } from 'fastify'
import { register as onExit } from 'on-exit-leak-free'
import { pino } from 'pino'

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

/** A log destination that can also take lines to write together at the end of the event-loop turn. */
export interface BatchingDestination extends NodeJS.WritableStream {
  /** Queues a whole line; the turn's queued lines go out as one write. */
  writeBatched: (line: string) => void
  flushSync: () => void
}

/**
 * Standard output, written synchronously. pino's default destination writes asynchronously, and
 * while one write is in flight it appends each new line to one pending string and measures that whole
 * string again (sonic-boom's `Buffer.byteLength` of its last buffer): under load a copy per line that
 * grows with the backlog (bench/STAGES.md, issue #19: 7.5 KiB and a quarter of the access line's CPU
 * per request). Synchronous is also what Node does for its own stdout on files and pipes.
 *
 * The access lines, one per request, are queued instead and written together when the event-loop turn
 * that answered them ends (setImmediate): one write for the turn's requests instead of one each (under
 * load several requests end per turn, and on a pipe to a container runtime each write also wakes its
 * reader). Every other line is written at once, after whatever is queued, so lines keep their order;
 * the process's exit writes what is still queued (on-exit-leak-free, as pino flushes its own
 * destinations: held weakly, so a reload's replaced destinations are not kept for it). A process
 * killed outright loses the access lines of its last turn, a few milliseconds of them.
 */
export function createLogDestination (fd = 1): BatchingDestination {
  const out = pino.destination({ dest: fd, sync: true })
  // sonic-boom's own write and flushSync, kept before the destination's are put over them.
  const writeNow = out.write.bind(out)
  const flushOut = out.flushSync.bind(out)
  const flushLater = out.flush.bind(out)
  let queued: string[] = []
  let scheduled = false
  const writeQueued = (): void => {
    scheduled = false
    if (queued.length === 0) return
    const lines = queued
    queued = []
    writeNow(lines.length === 1 ? lines[0]! : lines.join(''))
  }
  const destination: BatchingDestination = Object.assign(out as unknown as NodeJS.WritableStream, {
    write (line: string): boolean { writeQueued(); return writeNow(line) },
    writeBatched (line: string): void {
      queued.push(line)
      if (!scheduled) { scheduled = true; setImmediate(writeQueued) }
    },
    flushSync (): void { writeQueued(); flushOut() },
    // pino's logger.flush(cb) calls this: what is queued goes first.
    flush (cb?: (err?: Error) => void): void { writeQueued(); flushLater(cb) }
  })
  onExit(destination, d => { d.flushSync() })
  return destination
}

export function loggerOptions (level: string, stream: NodeJS.WritableStream = createLogDestination()): FastifyServerOptions['logger'] {
  return {
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    // The access line carries what matters; the default req/res serialisers would log raw URLs.
    serializers: {},
    stream
  }
}

/** Turns off Fastify's own per-request lines: the gateway writes one access line of its own. */
export function quietRequestLogging (): LogController {
  return new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' })
}

type PinoInternals = Record<symbol, unknown>

/** The access line's fields, request_id first (where the request's child logger would put it). */
export type AccessFields = { request_id: string } & Record<string, unknown>

/**
 * Writes the access line, one per request, with the framing pino gives every line of this logger
 * (level, time, pid, hostname, then the fields, then msg) and the line as `log.child({request_id})
 * .info(fields, msg)` would write it. Its fields are built one by one from values the gateway made
 * (observability/plugin.ts), so the line needs no redaction, and one JSON.stringify of them costs a
 * fraction of pino's field-by-field serialisation. The framing is read from the logger itself through
 * `pino.symbols` (pino's interface for integrations, as Fastify uses it), so options such as a
 * timestamp function stay pino's. Anything this shortcut would bypass (a destination that wants
 * pino's per-line metadata, a mixin or a formatter for log objects) sends the line through pino.
 */
export function createAccessLog (fastifyLog: FastifyBaseLogger, msg: string): (fields: AccessFields) => void {
  const log = fastifyLog as unknown as pino.Logger // Fastify's logger is pino's (loggerOptions above)
  const s = pino.symbols
  const msgPrefixSym = (s as Record<string, symbol>).msgPrefixSym // not in pino's types
  const internals = log as unknown as PinoInternals
  const stream = internals[s.streamSym] as { write?: (line: string) => unknown } | undefined
  const levels = internals[s.lsCacheSym] as Record<number, string> | undefined
  const time = internals[s.timeSym] as (() => string) | undefined
  const chindings = internals[s.chindingsSym]
  const formatters = internals[s.formattersSym] as { log?: unknown } | undefined
  const hooks = internals[s.hooksSym] as { streamWrite?: unknown } | undefined
  const end = internals[s.endSym]
  const level = log.levels.values.info!
  const head = levels?.[level]
  const direct = typeof stream?.write === 'function' && head !== undefined && typeof time === 'function' &&
    typeof chindings === 'string' && typeof end === 'string' && internals[s.mixinSym] === undefined &&
    formatters?.log === undefined && hooks?.streamWrite === undefined && (msgPrefixSym === undefined || internals[msgPrefixSym] === undefined) &&
    internals[s.messageKeySym] === 'msg' && internals[s.nestedKeySym] === null &&
    (stream as Record<symbol, unknown>)[s.needsMetadataGsym] !== true
  if (!direct) {
    return fields => { log.info(fields, msg) }
  }
  const batched = (stream as Partial<BatchingDestination>).writeBatched
  const write = typeof batched === 'function' ? batched.bind(stream) : stream.write!.bind(stream)
  const tail = `,"msg":${JSON.stringify(msg)}${end}`
  return fields => {
    if (!log.isLevelEnabled('info')) return
    const json = JSON.stringify(fields)
    write(`${head}${time.call(log)}${chindings},${json.slice(1, -1)}${tail}`)
  }
}

type Log = (...args: unknown[]) => void

/**
 * A request's logger, made when something first logs through it. Fastify gives every request a pino
 * child (bindings serialised, a dozen fields copied: 0.5–1 KiB and a few µs a request, issue #19); the
 * gateway logs per request only the access line, written without it (createAccessLog above), so most
 * requests never need one. What is logged, and how, is the child's: this only defers making it.
 */
class LazyRequestLogger implements FastifyBaseLogger {
  #made: FastifyBaseLogger | undefined
  readonly #parent: FastifyBaseLogger
  readonly #bindings: Record<string, unknown>
  readonly #options: { level?: string }
  constructor (parent: FastifyBaseLogger, bindings: Record<string, unknown>, options: { level?: string }) {
    this.#parent = parent
    this.#bindings = bindings
    this.#options = options
  }

  #log (): FastifyBaseLogger { return (this.#made ??= this.#parent.child(this.#bindings, this.#options)) }
  get level (): string { return this.#made?.level ?? this.#options.level ?? this.#parent.level }
  set level (level: string) { this.#log().level = level }
  fatal (...args: unknown[]): void { (this.#log().fatal as Log)(...args) }
  error (...args: unknown[]): void { (this.#log().error as Log)(...args) }
  warn (...args: unknown[]): void { (this.#log().warn as Log)(...args) }
  info (...args: unknown[]): void { (this.#log().info as Log)(...args) }
  debug (...args: unknown[]): void { (this.#log().debug as Log)(...args) }
  trace (...args: unknown[]): void { (this.#log().trace as Log)(...args) }
  silent (...args: unknown[]): void { (this.#log().silent as Log)(...args) }
  child (bindings: Record<string, unknown>, options?: { level?: string }): FastifyBaseLogger { return this.#log().child(bindings, options) }
}

/** Fastify's `childLoggerFactory` for the public listener: request loggers made on first use. */
export function lazyRequestLogger (logger: FastifyBaseLogger, bindings: Record<string, unknown>, options: { level?: string }): FastifyBaseLogger {
  return new LazyRequestLogger(logger, bindings, options)
}
