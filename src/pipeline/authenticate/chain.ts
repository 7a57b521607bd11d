import { GW_ERR_AUTHN_CERTIFICATE, GW_ERR_AUTHN_MALFORMED, GW_ERR_AUTHN_MISSING } from '../../errors.js'
import type { AuthnResult, ClientCertificate, Principal, RouteContext } from '../types.js'
import type { PeerCertificate } from './client-cert.js'
import { failure, type Authenticator } from './jwt.js'
import { countRawHeader } from '../../util/raw-headers.js'

/*
 * What a route demands, applied to what a request carries. The token authenticator says principal,
 * not-applicable or failure; the TLS layer says whether a client certificate was verified. A failure
 * always ends the request: an invalid token is never ignored, not even on a public route.
 */

export interface AuthnRequest {
  headers: Readonly<Record<string, string | string[] | undefined>>
  /** Node keeps only the first of duplicate Authorization headers; the raw list shows them all. */
  rawHeaders: readonly string[]
  query: string
  peer: PeerCertificate
}

const principal = (p: Principal): AuthnResult => ({ kind: 'principal', principal: p })

function certificatePrincipal (cert: ClientCertificate): Principal {
  return { type: 'mtls', issuer: cert.issuer, subject: cert.spiffeId ?? cert.subject, claims: {}, certificate: cert }
}

/** RFC 8705 §3: a token bound to a certificate (`cnf.x5t#S256`) is only good with that certificate. */
function bindCertificate (p: Principal, cert: ClientCertificate | null): AuthnResult {
  const cnf = p.claims.cnf
  const bound = cnf !== null && typeof cnf === 'object' ? (cnf as Record<string, unknown>)['x5t#S256'] : undefined
  if (cnf !== undefined && (typeof bound !== 'string' || cert === null || bound !== cert.thumbprintSha256)) {
    return failure(new GW_ERR_AUTHN_CERTIFICATE('token is bound to another client certificate'), 'cert_binding_mismatch')
  }
  // Principals may come from the verified-token cache: attach the certificate to a copy.
  return principal(cert === null ? p : { ...p, certificate: cert })
}

/** Synchronous unless a token's signature must be checked (the authenticator says): no promise per request for a remembered token. */
export function authenticateRequest (req: AuthnRequest, route: RouteContext, jwt: Authenticator): AuthnResult | Promise<AuthnResult> {
  if (countRawHeader(req.rawHeaders, 'authorization') > 1) return failure(new GW_ERR_AUTHN_MALFORMED('more than one Authorization header'), 'ambiguous')
  // RFC 6750 §2.3 query tokens end up in logs and caches; they are refused rather than ignored.
  if (req.query !== '' && new URLSearchParams(req.query).has('access_token')) return failure(new GW_ERR_AUTHN_MALFORMED('tokens are accepted in the Authorization header only'), 'ambiguous')

  const mode = route.authentication
  const cert = req.peer.state === 'verified' ? req.peer.certificate : null
  const needsCert = mode === 'mtls' || mode === 'jwt-and-mtls'
  if (needsCert && cert === null) {
    return req.peer.state === 'untrusted'
      ? failure(new GW_ERR_AUTHN_CERTIFICATE('client certificate is not trusted'), 'cert_untrusted')
      : failure(new GW_ERR_AUTHN_CERTIFICATE('a client certificate is required'), 'cert_missing')
  }
  const token = jwt.authenticate(req.headers, route)
  return token instanceof Promise ? token.then(t => decide(t, req, mode, cert)) : decide(token, req, mode, cert)
}

/** The route's mode applied to what the token authenticator said and the certificate the TLS layer verified. */
function decide (token: AuthnResult, req: AuthnRequest, mode: RouteContext['authentication'], cert: ClientCertificate | null): AuthnResult {
  if (token.kind === 'failure') return token
  // On a certificate-only route a token is not needed, but one that was sent must still be valid.
  if (mode === 'mtls') return principal(certificatePrincipal(cert!))
  if (token.kind === 'principal') return bindCertificate(token.principal, cert)
  // No token presented.
  if (mode === 'public') return principal({ type: 'anonymous', issuer: '', subject: '', claims: {}, certificate: cert })
  if (mode === 'jwt-or-mtls') {
    if (cert !== null) return principal(certificatePrincipal(cert))
    if (req.peer.state === 'untrusted') return failure(new GW_ERR_AUTHN_CERTIFICATE('client certificate is not trusted'), 'cert_untrusted')
  }
  return failure(new GW_ERR_AUTHN_MISSING(), 'missing')
}
