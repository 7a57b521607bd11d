import type { Http2ServerRequest } from 'node:http2'
import fp from 'fastify-plugin'
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import {
  GW_ERR_GUARD_AMBIGUOUS_PATH, GW_ERR_GUARD_BAD_PATH, GW_ERR_GUARD_BAD_REQUEST, GW_ERR_GUARD_BODY_TOO_LARGE, GW_ERR_GUARD_EXPECTATION,
  GW_ERR_GUARD_HEADERS_TOO_LARGE, GW_ERR_GUARD_HTTP_VERSION, GW_ERR_GUARD_METHOD,
  GW_ERR_GUARD_UPGRADE, GW_ERR_GUARD_URI_TOO_LONG, GW_ERR_ROUTE_UNKNOWN_HOST
} from '../../errors.js'
import { countRawHeader } from '../../util/raw-headers.js'
import { canonicalizeTarget } from './canonical-path.js'
import { createClientAddress } from './client-address.js'
import { isContinue } from './expect.js'
import { checkHttp2Request } from './http2.js'
import { isHttp2Request } from '../../lifecycle/http2.js'
import { routeOf, syncHook } from '../types.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** The canonical path (no query): what the router, the policy and the upstream all see. */
    canonicalPath: string
    /** The raw query string, without "?". */
    rawQuery: string
    /** The client's address, decided once (client-address.ts): the only one any stage or log uses. */
    readonly clientAddress: string
  }
}

export interface GuardOptions {
  maxBodyBytes: number
  maxUriBytes: number
  maxHeaders: number
  /** Accept ";" path parameters (limits.pathParameters: allow). */
  pathParameters: boolean
  /** limits.doubleEncodedPath: allow. */
  doubleEncodedPath?: boolean
  /** limits.lookalikePath: allow. */
  lookalikePath?: boolean
  /** Host names served (lower-case, no port); undefined serves any. */
  hosts?: readonly string[]
  /** Proxies whose X-Forwarded-For names the client (rateLimit.trustedProxies). */
  trustedProxies: readonly string[]
}

const ADDRESS = Symbol('clientAddress')

/** The host name of a Host header value, lower-cased, without port ("[::1]:8443" → "[::1]"). */
export function hostName (host: string | undefined): string {
  if (host === undefined) return ''
  const end = host.startsWith('[') ? host.indexOf(']') + 1 : host.lastIndexOf(':')
  return (end > 0 ? host.slice(0, end) : host).toLowerCase()
}

const ALLOWED_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'])
const HOST_SYNTAX = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/
export const ALLOW_HEADER = [...ALLOWED_METHODS].join(', ')

/** Stage 1, edge guards: refuse what is ambiguous or oversized before any identity or policy work. */
const guard: FastifyPluginAsync<GuardOptions> = async (app, opts) => {
  app.decorateRequest('canonicalPath', '')
  app.decorateRequest('rawQuery', '')
  // Worked out on first use and kept: also requests refused before any hook (a bad URL) log it.
  const clientAddress = createClientAddress(opts.trustedProxies)
  app.decorateRequest('clientAddress', {
    getter (this: FastifyRequest & { [ADDRESS]?: string }) {
      return (this[ADDRESS] ??= clientAddress(this))
    }
  })

  const canonical = { pathParameters: opts.pathParameters, doubleEncoded: opts.doubleEncodedPath === true, lookalikes: opts.lookalikePath === true }
  const hosts = opts.hosts === undefined ? undefined : new Set(opts.hosts.map(h => h.toLowerCase()))

  // Cheapest checks first: sizes and counts, then the method, the host, the path, the body length.
  // Synchronous (syncHook in pipeline/types.ts: no promise per request); a throw is the refusal.
  const check = (request: FastifyRequest, reply: FastifyReply): void => {
    const target = request.raw.url ?? ''
    if (target.length > opts.maxUriBytes) throw new GW_ERR_GUARD_URI_TOO_LONG()
    // HTTP/2 (ALPN h2): its own framing rules, header count without pseudo-headers, Host from :authority.
    const h2 = isHttp2Request(request.raw)
    if (h2) {
      // Read now: once the stream has closed (the access line), Node no longer reaches its socket.
      void request.clientAddress
      const refusal = checkHttp2Request(request.raw as unknown as Http2ServerRequest, request.headers, opts.maxHeaders)
      if (refusal !== null) throw refusal
    } else if (request.raw.rawHeaders.length / 2 > opts.maxHeaders) {
      // The server keeps at most maxHeaders + 1 fields (maxHeadersCount), so one too many shows here.
      throw new GW_ERR_GUARD_HEADERS_TOO_LARGE()
    }
    // Node's parser reads a request line without a version ("GET /path" + headers) as HTTP/0.9 and
    // accepts "HTTP/2.0" in text: neither is a request a function should be asked to read.
    const version = request.raw.httpVersion
    if (version !== '1.1' && version !== '1.0' && !h2) {
      reply.header('connection', 'close')
      throw new GW_ERR_GUARD_HTTP_VERSION()
    }
    // RFC 9110 §10.1.1: an expectation the gateway cannot meet is a 417 (guard/expect.ts hands Node's
    // expectation requests here so that they get the gateway's body, access line and count).
    // HTTP/1.0 requests are held to it too: the header is never forwarded, so nothing would meet it.
    const expect = request.headers.expect
    if (expect !== undefined && !isContinue(expect)) throw new GW_ERR_GUARD_EXPECTATION()
    if (!ALLOWED_METHODS.has(request.method)) {
      reply.header('allow', ALLOW_HEADER) // RFC 9110 §15.5.6
      throw new GW_ERR_GUARD_METHOD(request.method)
    }
    // RFC 9112 §3.2: an HTTP/1.1 request without exactly one Host is a 400 (Node keeps only the
    // first of several, so they are counted in the raw list). HTTP/2 likewise, Host or :authority.
    const host = request.headers.host
    if ((version === '1.1' || h2) && (host === undefined || host === '' || countRawHeader(request.raw.rawHeaders, 'host') > 1)) {
      throw new GW_ERR_GUARD_BAD_REQUEST()
    }
    // Host is a host name or IP literal and an optional port: no path, userinfo or spaces
    // (RFC 9110 §7.2); anything else could be read differently by the function or a log parser.
    if (host !== undefined && host !== '' && !HOST_SYNTAX.test(host)) throw new GW_ERR_GUARD_BAD_REQUEST()
    if (hosts !== undefined && !hosts.has(hostName(host))) throw new GW_ERR_ROUTE_UNKNOWN_HOST()
    if (request.headers.upgrade !== undefined) {
      reply.header('connection', 'close')
      throw new GW_ERR_GUARD_UPGRADE()
    }
    // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 is faulty framing, and the only coding the gateway
    // forwards is plain chunked (anything else would reach the function relabelled).
    const te = request.headers['transfer-encoding']
    if (te !== undefined && (version !== '1.1' || te.trim().toLowerCase() !== 'chunked')) {
      reply.header('connection', 'close')
      throw new GW_ERR_GUARD_BAD_REQUEST()
    }
    const verdict = canonicalizeTarget(target, canonical)
    if (!verdict.ok) throw verdict.ambiguous === true ? new GW_ERR_GUARD_AMBIGUOUS_PATH(verdict.reason) : new GW_ERR_GUARD_BAD_PATH(verdict.reason)
    request.canonicalPath = verdict.path
    request.rawQuery = verdict.query
    const length = request.headers['content-length']
    const limit = routeOf(request)?.maxBodyBytes ?? opts.maxBodyBytes
    if (length !== undefined && Number(length) > limit) throw new GW_ERR_GUARD_BODY_TOO_LARGE()
  }
  app.addHook('onRequest', syncHook(check))
}

export const guardPlugin = fp(guard, { name: 'gateway-guard', fastify: '5.x' })
