/*
 * The part of HPACK (RFC 7541) the HTTP/2 frame guard needs (h2-frame-guard.ts): find a literal header
 * field that HTTP/1.1's parser would refuse, in a header block that arrives in pieces (frames split
 * across TLS reads, CONTINUATION frames), without keeping the block or the dynamic table: a value with
 * a control character other than HTAB (NUL, LF and CR among them: h2 -> h1 desync), or a name with an
 * octet that is not a token character (RFC 9110 §5.1), a colon past its first octet (a pseudo-header's
 * is its first). nghttp2 drops such a field silently and serves the request; upper-case names it resets
 * itself, so they are left to it.
 *
 * Only literals need reading: an indexed field (or a literal's indexed name) is a static-table entry or
 * a dynamic-table entry, and the dynamic table only gains entries through literals with incremental
 * indexing (§6.2.1), which the guard refuses (with the whole connection) when they are bad. So integers
 * are decoded only to skip them, and strings are read byte by byte, Huffman-decoded when so coded.
 *
 * Written by hand: the HPACK decoders on npm (hpack.js, hpack) keep the dynamic table and allocate each
 * field as a string, and need the whole block at once; this is a state machine over bytes that
 * allocates nothing, for the bytes nghttp2 decodes right after.
 */

/** What a header block held, so far; bits. */
export const LITERAL_BAD = 1 // a literal not added to the dynamic table was not a valid field
export const INDEXED_BAD = 2 // a literal with incremental indexing was not: later blocks could refer to it
export const NOT_HPACK = 4 // not a valid encoding (nghttp2 would end the connection, COMPRESSION_ERROR)

/*
 * RFC 7541 Appendix B, the code length of each symbol 0..255 and EOS (256). The codes themselves are
 * canonical (in order of length, then symbol, each the previous plus one, shifted to its length), as
 * the table in the RFC shows, so the lengths are the whole table. Tested against the RFC's examples.
 */
const CODE_LENGTHS = (
  '13,23,28,28,28,28,28,28,28,24,30,28,28,30,28,28,28,28,28,28,28,28,30,28,28,28,28,28,28,28,28,28,' +
  '6,10,10,12,13,6,8,11,10,10,8,11,8,6,6,6,5,5,5,6,6,6,6,6,6,6,7,8,15,6,12,10,' +
  '13,6,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,7,8,7,8,13,19,13,14,6,' +
  '15,5,6,5,6,5,6,6,6,5,7,7,6,6,6,5,6,7,6,5,5,6,7,7,7,7,7,15,11,14,13,28,' +
  '20,22,20,20,22,22,22,23,22,23,23,23,23,23,24,23,24,24,22,23,24,23,23,23,23,21,22,23,22,23,23,24,' +
  '22,21,20,22,22,23,23,21,23,22,22,24,21,22,23,23,21,21,22,21,23,22,23,23,20,22,22,22,23,22,22,23,' +
  '26,26,20,19,22,23,22,25,26,26,26,27,27,26,24,25,19,21,26,27,27,26,27,24,21,21,26,26,28,27,27,27,' +
  '20,24,20,21,22,21,21,23,22,22,25,25,24,24,26,23,26,27,26,26,27,27,27,27,27,28,27,27,27,27,27,26,30'
).split(',').map(Number)

/** Octets a field value must not hold: the control characters but HTAB, and DEL (RFC 9110 §5.5). */
const BAD_IN_VALUE = Uint8Array.from({ length: 256 }, (_, b) => (b < 0x20 && b !== 0x09) || b === 0x7f ? 1 : 0)
const TOKEN_PUNCTUATION = "!#$%&'*+-.^_`|~"
const COLON = 0x3a
/** Octets a field name must not hold: all but token characters; upper case and the colon are judged apart. */
const BAD_IN_NAME = Uint8Array.from({ length: 256 }, (_, b) => {
  const c = String.fromCharCode(b)
  return /[a-zA-Z0-9]/.test(c) || TOKEN_PUNCTUATION.includes(c) || b === COLON ? 0 : 1
})

// The decoder reads 4 bits at a time: a state is a node of the code tree, and each (state, nibble)
// gives the next state and what was decoded on the way (the shortest code has 5 bits: one symbol at most).
const EMITS_BAD = 0x100 // decoded an octet no value may hold
const FAILS = 0x200 // decoded EOS, which a string must never contain (§5.2)
const EMITS = 0x400 // decoded a symbol
const EMITS_BAD_NAME = 0x800 // decoded an octet no name may hold
const EMITS_COLON = 0x1000

/**
 * The (state, nibble) table, 16 entries per node, and the states a string may end in: at a symbol's
 * end, or fewer than 8 bits after it that are all ones, EOS's prefix (§5.2). Built once, at load.
 */
function buildDecoder (): { table: Uint16Array, accepting: Uint8Array } {
  const order = CODE_LENGTHS.map((_, s) => s).sort((a, b) => CODE_LENGTHS[a]! - CODE_LENGTHS[b]! || a - b)
  // Internal nodes: children (>= 0 a node, < 0 a leaf: -(symbol + 1)), depth and whether all bits were 1.
  const child = new Int32Array(512).fill(-1000)
  const depth = [0]
  const ones = [true]
  let code = 0
  let length = CODE_LENGTHS[order[0]!]!
  order.forEach((symbol, i) => {
    const len = CODE_LENGTHS[symbol]!
    if (i > 0) { code = (code + 1) * 2 ** (len - length); length = len }
    let node = 0
    for (let bit = len - 1; bit > 0; bit--) {
      const b = Math.floor(code / 2 ** bit) % 2
      if (child[node * 2 + b] === -1000) {
        child[node * 2 + b] = depth.length
        depth.push(depth[node]! + 1)
        ones.push(ones[node]! && b === 1)
      }
      node = child[node * 2 + b]!
    }
    child[node * 2 + code % 2] = -(symbol + 1)
  })
  const table = new Uint16Array(depth.length * 16)
  for (let state = 0; state < depth.length; state++) {
    for (let nibble = 0; nibble < 16; nibble++) {
      let node = state
      let flags = 0
      for (let bit = 3; bit >= 0; bit--) {
        const next = child[node * 2 + ((nibble >> bit) & 1)]!
        if (next >= 0) { node = next; continue }
        const symbol = -next - 1
        if (symbol === 256) flags |= FAILS
        else {
          flags |= EMITS
          if (BAD_IN_VALUE[symbol] === 1) flags |= EMITS_BAD
          if (BAD_IN_NAME[symbol] === 1) flags |= EMITS_BAD_NAME
          if (symbol === COLON) flags |= EMITS_COLON
        }
        node = 0
      }
      table[state * 16 + nibble] = node | flags
    }
  }
  return { table, accepting: Uint8Array.from(depth, (d, node) => ones[node]! && d < 8 ? 1 : 0) }
}

const { table: DECODE, accepting: ACCEPTING } = buildDecoder()

// Where the scanner is in a representation (§6).
const AT_FIELD = 0 // the first byte of a representation
const IN_INTEGER = 1 // an integer's continuation bytes (§5.1)
const AT_STRING = 2 // a string's first byte: Huffman bit and length
const IN_STRING = 3 // a string's octets
// What the integer being read is.
const SKIPPED = 0 // an index, or a table size update
const NAME_INDEX = 1 // a literal's indexed name: its value follows
const STRING_LENGTH = 2
// An integer beyond this is not one nghttp2 decodes (it refuses lengths and indexes past 32 bits).
const MAX_INTEGER = 2 ** 31

/** Reads header blocks; one per connection (a connection's blocks never interleave, RFC 9113 §4.3). */
export class LiteralScanner {
  /** What the block held so far (LITERAL_BAD, INDEXED_BAD, NOT_HPACK). */
  found = 0
  private where = AT_FIELD
  private integer = SKIPPED
  private value = 0
  private shift = 0
  private indexing = false // the literal being read is added to the dynamic table
  private readingName = false
  private bad = false // the literal being read is not a valid field so far
  private octets = 0 // octets of the name being read so far (a colon is a pseudo-header's only as the first)
  private left = 0 // octets of the string still to come
  private huffman = false
  private state = 0 // Huffman decoder state

  /** Starts a header block. */
  begin (): void {
    this.found = 0
    this.where = AT_FIELD
  }

  /** Whether the block may end here (not inside a representation). */
  complete (): boolean {
    return this.where === AT_FIELD
  }

  /** Reads `bytes[start, end)`, the next octets of the block; returns `found`. */
  scan (bytes: Uint8Array, start: number, end: number): number {
    let i = start
    while (i < end) {
      if (this.where === IN_STRING) { i = this.string(bytes, i, end); continue }
      const b = bytes[i++]!
      if (this.where === AT_FIELD) this.field(b)
      else if (this.where === IN_INTEGER) {
        this.value += (b & 0x7f) * 2 ** this.shift
        this.shift += 7
        if (this.value > MAX_INTEGER) { this.found |= NOT_HPACK; this.where = AT_FIELD; return this.found }
        if ((b & 0x80) === 0) this.integerRead()
      } else this.stringStart(b & 0x80, b & 0x7f, 0x7f)
    }
    return this.found
  }

  private field (b: number): void {
    if ((b & 0x80) !== 0) { // indexed field (§6.1); index 0 is not valid
      if ((b & 0x7f) === 0) this.found |= NOT_HPACK
      this.prefix(b & 0x7f, 0x7f, SKIPPED)
    } else if ((b & 0x40) !== 0) { // literal with incremental indexing (§6.2.1)
      this.literal(b & 0x3f, 0x3f, true)
    } else if ((b & 0x20) !== 0) { // dynamic table size update (§6.3)
      this.prefix(b & 0x1f, 0x1f, SKIPPED)
    } else { // literal without indexing or never indexed (§6.2.2, §6.2.3)
      this.literal(b & 0x0f, 0x0f, false)
    }
  }

  private literal (index: number, max: number, indexing: boolean): void {
    this.indexing = indexing
    this.bad = false
    if (index === 0) { this.readingName = true; this.where = AT_STRING } else this.prefix(index, max, NAME_INDEX)
  }

  /** An integer's first byte held `bits` of a `max`-bit prefix: done, or continued. */
  private prefix (bits: number, max: number, integer: number): void {
    this.integer = integer
    if (bits < max) { this.value = bits; this.integerRead(); return }
    this.value = max
    this.shift = 0
    this.where = IN_INTEGER
  }

  private integerRead (): void {
    if (this.integer === SKIPPED) this.where = AT_FIELD
    else if (this.integer === NAME_INDEX) { this.readingName = false; this.where = AT_STRING } else this.stringLength(this.value)
  }

  private stringStart (huffman: number, bits: number, max: number): void {
    this.huffman = huffman !== 0
    this.prefix(bits, max, STRING_LENGTH)
  }

  private stringLength (length: number): void {
    this.left = length
    this.state = 0
    this.octets = 0
    this.where = IN_STRING
    if (length === 0) this.stringRead()
  }

  private string (bytes: Uint8Array, start: number, end: number): number {
    const stop = Math.min(end, start + this.left)
    if (this.readingName) this.name(bytes, start, stop)
    else if (this.huffman) {
      let state = this.state
      let flags = 0
      for (let i = start; i < stop; i++) {
        const b = bytes[i]!
        const high = DECODE[(state << 4) | (b >> 4)]!
        const low = DECODE[((high & 0xff) << 4) | (b & 0x0f)]!
        flags |= high | low
        state = low & 0xff
      }
      this.state = state
      if ((flags & EMITS_BAD) !== 0) this.bad = true
      if ((flags & FAILS) !== 0) this.found |= NOT_HPACK
    } else {
      for (let i = start; i < stop; i++) {
        if (BAD_IN_VALUE[bytes[i]!] === 1) { this.bad = true; break }
      }
    }
    this.left -= stop - start
    if (this.left === 0) this.stringRead()
    return stop
  }

  /** A name's octets (names are short, and most come from the static table): symbol by symbol. */
  private name (bytes: Uint8Array, start: number, stop: number): void {
    for (let i = start; i < stop; i++) {
      const b = bytes[i]!
      if (!this.huffman) {
        if (BAD_IN_NAME[b] === 1 || (b === COLON && this.octets > 0)) this.bad = true
        this.octets++
        continue
      }
      const high = DECODE[(this.state << 4) | (b >> 4)]!
      const low = DECODE[((high & 0xff) << 4) | (b & 0x0f)]!
      this.nameSymbol(high)
      this.nameSymbol(low)
      this.state = low & 0xff
    }
  }

  private nameSymbol (entry: number): void {
    if ((entry & FAILS) !== 0) this.found |= NOT_HPACK
    if ((entry & EMITS) === 0) return
    if ((entry & EMITS_BAD_NAME) !== 0 || ((entry & EMITS_COLON) !== 0 && this.octets > 0)) this.bad = true
    this.octets++
  }

  private stringRead (): void {
    // A Huffman string must end on a symbol, or in at most 7 bits of EOS's prefix (all ones).
    if (this.huffman && ACCEPTING[this.state] === 0) this.found |= NOT_HPACK
    if (this.readingName) {
      if (this.octets === 0) this.bad = true // a name has at least one octet
      this.readingName = false
      this.where = AT_STRING
      return
    }
    if (this.bad) this.found |= this.indexing ? INDEXED_BAD : LITERAL_BAD
    this.where = AT_FIELD
  }
}
