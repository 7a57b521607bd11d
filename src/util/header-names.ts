/*
 * Header names with a fixed meaning to the gateway, shared by the forward stage (which drops and sets
 * them) and the config rules (which refuse to let a client send them): no data here runs anything.
 */

/** Hop-by-hop headers (RFC 9110 §7.6.1), dropped both ways. */
export const HOP_BY_HOP = new Set([
  'connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade',
  'proxy-authorization', 'proxy-authenticate', 'http2-settings'
])

// Headers the gateway or its credentials set on some requests (credentials/ removes their exact names
// itself where it sets them): any other spelling of them from a client is an alias and dropped.
export const GATEWAY_SET = new Set([
  'host', 'authorization', 'forwarded', 'x-functions-key', 'x-serverless-authorization', 'x-amz-date',
  'x-amz-security-token', 'x-amz-content-sha256'
])

/** Names the request's decision in the decision log, so support can find it from a client's report. */
export const DECISION_ID_HEADER = 'x-portcullis-decision-id'

/** Names the gateway sets on its answers: a function's own copy never reaches the client. */
export const GATEWAY_ANSWER = new Set([DECISION_ID_HEADER])

/**
 * Names an upstream may receive from clients despite the family rules (`passClientHeaders`): never
 * a name the gateway sets itself, checked once at start.
 */
export function passClientHeaderProblem (name: string): string | null {
  // Spelling is the schema's (lower-case, dashed); this is about meaning.
  if (HOP_BY_HOP.has(name) || GATEWAY_SET.has(name) || name === 'expect' || name.startsWith('x-portcullis-') ||
    ['x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host'].includes(name)) return `"${name}" is set by the gateway and cannot come from a client`
  return null
}
