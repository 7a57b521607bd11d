import { INDEXED_BAD, LITERAL_BAD, LiteralScanner, NOT_HPACK } from './hpack-literals.js'
import { constants } from 'node:http2'
import { createSendState, FRAME, MAX_WINDOW } from './h2-send-state.js'

/*
 * The client's HTTP/2 frames, read between the TLS socket and nghttp2 (issue #21), for what Node's
 * HTTP/2 session lets through or answers wrongly, and no option of it changes:
 * - a header field HTTP/1.1 would refuse (a control character in its value, NUL, LF and CR among them;
 *   a name that is not a token): nghttp2 calls Node's invalid-header callback, which drops the field
 *   and serves the request (node_http2.cc, OnInvalidHeader). Here the stream is refused instead
 *   (RFC 9113 §8.2.1: malformed), or the connection when the field went into the HPACK dynamic table;
 * - a PING ACK for no PING of the gateway's: Node makes it a session error; RFC 9113 §6.7 has it ignored;
 * - a WINDOW_UPDATE taking a send window past 2^31-1 (§6.9.1): Node 20 ends the connection with
 *   INTERNAL_ERROR, Node 24 also for a stream's window; here FLOW_CONTROL_ERROR, for that stream alone
 *   when it is a stream's window.
 * Every other byte is passed on as it came. Only frame headers are read, and the payloads of HEADERS,
 * CONTINUATION, SETTINGS and WINDOW_UPDATE; a frame that breaks the framing the guard relies on ends
 * the connection with the code nghttp2 would use.
 */

/** What the guard asks of the session it sits in front of. */
export interface GuardActions {
  /** Passes client bytes on to the session. */
  pass: (bytes: Buffer) => void
  /** Resets one stream, before or after the session hands it on. */
  resetStream: (stream: number, code: number, why: GuardReason) => void
  /** Ends the connection (GOAWAY `code`); the guard passes nothing more on. */
  endConnection: (code: number, why: GuardReason) => void
}

/** field_bytes: a field HTTP/1.1 would refuse (hpack-literals.ts); indexed_field_bytes: one added to the HPACK table. */
export type GuardReason = 'field_bytes' | 'indexed_field_bytes' | 'flow_control' | 'framing' | 'flood'

export interface FrameGuard {
  /** Bytes from the client: read, and passed on (actions.pass) but for what is dropped. */
  fromClient: (chunk: Buffer) => void
  /** Bytes the session writes to the client: frame headers read (PINGs, DATA, streams ending). */
  toClient: (chunk: Buffer) => void
  /** A GOAWAY with `code` and the last stream the client opened, if the session's output is between frames. */
  goaway: (code: number) => Buffer | undefined
}

// RFC 9113 §6 frame types and flags, §7 error codes.
const { HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION } = FRAME
const {
  NGHTTP2_FLAG_ACK: ACK, NGHTTP2_FLAG_END_HEADERS: END_HEADERS, NGHTTP2_FLAG_PADDED: PADDED, NGHTTP2_FLAG_PRIORITY: PRIORITY,
  NGHTTP2_PROTOCOL_ERROR: PROTOCOL_ERROR, NGHTTP2_FLOW_CONTROL_ERROR: FLOW_CONTROL_ERROR, NGHTTP2_FRAME_SIZE_ERROR: FRAME_SIZE_ERROR,
  NGHTTP2_ENHANCE_YOUR_CALM: ENHANCE_YOUR_CALM, NGHTTP2_COMPRESSION_ERROR: COMPRESSION_ERROR,
  NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE: SETTINGS_INITIAL_WINDOW_SIZE
} = constants
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1')

// What the rest of a client frame's payload is to the guard.
const SKIP = 0 // passed on unread
const DROP = 1 // not passed on
const BLOCK = 2 // a header block fragment (with HEADERS' pad length, priority and padding)
const SETTINGS_LIST = 3

// long: one reader of the client's bytes; the frame being read, the bytes not yet passed on and the
// header block in progress are one state, which functions of their own would pass around per frame.
export function createFrameGuard (actions: GuardActions): FrameGuard {
  const sent = createSendState()
  const scanner = new LiteralScanner()
  let preface = 0 // octets of the client preface read
  let dead = false
  const held = Buffer.alloc(13) // a frame's first octets when a read ends inside them: kept back
  let heldLength = 0
  // The frame being read: its header; what its payload is; how much of it was read.
  let type = 0; let flags = 0; let stream = 0; let length = 0
  let mode = SKIP
  let left = 0
  let at = 0
  // Header blocks: the stream, whether CONTINUATION must follow, HEADERS' prefix and padding.
  let blockStream = 0
  let continuing = false
  let prefix = 0
  let padding = 0
  let refused = false
  let lastStream = 0
  // A SETTINGS entry, read octet by octet (it may be split across reads).
  let entryAt = 0; let entryId = 0; let entryValue = 0

  // The read being handled, and its first octet not yet passed on.
  let chunk: Buffer = Buffer.alloc(0)
  let from = 0

  const end = (code: number, why: GuardReason): false => { dead = true; actions.endConnection(code, why); return false }
  const flush = (to: number): void => {
    if (to > from && !dead) actions.pass(chunk.subarray(from, to))
    from = to
  }

  const readHeader = (bytes: Buffer, i: number): void => {
    length = bytes.readUIntBE(i, 3)
    type = bytes[i + 3]!
    flags = bytes[i + 4]!
    stream = bytes.readUInt32BE(i + 5) & 0x7fffffff
  }

  /** The frame's header (and a WINDOW_UPDATE's increment, at `i`) is read: pass it on, or not (false). */
  const admit = (bytes: Buffer, i: number): boolean => {
    mode = SKIP
    left = length
    at = 0
    if (continuing && (type !== CONTINUATION || stream !== blockStream)) return end(PROTOCOL_ERROR, 'framing')
    if (type === HEADERS || type === CONTINUATION) return startBlock()
    if ((type === SETTINGS || (type === PING && length === 8)) && (flags & ACK) === 0 && stream === 0 && !sent.owe()) return end(ENHANCE_YOUR_CALM, 'flood')
    if (type === SETTINGS && (flags & ACK) === 0 && stream === 0 && length % 6 === 0) {
      mode = SETTINGS_LIST
      entryAt = 0
    } else if (type === RST_STREAM) {
      sent.close(stream)
    } else if (type === PING && (flags & ACK) !== 0 && length === 8 && stream === 0 && !sent.pingAcked()) {
      mode = DROP // RFC 9113 §6.7: an ACK for no PING of ours is ignored
      return false
    } else if (type === WINDOW_UPDATE && length === 4) {
      left = 0
      const increment = bytes.readUInt32BE(i) & 0x7fffffff
      if (increment === 0) return true // nghttp2's own PROTOCOL_ERROR
      if (stream === 0) return sent.growConnection(increment) || end(FLOW_CONTROL_ERROR, 'flow_control')
      const grown = sent.growStream(stream, increment)
      if (grown === 'overflow') actions.resetStream(stream, FLOW_CONTROL_ERROR, 'flow_control')
      return grown === 'ok'
    }
    return true
  }

  const startBlock = (): boolean => {
    mode = BLOCK
    if (type === CONTINUATION) {
      if (!continuing) return end(PROTOCOL_ERROR, 'framing')
      prefix = 0
      padding = 0
    } else {
      if (stream === 0) return end(PROTOCOL_ERROR, 'framing')
      prefix = ((flags & PADDED) !== 0 ? 1 : 0) + ((flags & PRIORITY) !== 0 ? 5 : 0)
      if (length < prefix) return end((flags & PADDED) !== 0 && length === 0 ? PROTOCOL_ERROR : FRAME_SIZE_ERROR, 'framing')
      padding = 0
      blockStream = stream
      refused = false
      scanner.begin()
      // A new stream starts with the client's initial window; a HEADERS on an open one is its trailers.
      if ((stream & 1) === 1 && stream > lastStream) { lastStream = stream; sent.open(stream) }
    }
    continuing = (flags & END_HEADERS) === 0
    return true
  }

  /** Payload octets `bytes[i, stop)` of HEADERS or CONTINUATION; false when the connection was ended. */
  const block = (bytes: Buffer, i: number, stop: number): boolean => {
    while (i < stop) {
      if (at < prefix) {
        if (at === 0 && (flags & PADDED) !== 0) {
          padding = bytes[i]!
          if (padding > length - prefix) return end(PROTOCOL_ERROR, 'framing')
        }
        const step = Math.min(stop - i, prefix - at)
        i += step
        at += step
        continue
      }
      const fragmentEnd = length - padding
      const step = Math.min(stop - i, Math.max(fragmentEnd - at, 0))
      if (step === 0) { at += stop - i; return true } // padding
      const found = scanner.scan(bytes, i, i + step)
      if ((found & NOT_HPACK) !== 0) return end(COMPRESSION_ERROR, 'framing')
      // A bad entry in the dynamic table could be referred to by any later block: the connection goes.
      if ((found & INDEXED_BAD) !== 0) return end(PROTOCOL_ERROR, 'indexed_field_bytes')
      if ((found & LITERAL_BAD) !== 0 && !refused) {
        refused = true
        actions.resetStream(blockStream, PROTOCOL_ERROR, 'field_bytes')
      }
      i += step
      at += step
    }
    return true
  }

  const settingsBytes = (bytes: Buffer, i: number, stop: number): boolean => {
    for (; i < stop; i++) {
      const b = bytes[i]!
      if (entryAt < 2) entryId = entryId * 256 * entryAt + b
      else entryValue = (entryAt === 2 ? 0 : entryValue * 256) + b
      if (++entryAt < 6) continue
      entryAt = 0
      // A value past 2^31-1 is nghttp2's own FLOW_CONTROL_ERROR; a delta taking an open stream past it is ours.
      if (entryId === SETTINGS_INITIAL_WINDOW_SIZE && entryValue <= MAX_WINDOW && !sent.setInitial(entryValue)) return end(FLOW_CONTROL_ERROR, 'flow_control')
    }
    return true
  }

  /** The frame's payload was all read. */
  const frameRead = (): void => {
    if (mode === BLOCK && (flags & END_HEADERS) !== 0 && !scanner.complete()) end(COMPRESSION_ERROR, 'framing')
  }

  return {
    // long: the read loop: the preface, frame headers (in place, or kept back across reads), payloads by mode.
    fromClient (read) {
      chunk = read
      from = 0
      const n = chunk.length
      let i = 0
      while (i < n && !dead) {
        if (preface < PREFACE.length) {
          if (chunk[i] !== PREFACE[preface]) { end(PROTOCOL_ERROR, 'framing'); return }
          preface++
          i++
        } else if (left > 0) {
          const stop = Math.min(n, i + left)
          if (mode === DROP) { flush(i); from = stop } else if (mode === BLOCK ? !block(chunk, i, stop) : mode === SETTINGS_LIST && !settingsBytes(chunk, i, stop)) { flush(i); return }
          if (mode !== BLOCK) at += stop - i
          left -= stop - i
          i = stop
          if (left === 0) frameRead()
        } else if (heldLength === 0 && n - i >= 9 && (readHeader(chunk, i), n - i >= 9 + increment())) {
          // The usual case: the whole header (and a WINDOW_UPDATE's increment) in this read.
          const start = i
          i += 9 + increment()
          if (!admit(chunk, start + 9)) { flush(start); from = i }
          if (dead) return
          if (left === 0) frameRead()
        } else {
          // Kept back until complete, then passed on (a copy: `held` is reused) or dropped.
          flush(i)
          if (heldLength < 9) i += take(chunk, i, 9)
          if (heldLength < 9) { from = i; continue }
          readHeader(held, 0)
          i += take(chunk, i, 9 + increment())
          from = i
          if (heldLength < 9 + increment()) continue
          const kept = heldLength
          heldLength = 0
          if (admit(held, 9)) actions.pass(Buffer.from(held.subarray(0, kept)))
          if (dead) return
          if (left === 0) frameRead()
        }
      }
      flush(i)
    },
    toClient: sent.sent,
    goaway (code) {
      if (!sent.betweenFrames()) return undefined
      const bytes = Buffer.alloc(17)
      bytes.writeUIntBE(8, 0, 3)
      bytes[3] = GOAWAY
      bytes.writeUInt32BE(lastStream, 9)
      bytes.writeUInt32BE(code, 13)
      return bytes
    }
  }

  function increment (): number { return type === WINDOW_UPDATE && length === 4 ? 4 : 0 }

  function take (bytes: Buffer, i: number, upto: number): number {
    const step = Math.max(0, Math.min(upto - heldLength, bytes.length - i))
    bytes.copy(held, heldLength, i, i + step)
    heldLength += step
    return step
  }
}
