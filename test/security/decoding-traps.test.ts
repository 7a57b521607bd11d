import t from 'tap'
import { expectForwarded, expectOnlyAllowedReachedFunction, expectRefused, startSecurityHarness, type Refusal } from '../helpers/security.js'

// Issue #20 item 3: paths that are canonical as sent but one decoding, or one Unicode normalisation,
// away from another path. A function (or its framework) that decodes the path a second time reads
// `%252e%252e` as `..`; one that applies NFKC reads `%EF%BC%8F` (fullwidth solidus) as `/`, so the
// policy would have judged /public/... while the function serves /admin. Each is refused with a coded
// 400 and zero bytes upstream, in every spelling generated below; limits.doubleEncodedPath and
// limits.lookalikePath let a deployment that knows its functions accept them.

const AMBIGUOUS: Refusal = { status: 400, code: 'GW_ERR_GUARD_AMBIGUOUS_PATH' }

/** Every upper/lower-case spelling of the hex digits in a `%XX` triplet list ("%2e" → %2e, %2E). */
function caseVariants (encoded: string): string[] {
  let out = ['']
  for (const ch of encoded) out = out.flatMap(p => /[a-f]/i.test(ch) ? [p + ch.toLowerCase(), p + ch.toUpperCase()] : [p + ch])
  return [...new Set(out)]
}

/** The UTF-8 percent-encoding of one code point (`U+FF0F` → `%EF%BC%8F`). */
const utf8 = (cp: number): string => [...Buffer.from(String.fromCodePoint(cp), 'utf8')].map(b => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('')
/** Each `%` of an encoding encoded once more, `depth` times (`%2f` → `%252f` → `%25252f`). */
const encodeAgain = (encoded: string, depth: number): string => depth === 0 ? encoded : encodeAgain(encoded.replace(/%/g, '%25'), depth - 1)

// "." "/" "\" encoded, then encoded again at depth 1..3, in every hex case: %252e, %252E, %25252F, ...
const DOUBLE: string[] = ['%2e', '%2f', '%5c'].flatMap(e => [1, 2, 3].flatMap(d => caseVariants(encodeAgain(e, d))))
// IIS %u forms of ".", "/", "\" and the fullwidth solidus, encoded once more so they pass the first decoding.
const IIS: string[] = ['%u002e', '%u002f', '%u005c', '%uff0f', '%U2215'].map(e => encodeAgain(e, 1))

// Look-alikes: NFKC folds these to "/", "." or "\" (or text containing them); the last six no
// normalisation folds, but Windows best-fit conversion and confusable matching read them as separators.
const LOOKALIKES = [
  0xFF0F, 0xFF0E, 0xFF3C, 0xFE68, 0xFE52, 0x2024, 0x2025, 0x2026, 0xFE19, 0xFE30, 0x2488, 0x2100, 0x33C2,
  0x2215, 0x2044, 0x29F8, 0x29F5, 0x29F9, 0x2216
]
const LOOKALIKE_ENCODINGS: string[] = LOOKALIKES.flatMap(cp => [...new Set([utf8(cp), utf8(cp).toLowerCase()])])
// The same look-alikes encoded twice (a function that decodes twice then normalises).
const LOOKALIKES_TWICE: string[] = LOOKALIKES.map(cp => encodeAgain(utf8(cp), 1))

// Where the trap sits: between the public prefix and a protected path, as a whole segment, in a name.
const placements = (trap: string): string[] => [
  `/public/${trap}${trap}/admin`, `/public${trap}..${trap}admin`, `/public/x${trap}y`, `/public/${trap}`
]

const h = await startSecurityHarness(t)

t.test('double-encoded ".", "/" and "\\" are refused, at every depth and in every case', async t => {
  t.ok(DOUBLE.length >= 18, `${DOUBLE.length} spellings`)
  for (const trap of [...DOUBLE, ...IIS]) {
    for (const target of placements(trap)) await expectRefused(t, h, target, h.head('GET', target), AMBIGUOUS)
  }
})

t.test('Unicode look-alikes of "/", "." and "\\" are refused, encoded once or twice', async t => {
  for (const trap of [...LOOKALIKE_ENCODINGS, ...LOOKALIKES_TWICE]) {
    for (const target of placements(trap)) await expectRefused(t, h, target, h.head('GET', target), AMBIGUOUS)
  }
})

t.test('neighbours of the traps still pass, byte for byte', async t => {
  // A literal "%" in a name (%25 before anything but an encoded separator), accented letters,
  // U+3002 IDEOGRAPHIC FULL STOP (no normalisation makes it "."), a real dot inside a name.
  for (const target of ['/public/100%25', '/public/a%2541', '/public/a%2520b', '/public/caf%C3%A9', '/public/%E3%80%82',
    '/public/%E6%97%A5%E6%9C%AC', '/public/file.json', '/public/a%25zz']) {
    await expectForwarded(t, h, target, h.head('GET', target), { target })
  }
  expectOnlyAllowedReachedFunction(t, h)
})

t.test('limits.doubleEncodedPath and limits.lookalikePath: allow forward them as sent', async t => {
  const open = await startSecurityHarness(t, {
    configure: raw => { raw.limits = { ...raw.limits, doubleEncodedPath: 'allow', lookalikePath: 'allow' } }
  })
  for (const target of ['/public/%252e%252e/admin', '/public/x%255Cy', '/public/%EF%BC%8F', '/public/a%E2%88%95b', '/public/%25EF%25BC%258F']) {
    await expectForwarded(t, open, target, open.head('GET', target), { target })
  }
  // Each option opens only its own check.
  const half = await startSecurityHarness(t, { configure: raw => { raw.limits = { ...raw.limits, lookalikePath: 'allow' } } })
  await expectRefused(t, half, 'double encoding with only look-alikes allowed', half.head('GET', '/public/%252f'), AMBIGUOUS)
  await expectForwarded(t, half, 'look-alike allowed', half.head('GET', '/public/%EF%BC%8F'), { target: '/public/%EF%BC%8F' })
})
