/*
 * What the stages hand each other. Stages share only these types and the request decorators declared
 * in their plugins; nothing reaches into another stage's internals.
 */
import type { FastifyError } from 'fastify'

/** A verified identity. Only the authenticate stage creates one. */
export interface JwtPrincipal {
  type: 'jwt'
  issuerId: string
  issuer: string
  subject: string
  claims: Readonly<Record<string, unknown>>
}

export type Principal = JwtPrincipal

/** What an authenticator says about a request. */
export type AuthnResult =
  | { kind: 'principal', principal: Principal }
  | { kind: 'not-applicable' }
  | { kind: 'failure', error: FastifyError, reason: string }

/** The document a policy sees as `input` (policies/input.schema.json mirrors it). */
export interface PolicyInput {
  method: string
  path: string
  segments: string[]
  query: Record<string, string[]>
  headers: Record<string, string>
  client: { ip: string }
  principal: null | { type: Principal['type'], issuer: string, subject: string, claims: Record<string, unknown> }
  route: { id: string, metadata: Record<string, unknown> }
  time_ns: number
}

/** A policy decision after validation; anything that does not fit this shape denies. */
export interface Decision {
  allow: boolean
  reasons: string[]
  status?: number
  message?: string
  headers: { upstream: Record<string, string>, client: Record<string, string> }
}

/** The route a request matched, as the stages read it from `routeOptions.config`. */
export interface RouteContext {
  id: string
  prefix: string
  upstream: string
  stripPrefix: boolean
  issuers?: readonly string[]
  rateLimit?: { max: number, windowSeconds: number }
  metadata: Readonly<Record<string, unknown>>
}
