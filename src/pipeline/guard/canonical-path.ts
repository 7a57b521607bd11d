/*
 * The one canonical path. Rather than normalising an ambiguous path (and risking that the router, the
 * policy and the function each normalise it differently), the gateway only accepts a request target
 * that is already canonical and uses those exact bytes everywhere: route match, policy input, rate-limit
 * key and the upstream request. Hand-written because no library states this exact rule set.
 */

export type PathVerdict =
  | { ok: true, path: string, query: string }
  /** `ambiguous`: canonical as sent, but one more decoding or a Unicode normalisation away from another path. */
  | { ok: false, reason: string, ambiguous?: true }

// Percent-encodings that would change how the path splits or decodes to something the router sees
// differently: unreserved characters (must be sent literally), "/", "\" and control bytes.
const UNRESERVED = /[A-Za-z0-9\-._~]/

export interface CanonicalOptions {
  /** Accept ";" in the path (matrix or path parameters); a dot segment with parameters is refused anyway. */
  pathParameters?: boolean
  /** Accept `%25` followed by an encoded `.`, `/` or `\` (`%252e`): refused unless true. */
  doubleEncoded?: boolean
  /** Accept Unicode look-alikes of `/`, `.` and `\` (`%EF%BC%8F`, fullwidth solidus): refused unless true. */
  lookalikes?: boolean
}

export function canonicalizeTarget (target: string, opts: CanonicalOptions = {}): PathVerdict {
  if (target.length === 0 || target[0] !== '/') return { ok: false, reason: 'request target must be an absolute path' }
  const q = target.indexOf('?')
  const path = q === -1 ? target : target.slice(0, q)
  const query = q === -1 ? '' : target.slice(q + 1)
  if (target.includes('#')) return { ok: false, reason: 'fragment in request target' }

  let encoded = false
  for (let i = 0; i < path.length; i++) {
    const c = path.charCodeAt(i)
    if (c <= 0x20 || c >= 0x7f) return { ok: false, reason: 'control, space or non-ASCII byte in path' }
    if (c === 0x5c) return { ok: false, reason: 'backslash in path' }
    if (c === 0x3b && opts.pathParameters !== true) return { ok: false, reason: 'path parameter (";") in path' }
    if (c === 0x25) {
      encoded = true
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
  // Without a "%" (everything else outside printable ASCII is refused above) it decodes to itself.
  let decoded = path
  if (encoded) {
    try {
      decoded = decodeURIComponent(path)
    } catch {
      return { ok: false, reason: 'path does not decode to valid UTF-8' }
    }
  }
  const segment = segmentFault(path)
  if (segment !== null) return { ok: false, reason: segment }
  // Only an encoded path can hide anything: non-ASCII bytes and "%" are refused unencoded above.
  if (decoded !== path) {
    const trap = decodingTrap(path, decoded, opts)
    if (trap !== null) return { ok: false, reason: trap, ambiguous: true }
  }
  return { ok: true, path, query }
}

const DOT = 0x2e
const SEMICOLON = 0x3b

/**
 * The first segment of `path` (after its leading "/") that is a dot segment or empty but for the
 * last, in order, or null. Servlet containers read "..;x" as "..": a dot segment the router and policy
 * never saw. Read in place: no array of segments, no strings cut out of the path per request.
 */
function segmentFault (path: string): string | null {
  let start = 1
  for (;;) {
    const slash = path.indexOf('/', start)
    const end = slash === -1 ? path.length : slash
    // "." or "..", alone or before parameters (";").
    if (start < end && path.charCodeAt(start) === DOT) {
      const c1 = start + 1 < end ? path.charCodeAt(start + 1) : SEMICOLON
      const c2 = start + 2 < end ? path.charCodeAt(start + 2) : SEMICOLON
      if (c1 === SEMICOLON || (c1 === DOT && c2 === SEMICOLON)) return 'dot segment in path'
    }
    if (slash === -1) return null
    if (end === start) return 'empty path segment'
    start = slash + 1
  }
}

// `%25` (an encoded "%") before the encoding of ".", "/" or "\\", at any depth (`%25252f`), or before
// an IIS-style `%uXXXX`: a function that decodes once more sees a dot or a separator.
const DOUBLE_ENCODED = /%25(?:25)*(?:2e|2f|5c|u[0-9a-f]{4})/i
// Look-alikes that no normalisation form folds, but that Windows best-fit code-page conversion and
// confusable-skeleton matching read as "/" or "\\": DIVISION SLASH, FRACTION SLASH, BIG SOLIDUS,
// REVERSE SOLIDUS OPERATOR, BIG REVERSE SOLIDUS, SET MINUS. (The NFKC check below covers the fullwidth
// and small forms and the dot leaders.) U+3002 IDEOGRAPHIC FULL STOP is deliberately not here: no
// normalisation form makes it ".", only IDNA's host-name mapping does, and refusing it would refuse
// ordinary Chinese and Japanese text in paths.
const CONFUSABLES = /[\u2215\u2044\u29f8\u29f5\u29f9\u2216]/
const SEPARATORS = /[/.\\]/g
const NON_ASCII = /[^\x00-\x7f]/

/** Whether Unicode in `text` stands for "/", "." or "\\" once normalised (NFKC) or read as a look-alike. */
function hasLookalike (text: string): boolean {
  if (!NON_ASCII.test(text)) return false
  if (CONFUSABLES.test(text)) return true
  return (text.normalize('NFKC').match(SEPARATORS)?.length ?? 0) > (text.match(SEPARATORS)?.length ?? 0)
}

/**
 * Decodes `%XX` and `%uXXXX` wherever they stand, leaving the rest: what a lenient second decoder
 * does. Each run of escapes is read as UTF-8 on its own, invalid bytes as U+FFFD, so a stray "%" or a
 * broken sequence elsewhere in the path cannot hide a look-alike (all-or-nothing decoding did).
 */
function decodeAgain (text: string): string {
  const unicode = text.replace(/%u([0-9a-f]{4})/gi, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16)))
  return unicode.replace(/(?:%[0-9a-f]{2})+/gi, run => Buffer.from(run.replaceAll('%', ''), 'hex').toString('utf8'))
}

/**
 * Why a canonical path would become another path for a function that decodes it once more or
 * normalises Unicode (issue #20 item 3), or null. Refusing beats guessing which of the two the
 * function does; each check has an option for deployments that know their functions.
 */
function decodingTrap (path: string, decoded: string, opts: CanonicalOptions): string | null {
  if (opts.doubleEncoded !== true && DOUBLE_ENCODED.test(path)) return 'double-encoded ".", "/" or "\\" in path'
  if (opts.lookalikes !== true) {
    if (hasLookalike(decoded)) return 'Unicode look-alike of "/", "." or "\\" in path'
    // Look-alikes encoded twice (%25EF%25BC%258F) or as %uFF0F show after the function's decoding.
    if (decoded.includes('%') && hasLookalike(decodeAgain(decoded))) return 'double-encoded Unicode look-alike of "/", "." or "\\" in path'
  }
  return null
}
