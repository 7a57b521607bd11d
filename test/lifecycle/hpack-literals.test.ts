import t from 'tap'
import { INDEXED_BAD, LITERAL_BAD, LiteralScanner, NOT_HPACK } from '../../src/lifecycle/hpack-literals.js'

// The frame guard's HPACK reader (issue #21): the RFC 7541 Appendix C examples are clean and complete,
// read whole or one octet at a time; NUL, LF and CR are found in raw and Huffman-coded literals; what
// is not HPACK is said so.

/** Scans one block, whole or octet by octet: what it found, and whether it ended on a representation's end. */
function scan (hex: string, bytewise: boolean): { found: number, complete: boolean } {
  const bytes = Buffer.from(hex.replace(/\s/g, ''), 'hex')
  const s = new LiteralScanner()
  s.begin()
  let found = 0
  if (bytewise) for (let i = 0; i < bytes.length; i++) found = s.scan(bytes, i, i + 1)
  else found = s.scan(bytes, 0, bytes.length)
  return { found, complete: s.complete() }
}

const RFC_EXAMPLES: Record<string, string> = {
  // C.3.1 to C.3.3: requests without Huffman coding
  'C.3.1': '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
  'C.3.2': '8286 84be 5808 6e6f 2d63 6163 6865',
  'C.3.3': '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65',
  // C.4.1 to C.4.3: the same with Huffman coding
  'C.4.1': '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff',
  'C.4.2': '8286 84be 5886 a8eb 1064 9cbf',
  'C.4.3': '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf',
  // C.6.1: a response with Huffman coding (date, location)
  'C.6.1': '4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3'
}

t.test('the RFC 7541 examples are clean and complete, whole or octet by octet', async t => {
  for (const [name, hex] of Object.entries(RFC_EXAMPLES)) {
    for (const bytewise of [false, true]) t.strictSame(scan(hex, bytewise), { found: 0, complete: true }, `${name}${bytewise ? ', octet by octet' : ''}`)
  }
})

// [what, block, octet by octet, found]
const CASES: Array<[string, string, boolean, number]> = [
  // 0x00: literal without indexing, new name; 0x10: never indexed; 0x40: incremental indexing; 0x04: indexed name (:path).
  ['CR in a raw value', '00 01 61 03 61 0d 62', false, LITERAL_BAD],
  ['LF in a raw name', '00 03 61 0a 62 01 61', false, LITERAL_BAD],
  ['NUL in a never-indexed value', '10 01 61 03 61 00 62', true, LITERAL_BAD],
  ['LF in a value with an indexed name', '04 03 2f 0a 61', false, LITERAL_BAD],
  ['CR in a literal added to the dynamic table', '40 01 61 03 61 0d 62', false, INDEXED_BAD],
  // Huffman: NUL is 13 bits 1111111111000, padded with ones: ff c7.
  ['NUL in a Huffman-coded value', '00 01 61 82 ff c7', false, LITERAL_BAD],
  // LF is 30 bits 3ffffffc: 11111111 11111111 11111111 111100, then 11 of padding.
  ['LF in a Huffman-coded value', '00 01 61 84 ff ff ff f3', true, LITERAL_BAD],
  ['clean literals in a row', '00 01 61 01 62 00 01 63 01 64', false, 0],
  // What else HTTP/1.1's parser refuses: other control characters in a value, a name that is not a token.
  ['SOH in a raw value', '00 01 61 03 61 01 62', false, LITERAL_BAD],
  ['DEL in a raw value', '00 01 61 03 61 7f 62', true, LITERAL_BAD],
  ['HTAB and obs-text in a value are fine', '00 01 61 03 61 09 e9', false, 0],
  ['a space in a raw name', '00 03 61 20 62 01 61', false, LITERAL_BAD],
  ['a parenthesis in a name added to the dynamic table', '40 03 61 28 62 01 61', true, INDEXED_BAD],
  ['an empty name', '00 00 01 61', false, LITERAL_BAD],
  ['a colon inside a raw name', '00 03 61 3a 62 01 61', false, LITERAL_BAD],
  ['a pseudo-header name as a raw literal is fine', '00 05 3a 70 61 74 68 01 2f', false, 0],
  ['token punctuation in a name is fine', '00 05 61 2d 5f 7e 21 01 61', false, 0],
  // Huffman: SOH is 23 bits 7fffd8 (then 1 bit of padding); 'a b' is a 00011, space 010100, b 100011.
  ['SOH in a Huffman-coded value', '00 01 61 83 ff ff b1', false, LITERAL_BAD],
  ['a space in a Huffman-coded name', '00 83 1a 91 ff 01 61', true, LITERAL_BAD],
  // ':' is 7 bits 1011100: ':a' is fine, 'a:' is not.
  ['a Huffman-coded pseudo-header-like name', '00 82 b8 3f 01 61', false, 0],
  ['a colon inside a Huffman-coded name', '00 82 1d cf 01 61', false, LITERAL_BAD],
  // Not HPACK at all.
  ['index 0', '80', false, NOT_HPACK],
  ['Huffman padding that is not all ones', '00 01 61 81 00', false, NOT_HPACK],
  ['Huffman padding of more than 7 bits', '00 01 61 82 ff ff', false, NOT_HPACK],
  ['EOS inside a string', '00 01 61 84 ff ff ff ff', false, NOT_HPACK],
  ['an integer past 2^31', '0f ff ff ff ff ff 0f', false, NOT_HPACK]
]

t.test('fields HTTP/1.1 would refuse (control characters in values, names that are not tokens), and what is not HPACK', async t => {
  for (const [name, hex, bytewise, found] of CASES) t.equal(scan(hex, bytewise).found, found, name)
  t.equal(scan('00 05 61 62', false).complete, false, 'a block that ends inside a string is not complete')
})
