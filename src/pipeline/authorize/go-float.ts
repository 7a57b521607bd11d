/*
 * Go's strconv formatting of a float64's magnitude, for sprintf.ts: the exact decimal and binary
 * expansions, Go's rounding (half to even on the exact value) and fmt's # flag. The sign, width and
 * padding stay with the verb in sprintf.ts.
 */

/** The binary parts of a finite non-zero double: |v| = mant × 2^exp, mant below 2^53. */
function binaryParts (v: number): { mant: bigint, exp: number } {
  const view = new DataView(new ArrayBuffer(8))
  view.setFloat64(0, Math.abs(v))
  const bits = view.getBigUint64(0)
  const biased = Number((bits >> 52n) & 0x7ffn)
  const frac = bits & ((1n << 52n) - 1n)
  return biased === 0 ? { mant: frac, exp: -1074 } : { mant: frac | (1n << 52n), exp: biased - 1075 }
}

/** The exact decimal expansion of a finite double: `v = 0.digits × 10^dp`, digits without zeros at either end. */
function exactDecimal (v: number): { digits: string, dp: number } {
  if (v === 0) return { digits: '', dp: 0 }
  const { mant, exp } = binaryParts(v)
  const s = exp >= 0 ? (mant << BigInt(exp)).toString() : (mant * 5n ** BigInt(-exp)).toString()
  const point = exp >= 0 ? s.length : s.length + exp
  const digits = s.replace(/0+$/, '')
  return { digits, dp: point }
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
export function formatAbsFloat (v: number, verb: string, prec: number): string {
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

/** strconv's 'b' (mantissa p binary exponent) and 'x' (hexadecimal mantissa, rounded to prec digits) forms of |v|. */
export function formatAbsBinary (v: number, verb: string, prec: number): string {
  if (verb === 'b') {
    const { mant, exp } = v === 0 ? { mant: 0n, exp: -1074 } : binaryParts(v)
    return `${mant}p${exp >= 0 ? '+' : '-'}${Math.abs(exp)}`
  }
  let { mant, exp } = v === 0 ? { mant: 0n, exp: 0 } : binaryParts(v)
  if (v !== 0) exp += 52
  mant <<= 8n // the leading 1, if any, at bit 60
  while (mant !== 0n && (mant & (1n << 60n)) === 0n) { mant <<= 1n; exp-- }
  const bit60 = (1n << 60n) - 1n
  if (prec >= 0 && prec < 15) {
    const shift = BigInt(prec * 4)
    const extra = (mant << shift) & bit60
    mant >>= 60n - shift
    if ((extra | (mant & 1n)) > 1n << 59n) mant++
    mant <<= 60n - shift
    if ((mant & (1n << 61n)) !== 0n) { mant >>= 1n; exp++ }
  }
  let out = `0x${(mant >> 60n) & 1n}`
  mant = (mant << 4n) & ((1n << 64n) - 1n)
  if ((prec < 0 && mant !== 0n) || prec > 0) {
    out += '.'
    for (let i = 0; prec < 0 ? mant !== 0n : i < prec; i++) {
      out += ((mant >> 60n) & 15n).toString(16)
      mant = (mant << 4n) & ((1n << 64n) - 1n)
    }
  }
  out += `p${exp < 0 ? '-' : '+'}${String(Math.abs(exp)).padStart(2, '0')}`
  return verb === 'X' ? out.toUpperCase() : out
}

/** fmt's # flag for floats: always a decimal point, and for %v, %g and %x trailing zeros up to the precision. */
export function sharpFloat (num: string, verb: string, prec: number): string {
  let digits = 'vgGx'.includes(verb) ? (prec === -1 ? 6 : prec) : 0
  let tail = ''
  let point = false
  let nonzero = false
  let body = ''
  for (let i = 0; i < num.length; i++) {
    const c = num[i]!
    if (c === '.') point = true
    else if (c === 'p' || c === 'P' || ((c === 'e' || c === 'E') && verb !== 'x' && verb !== 'X')) { tail = num.slice(i); break }
    else {
      if (c !== '0') nonzero = true
      if (nonzero) digits--
    }
    body += c
  }
  if (!point) {
    if (body === '0') digits--
    body += '.'
  }
  return body + '0'.repeat(Math.max(digits, 0)) + tail
}
