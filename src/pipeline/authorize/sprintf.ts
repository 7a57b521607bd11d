/*
 * Rego's sprintf as OPA runs it: Go's fmt.Sprintf over the values, where a number is passed as a Go
 * int (when it fits 64 bits), else as a *big.Int (an integer) or a float64, a string as a Go string,
 * and anything else as its Rego text (`[1, "a"]`, `{"a": 1}`, `null`). Hand-written because no
 * JavaScript library formats like Go's fmt (sprintf-js, the SDK's, is C-like and throws where Go
 * prints `%!d(string=x)`). Not supported, so the call is undefined: %p (a Go pointer). Values
 * that are sets print as arrays: the WASM hands them to the host as JSON. See
 * docs/policy-authoring.md#builtins.
 */

import { formatAbsBinary, formatAbsFloat, sharpFloat } from './go-float.js'

type Arg = { t: 'int' | 'big', v: bigint } | { t: 'float', v: number } | { t: 'string', v: string }

interface Flags { plus: boolean, minus: boolean, sharp: boolean, sharpV?: boolean, space: boolean, zero: boolean, wid?: number, prec?: number }

const TYPE: Readonly<Record<Arg['t'], string>> = { int: 'int64', big: '*big.Int', float: 'float64', string: 'string' }
const INT64 = 2n ** 63n

const runes = (s: string): number => [...s].length
const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8')

// Code points JavaScript (Unicode 17 in Node 20) calls letters, marks, numbers, punctuation or
// symbols that Go's Unicode 15.0 tables do not know, so Go's strconv.Quote escapes them. Made by
// comparing Go's strconv.IsPrint over every code point with the test below; the differential test
// (test/policies/builtins.test.ts) catches a Node whose Unicode moved further.
const NEWER_THAN_GO = (
  '88f 897 c5c cdc 1acf-1add 1ae0-1aeb 1b4e-1b4f 1b7f 1c89-1c8a 20c1 2427-2429 2b96 2ffc-2fff ' +
  '31e4-31e5 31ef a7cb-a7cf a7d2 a7d4 a7da-a7dc a7f1 fbc3-fbd2 fd90-fd91 fdc8-fdce 105c0-105f3 ' +
  '10940-10959 10d40-10d65 10d69-10d85 10d8e-10d8f 10ec2-10ec7 10ed0-10ed8 10efa-10efc 11380-11389 ' +
  '1138b 1138e 11390-113b5 113b7-113c0 113c2 113c5 113c7-113ca 113cc-113d5 113d7-113d8 113e1-113e2 ' +
  '116d0-116e3 11b60-11b67 11bc0-11be1 11bf0-11bf9 11db0-11ddb 11de0-11de9 11f5a 13460-143fa ' +
  '16100-16139 16d40-16d79 16ea0-16eb8 16ebb-16ed3 16ff2-16ff6 187f8-187ff 18cff 18d09-18d1e ' +
  '18d80-18df2 1cc00-1ccfc 1cd00-1ceb3 1ceba-1ced0 1cee0-1cef0 1e5d0-1e5fa 1e5ff 1e6c0-1e6de ' +
  '1e6e0-1e6f5 1e6fe-1e6ff 1f6d8 1f777-1f77a 1f8b2-1f8bb 1f8c0-1f8c1 1f8d0-1f8d8 1fa54-1fa57 ' +
  '1fa89-1fa8a 1fa8e-1fa8f 1fabe 1fac6 1fac8 1facd 1fadc 1fadf 1fae9-1faea 1faef 1fbcb-1fbef 1fbfa ' +
  '2b73a-2b73f 2cea2-2cead 2ebf0-2ee5d 323b0-33479 '
).trim().split(' ').map(r => r.split('-').map(h => parseInt(h, 16)))

/** Go's strconv.IsPrint: letters, marks, numbers, punctuation, symbols and the ASCII space. */
const printable = (c: string): boolean => {
  if (c === ' ') return true
  if (!/^[\p{L}\p{M}\p{N}\p{P}\p{S}]$/u.test(c)) return false
  const r = c.codePointAt(0)!
  return !NEWER_THAN_GO.some(([a, b = a]) => r >= a! && r <= b!)
}

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
    case 'v': return f.sharpV === true ? pad(goQuote(cut), f) : pad(cut, f)
    case 's': return pad(cut, f)
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

function formatFloat (v: number, verb: string, f: Flags): string | null {
  if (!'vgGeEfFbxX'.includes(verb)) return null
  const prec = f.prec ?? ('eEfF'.includes(verb) ? 6 : -1)
  let num = 'bxX'.includes(verb) ? formatAbsBinary(v, verb, prec) : formatAbsFloat(v, verb === 'v' ? 'g' : verb, prec)
  if (f.sharp && verb !== 'b') num = sharpFloat(num, verb, prec)
  const sign = v < 0 || Object.is(v, -0) ? '-' : f.plus ? '+' : f.space ? ' ' : ''
  if (sign !== '' && f.zero && !f.minus && f.wid !== undefined && f.wid > num.length + 1) return sign + '0'.repeat(f.wid - num.length - 1) + num
  return pad(sign + num, f)
}

function unsupported (): never {
  throw new Error('sprintf: this form is not supported')
}

function formatArg (a: Arg, verb: string, f: Flags): string {
  if (verb === 'T') return pad(TYPE[a.t], f)
  if (a.t === 'big') return formatBig(a.v, verb, f)
  const out = a.t === 'string' ? formatString(a.v, verb, f) : a.t === 'int' ? formatInt(a.v, verb, f) : formatFloat(a.v as number, verb, f)
  return out ?? `%!${verb}(${TYPE[a.t]}=${formatArg(a, 'v', f)})`
}

/** Go's fmt.Sprintf(format, args...), with Rego values converted as OPA's sprintf converts them. */
// long: one pass over Go's fmt verbs, kept together to read against Go's documentation.
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
    if (i + 1 < s.length && s[i] === '.') {
      i++
      if (afterIndex) good = false
      argIndex()
      if (s[i] === '*') {
        i++
        const p = fromArg()
        if (p === undefined || p < 0) out += '%!(BADPREC)'
        else f.prec = p
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
    else out += formatArg(args[argNum++]!, verb, verb === 'v' && f.sharp ? { ...f, sharp: false, sharpV: true } : f)
  }
  if (!reordered && argNum < args.length) {
    const none: Flags = { plus: false, minus: false, sharp: false, space: false, zero: false }
    out += `%!(EXTRA ${args.slice(argNum).map(a => `${TYPE[a.t]}=${formatArg(a, 'v', none)}`).join(', ')})`
  }
  return out
}
