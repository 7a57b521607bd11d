import { readFileSync } from 'node:fs'
import { createSecureContext, DEFAULT_CIPHERS } from 'node:tls'

/*
 * The TLS policy of the gateway's listeners (public and admin). By default Mozilla's "intermediate"
 * profile without its DHE suites: TLS 1.2 with ECDHE key exchange and AEAD ciphers only (no CBC, so
 * no SHA-1 MACs and nothing of the LUCKY13 class), and TLS 1.3 with OpenSSL's suites (all AEAD).
 * https://wiki.mozilla.org/Security/Server_Side_TLS
 */

/** TLS 1.2 suites of the default profile, in OpenSSL's names. */
export const INTERMEDIATE_CIPHERS = [
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305'
].join(':')

export type TlsMinVersion = 'TLSv1.2' | 'TLSv1.3'

export interface TlsPolicy {
  cert: string
  key: string
  clientCa?: string | undefined
  minVersion?: TlsMinVersion | undefined
  ciphers?: string | undefined
}

// Node takes TLS 1.3 suites (TLS_*) from the same string, and turns TLS 1.3 off when it names none:
// a string of TLS 1.2 suites keeps Node's TLS 1.3 suites.
const TLS13_DEFAULTS = DEFAULT_CIPHERS.split(':').filter(s => s.startsWith('TLS_'))

/** The cipher string handed to Node: the configured one, with TLS 1.3's defaults unless it names its own. */
export function cipherString (ciphers: string = INTERMEDIATE_CIPHERS): string {
  const parts = ciphers.split(/[:, ]+/).filter(p => p !== '')
  return parts.some(p => p.startsWith('TLS_')) ? parts.join(':') : [...TLS13_DEFAULTS, ...parts].join(':')
}

const accepted = (ciphers: string, minVersion: TlsMinVersion = 'TLSv1.2'): boolean => {
  try {
    createSecureContext({ ciphers, minVersion })
    return true
  } catch {
    return false
  }
}

/**
 * What is wrong with a configured cipher string, as messages (none: usable). OpenSSL skips names it
 * does not know as long as one matches, so each name is tried alone: a typo must not quietly drop a
 * suite. Modifiers (`!`, `-`, `+`) and `@` commands are left to the check of the whole string.
 */
export function cipherProblems (ciphers: string, minVersion: TlsMinVersion = 'TLSv1.2'): string[] {
  const parts = ciphers.split(/[:, ]+/).filter(p => p !== '')
  const problems: string[] = []
  for (const p of parts) {
    if (/^[!+\-@]/.test(p)) continue
    if (!accepted(p)) {
      problems.push(`"${p}" is not a cipher suite or cipher alias this OpenSSL knows`)
    }
  }
  if (problems.length > 0) return problems
  const tls12 = parts.filter(p => !p.startsWith('TLS_'))
  if (minVersion === 'TLSv1.2' && (tls12.length === 0 || !accepted(tls12.join(':'), 'TLSv1.2'))) {
    problems.push('leaves no TLS 1.2 cipher suite; name some, or set minVersion: TLSv1.3')
  }
  if (!accepted(cipherString(ciphers), minVersion)) problems.push('leaves no usable cipher suite')
  return problems
}

/**
 * Node TLS server options for a listener. With a client CA the listener asks each client for a
 * certificate; `requireClientCert` makes the handshake fail without a valid one (admin), otherwise
 * routes decide what they require (public).
 */
export function tlsServerOptions (tls: TlsPolicy, requireClientCert: boolean) {
  return {
    cert: readFileSync(tls.cert),
    key: readFileSync(tls.key),
    minVersion: tls.minVersion ?? 'TLSv1.2',
    ciphers: cipherString(tls.ciphers),
    ...(tls.clientCa !== undefined ? { ca: readFileSync(tls.clientCa), requestCert: true, rejectUnauthorized: requireClientCert } : {})
  }
}
