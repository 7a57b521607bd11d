import fc from 'fast-check'

/*
 * Arguments for every builtin a gateway policy may call (policies/capabilities.json), and one Rego
 * policy that calls the builtin a case names, so the same cases can be judged by the gateway's WASM
 * engine and by `opa eval`. Sets cannot travel in JSON input: an argument {"$set": [...]} is turned
 * into a set by the policy. The result is reported with its type and with sets sorted, because the
 * two runtimes may iterate a set in different orders.
 */

export interface BuiltinDecl { name: string, infix?: string, decl: { args?: Array<{ type: string }>, variadic?: unknown } }
export interface BuiltinCase { fn: string, args: unknown[] }

/** Not callable with generated arguments, and why; each is exercised by the entrypoint differential. */
export const NOT_GENERATED: Readonly<Record<string, string>> = {
  assign: 'the := operator, not a function',
  eq: 'the = unification operator, not a function',
  print: 'writes to the log, returns nothing',
  'internal.print': 'print\'s implementation',
  'internal.test_case': 'only meaningful to opa test',
  'rego.metadata.chain': 'reads the calling rule\'s annotations; used by every shipped policy',
  'rego.metadata.rule': 'reads the calling rule\'s annotations; used by every shipped policy',
  'time.now_ns': 'the clock: no two runtimes agree on it'
}

export const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g

const set = (xs: unknown[]): unknown => ({ $set: xs })

const strings = [
  '', 'a', 'abc', 'Hello, World', '  padded\t\n', 'ÄÖü ß', '日本語', '🙂x', '\ud800', 'a\udc00b', 'a\u0000b',
  '-', '+5', '5.', '.5', '1e3', '0x1F', '007', ' 12 ', '1_000', 'NaN', 'Infinity', '-0', '12345678901234567890123',
  'true', 'null', '[1,2]', '{"b":1,"a":[true,null]}', '"\\ud800"', '"\\u00e9"', '{"a":1,}',
  'YWJj', 'YWJ', 'YW==', 'YQ', 'YQ=', '_-8', '-_', 'a b', '/+==', '4pyTIMOgIGxhIG1vZGU=',
  '*', 'a*', '*.example.com', 'api.example.com', '[a-', '{a,b}', '\\', 'a?c', '**', '[!a]b', '[^a]',
  '(?i)abc', '(?P<n>a)b', 'a(b)c', '[', '\\d+', 'a|b', '^$', '.', '\\pL', '(?s).', 'x*',
  '10.0.0.0/8', '10.1.2.3', '::ffff:10.1.2.3', '::ffff:10.0.0.0/104', '2001:db8::/32', '2001:db8::1', '0.0.0.0/0', '10.0.0.256',
  '%v', '%d', '%s', '%s %s', '%', '%q', '%x', '%5.2f', '%!', '%%', 'ab%', '%[1]s', '%t', '%e', '%03d', '%-4s|', '%T',
  'key: 007', 'a: 1\nb: [x, y]', 'n: 0o17', 'n: 1e3', '- 1\n- 010', 'x: .inf', 'x: ~', 'a: &x 1\nb: *x', ': -', 'x: "\\ud800"',
  ',', ', ', '.', ' '
]
const numbers = [0, -0, 1, -1, 2, 3, 7, 8, 10, 16, 36, 37, 255, 0.5, -2.5, 3.5, 0.1, 0.2, 1.1, 1e-7, 5e-324, 1e21, 1e300, -1e300,
  2 ** 31, 2 ** 53, 2 ** 53 + 2, 2 ** 63, -(2 ** 63), 2 ** 64, 123456789.123]
const arrays = [[], [1, 2, 3], ['a', 'b'], ['b', 'a', 'b'], [1, 'a', null, true], [[1], [2, [3]]], [0.1, 0.2], [1e300, 1e300],
  ['a', ['b', 'c']], [{ a: 1 }], ['%s', 1], ['x', 'y', 'z'], [''], [2, 1.5, -3]]
const objects = [{}, { a: 1 }, { a: { b: 2, c: [3] } }, { b: 1, a: 2, c: 3 }, { x: [1, 2], y: null }, { 1: 'one' },
  { a: 'x', b: 'y' }, { a: ['b'], b: ['c'], c: [] }, { é: 1, e: 2 }, { '': 0 }]
const sets = [set([]), set([1, 2, 3]), set(['a', 'b']), set([set([1]), set([1, 2])]), set([1, 'a', null])]
const others = [null, true, false]

const pool = (type: string): unknown[] => {
  switch (type) {
    case 'string': return strings
    case 'number': return numbers
    case 'boolean': return [true, false]
    case 'null': return [null]
    case 'array': return arrays
    case 'object': return objects
    case 'set': return sets
    default: return [...strings, ...numbers, ...arrays, ...objects, ...sets, ...others]
  }
}

const anyValue: fc.Arbitrary<unknown> = fc.letrec(tie => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true },
    fc.constantFrom(...pool('any')),
    fc.string({ unit: 'binary', maxLength: 6 }),
    fc.string({ unit: 'grapheme', maxLength: 6 }),
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.integer(),
    fc.array(tie('value'), { maxLength: 3 }),
    fc.dictionary(fc.string({ maxLength: 3 }), tie('value'), { maxKeys: 3 }))
})).value

/** Mostly values of the declared type, often edge values, sometimes anything (a wrong type). */
const argument = (type: string): fc.Arbitrary<unknown> => fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...pool(type)) },
  { weight: 2, arbitrary: type === 'string' ? fc.string({ unit: 'binary', maxLength: 8 }) : type === 'number' ? fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true })) : anyValue },
  { weight: 2, arbitrary: anyValue }
)

const FORMATS = ['%v', '%v %v', '%d %s', 'x=%v', '%.3g', '%10.4e', '%+d', '% d', '%#x', '%08.3f', '%-8d|', '%o', '%O', '%b', '%c',
  '%U', '%*d', '%.*f', '%[2]d %[1]s', '%[3]v', '%.0f', '%.1f', '%g', '%G', '%E', '%X', '%#o', '%x', '% x', '%.2s', '%6.2v', '%-5q', '%+q', '%#q']

// Arguments the declared types do not reach: the shapes a builtin takes inside "any".
const SPECIAL: Readonly<Record<string, fc.Arbitrary<unknown[]>>> = {
  sprintf: fc.tuple(
    fc.oneof(fc.constantFrom(...strings.filter(s => s.includes('%')), ...FORMATS), fc.array(fc.constantFrom(...FORMATS, 'x', ' ', '%', '.', '5', '-', '+', '#', '0', '[2]', '*'), { maxLength: 5 }).map(a => a.join(''))),
    fc.array(fc.oneof(anyValue, fc.constantFrom(0.5, 2.5, 0.125, 1.005, 1e6, 123456.5, 1e-5, 65, -7, 0x10ffff + 1, 2 ** 63, -(2 ** 63), 'é')), { maxLength: 3 })),
  // Not a set: WASM joins a set's members in its own iteration order, OPA in sorted order
  // (docs/policy-authoring.md#builtins says to sort() first).
  concat: fc.tuple(fc.constantFrom(',', '', ' / '), fc.oneof(fc.array(fc.constantFrom(...strings), { maxLength: 4 }), anyValue.filter(v => !Array.isArray(v) && !(v !== null && typeof v === 'object' && '$set' in v)))),
  'glob.match': fc.tuple(fc.constantFrom(...strings), fc.oneof(fc.constant(null), fc.constant([]), fc.constant(['.']), fc.constant(['.', '/'])), fc.constantFrom(...strings)),
  'graph.reachable': fc.tuple(fc.constantFrom(...objects), fc.oneof(fc.array(fc.constantFrom('a', 'b', 'c', 'z')), fc.constantFrom(...sets))),
  'json.filter': fc.tuple(fc.constantFrom(...objects), fc.array(fc.oneof(fc.constantFrom('a', 'a/b', '', 'x/0', '/', 'b'), fc.array(fc.constantFrom('a', 'b', 0, ''))), { maxLength: 3 })),
  'json.remove': fc.tuple(fc.constantFrom(...objects), fc.array(fc.oneof(fc.constantFrom('a', 'a/b', '', 'x/0', '/', 'b'), fc.array(fc.constantFrom('a', 'b', 0, ''))), { maxLength: 3 })),
  'strings.replace_n': fc.tuple(fc.dictionary(fc.constantFrom('a', 'b', '', 'ab', 'é'), fc.constantFrom('x', '', 'b', 1), { maxKeys: 3 }), fc.constantFrom(...strings)),
  // Bounds far apart make both runtimes build an array of that size: neither returns in useful time.
  'numbers.range': fc.tuple(fc.oneof(fc.integer({ min: -20, max: 20 }), fc.constantFrom(0.5, -2.5, '1', null)), fc.oneof(fc.integer({ min: -20, max: 20 }), fc.constantFrom(1.5, 3.5, [], 'x'))),
  // OPA shifts big integers: a shift by 2^63 allocates without end.
  'bits.lsh': fc.tuple(fc.constantFrom(...pool('any')), fc.oneof(fc.integer({ min: -2, max: 70 }), fc.constantFrom(0.5, '1', null))),
  'object.union_n': fc.array(fc.constantFrom(...objects), { maxLength: 3 }).map(a => [a]),
  'object.get': fc.tuple(fc.constantFrom(...objects), fc.oneof(fc.constantFrom('a', 'x', ['a', 'b'], ['x', 0], []), anyValue), anyValue)
}

// Cases that found divergences once: kept so every run checks them, whatever the seed.
export const REGRESSIONS: readonly BuiltinCase[] = ([
  { fn: 'sprintf', args: ['%v', [null]] }, { fn: 'sprintf', args: ['%v', [[1, 'a']]] }, { fn: 'sprintf', args: ['%v', [{ b: 1, a: 2 }]] },
  { fn: 'sprintf', args: ['%q', ['a"b']] }, { fn: 'sprintf', args: ['100%', []] }, { fn: 'sprintf', args: ['%d', ['x']] },
  { fn: 'sprintf', args: ['%s and %s', ['a']] }, { fn: 'sprintf', args: ['%d', [1.5]] }, { fn: 'sprintf', args: ['%v', [1e21]] },
  { fn: 'regex.split', args: ['(?i)b', 'aBc'] }, { fn: 'regex.split', args: ['(?P<n>b)', 'abc'] }, { fn: 'regex.split', args: ['(b)', 'abc'] },
  { fn: 'json.unmarshal', args: ['"\\ud800"'] }, { fn: 'json.unmarshal', args: ['5.'] }, { fn: 'to_number', args: ['-'] },
  { fn: 'to_number', args: ['+5'] }, { fn: 'base64.decode', args: ['YQ'] }, { fn: 'yaml.unmarshal', args: ['n: 010'] },
  { fn: 'glob.match', args: ['[a-', null, 'a'] }, { fn: 'indexof', args: ['', ''] }, { fn: 'object.union_n', args: [[]] },
  { fn: 'json.marshal', args: [{ b: 1, a: 2 }] }, { fn: 'plus', args: [0.1, 0.2] }, { fn: 'json.is_valid', args: ['true'] },
  { fn: 'replace', args: ['abc', '', 'x'] }, { fn: 'json.remove', args: [{ a: 1 }, ['']] }, { fn: 'json.filter', args: [{ a: 1 }, ['']] },
  { fn: 'format_int', args: [1e300, 10] }, { fn: 'format_int', args: [2 ** 64, 16] },
  { fn: 'net.cidr_contains', args: ['10.0.0.0/8', '::ffff:10.1.2.3'] }, { fn: 'net.cidr_intersects', args: ['10.0.0.0/8', '::ffff:10.0.0.0/104'] },
  { fn: 'regex.match', args: ['^a\u0000x$', 'a'] }, { fn: 'ceil', args: [-0.5] }, { fn: 'floor', args: [-0.5] }, { fn: 'div', args: [0, 0] }, { fn: 'round', args: [-3.891282352195617e+263] },
  { fn: 'sprintf', args: ['%.*f%U%.', [{}, 'é']] }
] as BuiltinCase[]).map(c => ({ fn: c.fn, args: wellFormed(c.args) as unknown[] }))

/**
 * Lone surrogates replaced by U+FFFD, as OPA's JSON decoder does to its input. The gateway's engine
 * refuses such input outright (its JSON parser does): that is a property of the input path, tested
 * on its own, so builtin cases give both runtimes the same, well-formed, arguments. Strings that
 * only become lone surrogates inside the policy (the escape "\\ud800" in JSON text) stay.
 */
export function wellFormed (v: unknown): unknown {
  if (typeof v === 'string') return v.replace(LONE_SURROGATE, '\ufffd')
  if (Array.isArray(v)) return v.map(wellFormed)
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [wellFormed(k), wellFormed(x)]))
  return v
}

/**
 * Divergences not resolved, each documented in docs/policy-authoring.md#builtins: the WASM reads
 * these strings as C strings, cut at the first NUL. A case they match is reported, not failed.
 */
export const KNOWN_DIVERGENCES: ReadonlyArray<{ fn: string, when: (args: unknown[]) => boolean, why: string }> = [
  { fn: 'regex.match', when: a => typeof a[0] === 'string' && a[0].includes('\u0000'), why: 'a pattern with a NUL is cut at the NUL' },
  { fn: 'net.cidr_contains', when: a => a.some(x => JSON.stringify(x).includes('\\u0000')), why: 'an address or CIDR with a NUL is cut at the NUL' },
  { fn: 'net.cidr_intersects', when: a => a.some(x => JSON.stringify(x).includes('\\u0000')), why: 'a CIDR with a NUL is cut at the NUL' },
  // OPA (Go's net.ParseIP) takes ::ffff:10.1.2.3 for 10.1.2.3; the WASM keeps them apart. The
  // gateway hands policies IPv4 client addresses as dotted quads (issue #18's normalisation).
  ...['net.cidr_contains', 'net.cidr_intersects'].map(fn => ({
    fn, when: (a: unknown[]) => a.some(x => typeof x === 'string' && /::ffff:/i.test(x)), why: 'an IPv4-mapped IPv6 address and its IPv4 form are different addresses'
  })),
  // Each engine has its own Unicode tables (the WASM's RE2, the SDK's JavaScript RegExp, Go's for OPA),
  // of different Unicode versions: a character assigned since the oldest of them, such as U+3239A of
  // CJK Extension H (Unicode 15), is a letter to OPA (\pL matches it) and not to the WASM's RE2.
  // Recent additions are almost all outside the Basic Multilingual Plane.
  ...['regex.match', 'regex.find_n', 'regex.find_all_string_submatch_n', 'regex.template_match', 'regex.split', 'regex.replace'].map(fn => ({
    fn,
    when: (a: unknown[]) => a.some(x => typeof x === 'string' && /\\[pP]/.test(x)) && a.some(x => typeof x === 'string' && /[\u{10000}-\u{10FFFF}]/u.test(x)),
    why: 'a Unicode class (\\p) and a character outside the Basic Multilingual Plane: the engines\' Unicode tables are of different versions'
  }))
]

/** `perBuiltin` generated cases for each builtin of `builtins` that can be generated, from `seed`. */
export function generateCases (builtins: readonly BuiltinDecl[], perBuiltin: number, seed: number): BuiltinCase[] {
  const cases: BuiltinCase[] = []
  builtins.forEach((b, i) => {
    if (b.name in NOT_GENERATED) return
    const types = (b.decl.args ?? []).map(a => a.type)
    const args = SPECIAL[b.name] ?? fc.tuple(...types.map(argument))
    for (const a of fc.sample(args, { numRuns: perBuiltin, seed: seed + i })) cases.push({ fn: b.name, args: wellFormed(a) as unknown[] })
  })
  return cases
}

// Operators are called as they are written; the rest by name.
const EXPRESSION: Readonly<Record<string, string>> = {
  and: 'a0 & a1', or: 'a0 | a1', plus: 'a0 + a1', minus: 'a0 - a1', mul: 'a0 * a1', div: 'a0 / a1', rem: 'a0 % a1',
  equal: 'a0 == a1', neq: 'a0 != a1', lt: 'a0 < a1', lte: 'a0 <= a1', gt: 'a0 > a1', gte: 'a0 >= a1',
  'internal.member_2': 'a0 in a1',
  // walk enumerates in each runtime's own object and set order, as any iteration does: compared sorted.
  walk: 'sort([[[inner(k) | some k in p], canon(v)] | walk(a0, [p, v])])', 'internal.template_string': '$"<{a0}|{a1}>"'
}

/** The policy: `data.diff.out` is {t: type, v: value} of the named builtin's result, undefined when it is. */
export function builtinPolicy (builtins: readonly BuiltinDecl[]): string {
  const rules = builtins.filter(b => !(b.name in NOT_GENERATED)).map(b => {
    const n = b.name === 'internal.template_string' ? 2 : (b.decl.args ?? []).length
    const bind = Array.from({ length: n }, (_, j) => `\ta${j} := arg(input.args[${j}])`).join('\n')
    const call = b.name === 'internal.member_3'
      ? '\ta0, a1 in a2\n\tv := true'
      : `\tv := ${EXPRESSION[b.name] ?? `${b.name}(${Array.from({ length: n }, (_, j) => `a${j}`).join(', ')})`}`
    return `out := {"t": type_name(v), "v": canon(v)} if {\n\tinput.fn == ${JSON.stringify(b.name)}\n${bind}\n${call}\n}`
  })
  return [
    'package diff',
    '',
    'arg(a) := {x | some x in a["$set"]} if {\n\tis_object(a)\n\tis_array(a["$set"])\n} else := a',
    '',
    // Rego has no recursion: sets are sorted two levels deep, enough for these arguments.
    'canon(x) := sort([inner(y) | some y in x]) if is_set(x)\n\ncanon(x) := x if not is_set(x)',
    '',
    'inner(x) := sort(x) if is_set(x)\n\ninner(x) := x if not is_set(x)',
    '',
    ...rules.flatMap(r => [r, ''])
  ].join('\n')
}
