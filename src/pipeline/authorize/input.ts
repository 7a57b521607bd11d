import type { FastifyRequest } from 'fastify'
import { LRUCache } from 'lru-cache'
import { protocolOf } from '../../lifecycle/http2.js'
import type { ClientCertificate, PolicyCertificate, Principal, RouteContext } from '../types.js'

/** The decoded segments of a canonical path, as the policy sees them (`/a/b%20c` → ["a", "b c"]). */
export function pathSegments (path: string): string[] {
  if (path === '/') return []
  return path.slice(1).split('/').map(s => decodeURIComponent(s))
}

// Credentials are for the gateway to verify, never for a policy (or its decision log) to read.
const SECRET_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie', 'x-api-key', 'x-amz-security-token'])

/** Writes the policy `input` document (PolicyInput in pipeline/types.ts) of one request as JSON text. */
export type PolicyInputWriter = (request: FastifyRequest, route: RouteContext, nowMs: number) => string

// Canonical paths whose path and segments fields are kept written (the least recently seen forgotten first).
const PATHS_KEPT = 1024

/**
 * Request data enters the policy only through here, as data. The input is written as the JSON text the
 * policy engine reads (JSON.parse of it is the document, for the decision log), field by field in
 * PolicyInput's order. What is the same for every request of a route (its id and metadata) or of a
 * verified token (the principal: cached tokens come back as the same claims object) is serialised once,
 * and so is what the same path gives (its path and decoded segments).
 */
export function createPolicyInputWriter (): PolicyInputWriter {
  const routes = new WeakMap<RouteContext, string>()
  const principals = new WeakMap<object, string>()
  const routeJson = (route: RouteContext): string => {
    let json = routes.get(route)
    if (json === undefined) routes.set(route, json = JSON.stringify({ id: route.id, metadata: route.metadata }))
    return json
  }
  const paths = new LRUCache<string, string>({ max: PATHS_KEPT })
  const pathJson = (path: string): string => {
    let json = paths.get(path)
    if (json === undefined) paths.set(path, json = `"path":${JSON.stringify(path)},"segments":${JSON.stringify(pathSegments(path))}`)
    return json
  }
  const principalJson = (p: Principal): string => {
    // A token's claims object belongs to that token's principal alone (a copy with the connection's
    // certificate shares it); certificate principals are made per request, so not worth keeping.
    if (p.type !== 'jwt') return serialisePrincipal(p)
    let json = principals.get(p.claims)
    if (json === undefined) principals.set(p.claims, json = serialisePrincipal(p))
    return json
  }
  return (request, route, nowMs) => {
    const p = request.principal
    const cert = request.clientCertificate
    return `{"method":${JSON.stringify(request.method)},"protocol":${JSON.stringify(protocolOf(request.raw))}` +
      `,${pathJson(request.canonicalPath)}` +
      `,"query":${queryJson(request.rawQuery)},"headers":${headersJson(request.headers)}` +
      `,"client":{"ip":${JSON.stringify(request.clientAddress)}}` +
      `,"tls":{"client_certificate":${cert === null ? 'null' : JSON.stringify(toPolicyCertificate(cert))}}` +
      `,"principal":${p === null ? 'null' : principalJson(p)},"route":${routeJson(route)},"time_ns":${nowMs * 1_000_000}}`
  }
}

function serialisePrincipal (p: Principal): string {
  return JSON.stringify({ type: p.type, issuer: p.issuer, subject: p.subject, claims: p.claims }, dataOnly)
}

function headersJson (headers: FastifyRequest['headers']): string {
  let json = ''
  for (const name of Object.keys(headers)) {
    const value = headers[name]
    // HTTP/2 pseudo-headers are not header fields: method, path and host reach the policy as for HTTP/1.1.
    if (value === undefined || SECRET_HEADERS.has(name) || name.charCodeAt(0) === 58 /* ':' */) continue
    json += `${json === '' ? '' : ','}${JSON.stringify(name)}:${JSON.stringify(Array.isArray(value) ? value.join(', ') : value)}`
  }
  return `{${json}}`
}

function queryJson (raw: string): string {
  if (raw === '') return '{}'
  // No prototype: a parameter named __proto__ or constructor is a parameter like any other.
  const query: Record<string, string[]> = Object.create(null) as Record<string, string[]>
  for (const [k, v] of new URLSearchParams(raw)) (query[k] ??= []).push(v)
  return JSON.stringify(query)
}

const POISON = new Set(['__proto__', 'constructor', 'prototype'])

/**
 * Claims are issuer-controlled JSON. Keys that mean something to JavaScript objects are dropped at any
 * depth (a JSON.stringify replacer), so a `__proto__` claim cannot reach the policy input (or anything
 * built from it).
 */
function dataOnly (key: string, value: unknown): unknown {
  return POISON.has(key) ? undefined : value
}

function toPolicyCertificate (c: ClientCertificate): PolicyCertificate {
  return {
    subject: c.subject,
    issuer: c.issuer,
    serial_number: c.serialNumber,
    not_after: c.notAfter,
    sans: c.sans,
    spiffe_id: c.spiffeId,
    thumbprint_sha256: c.thumbprintSha256
  }
}
