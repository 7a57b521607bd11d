/*
 * The one canonical path. Rather than normalising an ambiguous path (and risking that the router, the
 * policy and the function each normalise it differently), the gateway only accepts a request target
 * that is already canonical and uses those exact bytes everywhere: route match, policy input, rate-limit
 * key and the upstream request. Hand-written because no library states this exact rule set.
 */

export type PathVerdict =
  | { ok: true, path: string, query: string }
  | { ok: false, reason: string }

// Percent-encodings that would change how the path splits or decodes to something the router sees
// differently: unreserved characters (must be sent literally), "/", "\" and control bytes.
const UNRESERVED = /[A-Za-z0-9\-._~]/

export interface CanonicalOptions {
  /** Accept ";" in the path (matrix or path parameters); a dot segment with parameters is refused anyway. */
  pathParameters?: boolean
}

export function canonicalizeTarget (target: string, opts: CanonicalOptions = {}): PathVerdict {
  if (target.length === 0 || target[0] !== '/') return { ok: false, reason: 'request target must be an absolute path' }
  const q = target.indexOf('?')
  const path = q === -1 ? target : target.slice(0, q)
  const query = q === -1 ? '' : target.slice(q + 1)
  if (target.includes('#')) return { ok: false, reason: 'fragment in request target' }

  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i)
    if (c <= 0x20 || c >= 0x7f) return { ok: false, reason: 'control, space or non-ASCII byte in path' }
    if (c === 0x5c) return { ok: false, reason: 'backslash in path' }
    if (c === 0x3b && opts.pathParameters !== true) return { ok: false, reason: 'path parameter (";") in path' }
    if (c === 0x25) {
      const hex = path.slice(i + 1, i + 3)
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) return { ok: false, reason: 'invalid percent-encoding' }
      const byte = parseInt(hex, 16)
      const ch = String.fromCharCode(byte)
      if (byte < 0x20 || byte === 0x7f) return { ok: false, reason: 'encoded control byte in path' }
      if (ch === '/' || ch === '\\') return { ok: false, reason: 'encoded slash in path' }
      if (byte < 0x80 && UNRESERVED.test(ch)) return { ok: false, reason: 'needlessly percent-encoded character in path' }
      i += 2
    }
  }
  try {
    decodeURIComponent(path)
  } catch {
    return { ok: false, reason: 'path does not decode to valid UTF-8' }
  }
  const segments = path.split('/').slice(1)
  for (const [i, s] of segments.entries()) {
    // Servlet containers read "..;x" as "..": a dot segment the router and policy never saw.
    const name = s.includes(';') ? s.slice(0, s.indexOf(';')) : s
    if (name === '.' || name === '..') return { ok: false, reason: 'dot segment in path' }
    if (s === '' && i !== segments.length - 1) return { ok: false, reason: 'empty path segment' }
  }
  return { ok: true, path, query }
}

/** The decoded segments of a canonical path, as the policy sees them (`/a/b%20c` → ["a", "b c"]). */
export function pathSegments (path: string): string[] {
  if (path === '/') return []
  return path.slice(1).split('/').map(s => decodeURIComponent(s))
}
