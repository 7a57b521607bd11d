import type { FastifyRequest } from 'fastify'
import { pathSegments } from '../guard/canonical-path.js'
import type { PolicyInput, RouteContext } from '../types.js'

// Credentials are for the gateway to verify, never for a policy (or its decision log) to read.
const SECRET_HEADERS = new Set(['authorization', 'proxy-authorization', 'cookie', 'x-api-key', 'x-amz-security-token'])

/** Builds the policy `input` document. Request data enters the policy only through here, as data. */
export function buildPolicyInput (request: FastifyRequest, route: RouteContext, nowMs: number): PolicyInput {
  const headers: Record<string, string> = {}
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined || SECRET_HEADERS.has(name)) continue
    headers[name] = Array.isArray(value) ? value.join(', ') : value
  }
  const query: Record<string, string[]> = {}
  for (const [k, v] of new URLSearchParams(request.rawQuery)) (query[k] ??= []).push(v)
  const p = request.principal
  return {
    method: request.method,
    path: request.canonicalPath,
    segments: pathSegments(request.canonicalPath),
    query,
    headers,
    client: { ip: request.ip },
    principal: p === null ? null : { type: p.type, issuer: p.issuer, subject: p.subject, claims: { ...p.claims } },
    route: { id: route.id, metadata: { ...route.metadata } },
    time_ns: nowMs * 1_000_000
  }
}
