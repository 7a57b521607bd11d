import type { FastifyRequest } from 'fastify'
import { protocolOf } from '../../lifecycle/http2.js'
import type { ClientCertificate, PolicyCertificate, PolicyInput, RouteContext } from '../types.js'

/** The decoded segments of a canonical path, as the policy sees them (`/a/b%20c` → ["a", "b c"]). */
export function pathSegments (path: string): string[] {
  if (path === '/') return []
  return path.slice(1).split('/').map(s => decodeURIComponent(s))
}

// Credentials are for the gateway to verify, never for a policy (or its decision log) to read.
const SECRET_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie', 'x-api-key', 'x-amz-security-token'])

/** Builds the policy `input` document. Request data enters the policy only through here, as data. */
export function buildPolicyInput (request: FastifyRequest, route: RouteContext, nowMs: number): PolicyInput {
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(request.headers)) {
    // HTTP/2 pseudo-headers are not header fields: method, path and host reach the policy as for HTTP/1.1.
    if (value === undefined || SECRET_HEADERS.has(name) || name.charCodeAt(0) === 58 /* ':' */) continue
    headers[name] = Array.isArray(value) ? value.join(', ') : value
  }
  const query: Record<string, string[]> = {}
  for (const [k, v] of new URLSearchParams(request.rawQuery)) (query[k] ??= []).push(v)
  const p = request.principal
  return {
    method: request.method,
    protocol: protocolOf(request.raw),
    path: request.canonicalPath,
    segments: pathSegments(request.canonicalPath),
    query,
    headers,
    client: { ip: request.clientAddress },
    tls: { client_certificate: request.clientCertificate === null ? null : toPolicyCertificate(request.clientCertificate) },
    principal: p === null ? null : { type: p.type, issuer: p.issuer, subject: p.subject, claims: dataOnly(p.claims) as Record<string, unknown> },
    route: { id: route.id, metadata: { ...route.metadata } },
    time_ns: nowMs * 1_000_000
  }
}

const POISON = new Set(['__proto__', 'constructor', 'prototype'])

/**
 * Claims are issuer-controlled JSON. Keys that mean something to JavaScript objects are dropped at any
 * depth, so a `__proto__` claim cannot reach the policy input (or anything built from it).
 */
function dataOnly (value: unknown): unknown {
  if (Array.isArray(value)) return value.map(dataOnly)
  if (value === null || typeof value !== 'object') return value
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(value)) if (!POISON.has(k)) out[k] = dataOnly(v)
  return out
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
