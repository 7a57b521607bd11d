/*
 * Rego's sprintf as OPA runs it: Go's fmt.Sprintf over the values, where a number is passed as a Go
 * int (when it fits 64 bits), else as a *big.Int (an integer) or a float64, a string as a Go string,
 * and anything else as its Rego text (`[1, "a"]`, `{"a": 1}`, `null`). Hand-written because no
 * JavaScript library formats like Go's fmt (sprintf-js, the SDK's, is C-like and throws where Go
 * prints `%!d(string=x)`). Not supported, so the call is undefined: `#` with a float verb, and %b,
 * %x, %X of a non-integer (hexadecimal floats). See docs/policy-authoring.md#builtins.
 */

type Arg = { t: 'int' | 'big', v: bigint } | { t: 'float', v: number } | { t: 'string', v: string }

interface Flags { plus: boolean, minus: boolean, sharp: boolean, space: boolean, zero: boolean, wid?: number, prec?: number }

const TYPE: Readonly<Record<Arg['t'], string>> = { int: 'int', big: '*big.Int', float: 'float64', string: 'string' }
const INT64 = 2n ** 63n

const runes = (s: string): number => [...s].length
const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8')

/** Go's unicode.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space. */
const printable = (c: string): boolean => c === ' ' || /^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u.test(c)

/** strconv.Quote (or QuoteToASCII): Go's escapes, printable runes as they are. */
export function goQuote (s: string, ascii = false): string {
  let out = '"'
  for (const c of s) {
    const r = c.codePointAt(0)!
    const named: Record<string, string> = { '\x07': '\\a', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\v': '\\v', '"': '\\"', '\\': '\\\\' }
    if (named[c] !== undefined) out += named[c]
    else if (r < 0x80 ? printable(c) : printable(c) && !ascii) out += c
    else if (r < 0x20 || r === 0x7f) out += `\\x${r.toString(16).padStart(2, '0')}`
    else if (r < 0x10000) out += `\\u${r.toString(16).padStart(4, '0')}`
    else out += `\\U${r.toString(16).padStart(8, '0')}`
  }
  return `${out}"`
}

/** A value's text in Rego (ast.Value.String()): what OPA's sprintf prints for non-numbers and non-strings. */
function regoText (v: unknown): string {
  if (typeof v === 'string') return goQuote(v)
  if (typeof v === 'number') return String(v)
  if (v === null || typeof v !== 'object') return String(v)
  if (Array.isArray(v)) return `[${v.map(regoText).join(', ')}]`
  const keys = Object.keys(v).sort((a, b) => Buffer.compare(utf8(a), utf8(b)))
  return `{${keys.map(k => `${goQuote(k)}: ${regoText((v as Record<string, unknown>)[k])}`).join(', ')}}`
}

function toArg (v: unknown): Arg {
  if (typeof v === 'string') return { t: 'string', v }
  if (typeof v !== 'number') return { t: 'string', v: regoText(v) }
  const text = JSON.stringify(v)
  if (!/^-?\d+$/.test(text)) return { t: 'float', v }
  const n = BigInt(text)
  return { t: n >= -INT64 && n < INT64 ? 'int' : 'big', v: n }
}

function pad (s: string, f: Flags, zeroAllowed = true): string {
  const n = (f.wid ?? 0) - runes(s)
  if (n <= 0) return s
  if (f.minus) return s + ' '.repeat(n)
  return (f.zero && zeroAllowed ? '0' : ' ').repeat(n) + s
}

function formatString (s: string, verb: string, f: Flags): string | null {
  const cut = f.prec !== undefined ? [...s].slice(0, f.prec).join('') : s
  switch (verb) {
    case 'v': case 's': return pad(cut, f)
    case 'q':
      if (f.sharp && !/[`\ufeff]|[^\t\P{Cc}]/u.test(cut)) return pad(`\`${cut}\``, f)
      return pad(goQuote(cut, f.plus), f)
    case 'x': case 'X': {
      let bytes = [...utf8(s)]
      if (f.prec !== undefined) bytes = bytes.slice(0, f.prec)
      const hex = (b: number): string => b.toString(16).padStart(2, '0')
      const prefix = f.sharp ? `0${verb}` : ''
      let out = bytes.map((b, i) => (i > 0 && f.space ? ` ${prefix}` : i === 0 ? prefix : '') + hex(b)).join('')
      if (verb === 'X') out = out.toUpperCase()
      const n = (f.wid ?? 0) - out.length
      return n <= 0 ? out : f.minus ? out + ' '.repeat(n) : (f.zero ? '0' : ' ').repeat(n) + out
    }
    default: return null
  }
}

const BASES: Readonly<Record<string, number>> = { b: 2, o: 8, O: 8, x: 16, X: 16, d: 10, v: 10 }

function formatInt (n: bigint, verb: string, f: Flags): string | null {
  if (verb === 'c') return pad(String.fromCodePoint(n >= 0n && n <= 0x10ffffn ? Number(n) : 0xfffd), f, false)
  if (verb === 'q') return pad(`'${goQuote(String.fromCodePoint(n >= 0n && n <= 0x10ffffn ? Number(n) : 0xfffd), f.plus).slice(1, -1).replace(/\\"/g, '"').replace(/'/g, '\\\'')}'`, f, false)
  if (verb === 'U') return pad(`U+${(n < 0n ? n + 2n ** 64n : n).toString(16).toUpperCase().padStart(f.prec ?? 4, '0')}`, f, false)
  const base = BASES[verb]
  if (base === undefined) return null
  let digits = (n < 0n ? -n : n).toString(base)
  if (verb === 'X') digits = digits.toUpperCase()
  const sign = n < 0n ? '-' : f.plus ? '+' : f.space ? ' ' : ''
  if (f.prec === 0 && n === 0n) return ' '.repeat(f.wid ?? 0)
  let prec = f.prec ?? 0
  if (f.prec === undefined && f.zero && !f.minus && f.wid !== undefined) prec = f.wid - (sign === '' ? 0 : 1)
  digits = digits.padStart(prec, '0')
  if (f.sharp) {
    if (base === 2) digits = `0b${digits}`
    else if (base === 8 && verb === 'o' && !digits.startsWith('0')) digits = `0${digits}`
    else if (base === 16) digits = `0${verb}${digits}`
  }
  if (verb === 'O') digits = `0o${digits}`
  return pad(sign + digits, f, false)
}

/** *big.Int's own Format, which differs from fmt's for ints (%s and %v print digits, sign and zero handling). */
function formatBig (n: bigint, verb: string, f: Flags): string {
  const base = verb === 's' ? 10 : BASES[verb]
  if (base === undefined) return `%!${verb}(big.Int=${n})`
  const sign = n < 0n ? '-' : f.plus ? '+' : f.space ? ' ' : ''
  const prefix = verb === 'O' ? '0o' : f.sharp ? ({ b: '0b', o: '0', x: '0x', X: '0X' } as Record<string, string>)[verb] ?? '' : ''
  let digits = (n < 0n ? -n : n).toString(base)
  if (verb === 'X') digits = digits.toUpperCase()
  let zeros = 0
  if (f.prec !== undefined) {
    if (digits.length < f.prec) zeros = f.prec - digits.length
    else if (digits === '0' && f.prec === 0) return ''
  }
  const d = (f.wid ?? 0) - (sign.length + prefix.length + zeros + digits.length)
  let left = 0; let right = 0
  if (d > 0) {
    if (f.minus) right = d
    else if (f.zero && f.prec === undefined) zeros = d
    else left = d
  }
  return ' '.repeat(left) + sign + prefix + '0'.repeat(zeros) + digits + ' '.repeat(right)
}

/** The exact decimal expansion of a finite double: `v = 0.digits × 10^dp`, digits without zeros at either end. */
function exactDecimal (v: number): { digits: string, dp: number } {
  if (v === 0) return { digits: '', dp: 0 }
  const view = new DataView(new ArrayBuffer(8))
  view.setFloat64(0, Math.abs(v))
  const bits = view.getBigUint64(0)
  const exp = Number((bits >> 52n) & 0x7ffn)
  let mant = bits & ((1n << 52n) - 1n)
  let e = exp - 1075
  if (exp === 0) e = -1074
  else mant |= 1n << 52n
  let s: string; let point: number
  if (e >= 0) {
    s = (mant << BigInt(e)).toString(); point = s.length
  } else {
    s = (mant * 5n ** BigInt(-e)).toString(); point = s.length + e
  }
  const lead = s.length - s.replace(/^0+/, '').length
  s = s.slice(lead).replace(/0+$/, '')
  return { digits: s, dp: point - lead }
}

/** Rounds to nd significant digits as Go's strconv does: half to even, on the exact value. */
function roundDigits (d: { digits: string, dp: number }, nd: number): { digits: string, dp: number } {
  if (nd < 0) return { digits: '', dp: 0 }
  if (nd >= d.digits.length) return d
  const up = d.digits[nd] === '5' && nd + 1 === d.digits.length
    ? nd > 0 && Number(d.digits[nd - 1]) % 2 === 1
    : d.digits[nd]! >= '5'
  if (!up) return { digits: d.digits.slice(0, nd).replace(/0+$/, ''), dp: d.digits.slice(0, nd) === '' ? 0 : d.dp }
  const n = (BigInt(d.digits.slice(0, nd) || '0') + 1n).toString()
  return { digits: n.replace(/0+$/, ''), dp: d.dp + (n.length > nd ? 1 : 0) }
}

/** Go's shortest decimal that reads back as v: the same digits as JavaScript's. */
function shortestDecimal (v: number): { digits: string, dp: number } {
  const [m, e] = Math.abs(v).toExponential().split('e') as [string, string]
  const digits = m.replace('.', '').replace(/0+$/, '')
  return { digits, dp: Number(e) + 1 }
}

const fmtE = (d: { digits: string, dp: number }, prec: number, e: string): string => {
  const first = d.digits[0] ?? '0'
  const frac = prec > 0 ? `.${d.digits.slice(1).padEnd(prec, '0').slice(0, prec)}` : ''
  const x = d.digits === '' ? 0 : d.dp - 1
  return `${first}${frac}${e}${x < 0 ? '-' : '+'}${String(Math.abs(x)).padStart(2, '0')}`
}

const fmtF = (d: { digits: string, dp: number }, prec: number): string => {
  const int = d.dp > 0 ? d.digits.slice(0, d.dp).padEnd(d.dp, '0') : '0'
  const frac = Array.from({ length: prec }, (_, i) => d.digits[d.dp + i] ?? (d.dp + i < 0 ? '0' : '0')).join('')
  return prec > 0 ? `${int}.${frac}` : int
}

/** strconv.FormatFloat(|v|, verb, prec, 64) for e, E, f, F, g, G; prec -1 is the shortest. */
function formatAbsFloat (v: number, verb: string, prec: number): string {
  const lower = verb.toLowerCase()
  const e = verb === 'E' || verb === 'G' ? 'E' : 'e'
  const shortest = prec < 0
  let d = shortest ? shortestDecimal(v) : exactDecimal(v)
  if (lower === 'e') {
    if (!shortest) d = roundDigits(d, prec + 1)
    return fmtE(d, shortest ? Math.max(d.digits.length - 1, 0) : prec, e)
  }
  if (lower === 'f') {
    if (!shortest) d = roundDigits(d, d.dp + prec)
    return fmtF(d, shortest ? Math.max(d.digits.length - d.dp, 0) : prec)
  }
  let p = prec === 0 ? 1 : prec
  if (!shortest) d = roundDigits(d, p)
  if (shortest) p = d.digits.length
  let eprec = p
  if (eprec > d.digits.length && d.digits.length >= d.dp) eprec = d.digits.length
  if (shortest) eprec = 6
  const x = d.dp - 1
  if (x < -4 || x >= eprec) return fmtE(d, Math.min(p, d.digits.length) - 1, e)
  return fmtF(d, Math.max((p > d.dp ? d.digits.length : p) - d.dp, 0))
}

function formatFloat (v: number, verb: string, f: Flags): string | null {
  if (!'vgGeEfF'.includes(verb)) return 'bxX'.includes(verb) ? unsupported() : null
  if (f.sharp) return unsupported()
  const prec = f.prec ?? ('eEfF'.includes(verb) ? 6 : -1)
  const num = formatAbsFloat(v, verb === 'v' ? 'g' : verb, prec)
  const sign = v < 0 || Object.is(v, -0) ? '-' : f.plus ? '+' : f.space ? ' ' : ''
  if (sign !== '' && f.zero && !f.minus && f.wid !== undefined && f.wid > num.length + 1) return sign + '0'.repeat(f.wid - num.length - 1) + num
  return pad(sign + num, f)
}

function unsupported (): never {
  throw new Error('sprintf: hexadecimal and # forms of non-integers are not supported')
}

function formatArg (a: Arg, verb: string, f: Flags): string {
  if (verb === 'T') return pad(TYPE[a.t], f)
  if (a.t === 'big') return formatBig(a.v, verb, f)
  const out = a.t === 'string' ? formatString(a.v, verb, f) : a.t === 'int' ? formatInt(a.v, verb, f) : formatFloat(a.v as number, verb, f)
  return out ?? `%!${verb}(${TYPE[a.t]}=${formatArg(a, 'v', f)})`
}

/** Go's fmt.Sprintf(format, args...), with Rego values converted as OPA's sprintf converts them. */
export function goSprintf (format: unknown, values: unknown): string {
  if (typeof format !== 'string' || !Array.isArray(values)) throw new TypeError('sprintf: operands must be a string and an array')
  const args = values.map(toArg)
  const s = [...format]
  let out = ''
  let argNum = 0
  let reordered = false
  let i = 0
  const num = (): number | undefined => {
    let n: number | undefined
    while (i < s.length && s[i]! >= '0' && s[i]! <= '9') {
      if (n !== undefined && n > 1e6) return undefined
      n = (n ?? 0) * 10 + Number(s[i++])
    }
    return n
  }
  while (i < s.length) {
    if (s[i] !== '%') { out += s[i++]; continue }
    i++
    const f: Flags = { plus: false, minus: false, sharp: false, space: false, zero: false }
    for (; i < s.length; i++) {
      const c = s[i]
      if (c === '#') f.sharp = true
      else if (c === '0') f.zero = !f.minus
      else if (c === '+') f.plus = true
      else if (c === '-') { f.minus = true; f.zero = false } else if (c === ' ') f.space = true
      else break
    }
    let good = true
    let afterIndex = false
    const argIndex = (): void => {
      if (s[i] !== '[') { afterIndex = false; return }
      reordered = true
      const close = s.indexOf(']', i)
      const text = close < 0 ? '' : s.slice(i + 1, close).join('')
      if (close < 0 || !/^\d+$/.test(text) || Number(text) < 1 || Number(text) > args.length) {
        good = false
        i = close < 0 ? i + 1 : close + 1
        afterIndex = close >= 0 && /^\d+$/.test(text)
        return
      }
      argNum = Number(text) - 1
      i = close + 1
      afterIndex = true
    }
    argIndex()
    const fromArg = (): number | undefined => {
      const a = args[argNum]
      argNum++
      return a?.t === 'int' && a.v <= 1_000_000n && a.v >= -1_000_000n ? Number(a.v) : undefined
    }
    if (s[i] === '*') {
      i++
      const w = fromArg()
      if (w === undefined) out += '%!(BADWIDTH)'
      else if (w < 0) { f.wid = -w; f.minus = true; f.zero = false } else f.wid = w
      afterIndex = false
    } else {
      f.wid = num()
      if (afterIndex && f.wid !== undefined) good = false
    }
    if (i + 1 <= s.length && s[i] === '.') {
      i++
      if (afterIndex) good = false
      argIndex()
      if (s[i] === '*') {
        i++
        const p = fromArg()
        if (p === undefined || p < 0) { if (p === undefined) out += '%!(BADPREC)' } else f.prec = p
        afterIndex = false
      } else {
        f.prec = num() ?? 0
      }
    }
    if (!afterIndex) argIndex()
    if (i >= s.length) { out += '%!(NOVERB)'; break }
    const verb = s[i++]!
    if (verb === '%') out += '%'
    else if (!good) out += `%!${verb}(BADINDEX)`
    else if (argNum >= args.length) out += `%!${verb}(MISSING)`
    else if (verb === 'p') unsupported()
    else out += formatArg(args[argNum++]!, verb, verb === 'v' && f.sharp ? { ...f, sharp: false } : f)
  }
  if (!reordered && argNum < args.length) {
    const none: Flags = { plus: false, minus: false, sharp: false, space: false, zero: false }
    out += `%!(EXTRA ${args.slice(argNum).map(a => `${TYPE[a.t]}=${formatArg(a, 'v', none)}`).join(', ')})`
  }
  return out
}
