/*
 * What the gateway's HTTP/2 session has sent, as the frame guard (h2-frame-guard.ts) must know it: the
 * PINGs not yet acknowledged, and the send windows (RFC 9113 §6.9): the connection's and each open
 * stream's, from 65,535 and the client's SETTINGS_INITIAL_WINDOW_SIZE, raised by the client's
 * WINDOW_UPDATEs, lowered by every DATA frame the session writes (its whole payload, padding included).
 *
 * Exact, never ahead of the client: DATA is counted as the session writes it, before the TLS socket
 * does, so the client can only have seen less; WINDOW_UPDATEs are counted in the order they come. A
 * client that raises a window to 2^31-1 by its own count is never above it here.
 */

import { constants } from 'node:http2'

export const MAX_WINDOW = constants.MAX_INITIAL_WINDOW_SIZE // 2^31-1
const INITIAL_WINDOW = constants.DEFAULT_SETTINGS_INITIAL_WINDOW_SIZE
// Streams whose window is followed at once: far above SETTINGS_MAX_CONCURRENT_STREAMS. A stream past it
// (a client opening streams nghttp2 ignores after GOAWAY) is not followed; nghttp2 then judges its
// WINDOW_UPDATEs alone (it still ends the connection on an overflow).
const MAX_STREAMS = 1000
// The window of a stream the guard asked to reset (flow control), until the session's RST_STREAM.
const RESET = -(2 ** 53)

// nghttp2's own bound on acknowledgements queued and not yet written (max_outbound_ack), past which it
// ends the connection as a SETTINGS or PING flood.
const MAX_ACKS_OWED = 1000

/** RFC 9113 §6 frame types, which node:http2 does not export (its flags and error codes it does). */
export const FRAME = { DATA: 0, HEADERS: 1, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, WINDOW_UPDATE: 8, CONTINUATION: 9 } as const
const { DATA, HEADERS, RST_STREAM, SETTINGS, PING } = FRAME
const { NGHTTP2_FLAG_END_STREAM: END_STREAM, NGHTTP2_FLAG_ACK: ACK } = constants

export interface SendState {
  /** A client HEADERS opened `stream`. */
  open: (stream: number) => void
  /** The client reset `stream`. */
  close: (stream: number) => void
  /** A WINDOW_UPDATE for the connection: false if it takes the window past 2^31-1 (then unchanged). */
  growConnection: (increment: number) => boolean
  /**
   * One for a stream: 'overflow' if past 2^31-1 (the stream is to be reset), 'reset' for one so reset
   * whose RST_STREAM the session has not yet sent (its WINDOW_UPDATEs are dropped: nghttp2 would judge
   * them against a window the guard never let grow), 'ok' otherwise (also for a stream not followed).
   */
  growStream: (stream: number, increment: number) => 'ok' | 'overflow' | 'reset'
  /** The client's SETTINGS_INITIAL_WINDOW_SIZE: false if an open stream's window goes past 2^31-1. */
  setInitial: (value: number) => boolean
  /** An ACK for a PING of the session's: false when none is outstanding. */
  pingAcked: () => boolean
  /**
   * The client sent a SETTINGS or PING that the session must acknowledge: false when more than nghttp2
   * allows are owed. nghttp2 counts its queue too, but the guard's Duplex lets the session write on
   * while the TLS socket takes the bytes, so a flood piles up here first.
   */
  owe: () => boolean
  /** Bytes the session writes to the client (frame headers read). */
  sent: (chunk: Buffer) => void
  /** Whether the session's output ended at a frame's end (a frame of ours may be written there). */
  betweenFrames: () => boolean
}

// long: the windows, the owed ACKs and the reader of the session's frames are one state, read and
// changed by each method below.
export function createSendState (): SendState {
  const windows = new Map<number, number>()
  let initial = INITIAL_WINDOW
  let connection = INITIAL_WINDOW
  let pings = 0
  let owed = 0
  // The session's frames as they are written: the header being read (split across writes), then its payload.
  const head = Buffer.alloc(9)
  let headLength = 0
  let skip = 0

  const frameSent = (bytes: Buffer, at: number): void => {
    const length = bytes.readUIntBE(at, 3)
    const type = bytes[at + 3]!
    const flags = bytes[at + 4]!
    skip = length
    if (type === DATA) {
      const stream = bytes.readUInt32BE(at + 5) & 0x7fffffff
      connection -= length
      const window = windows.get(stream)
      if ((flags & END_STREAM) !== 0) windows.delete(stream)
      else if (window !== undefined && window !== RESET) windows.set(stream, window - length)
    } else if ((type === HEADERS && (flags & END_STREAM) !== 0) || type === RST_STREAM) {
      windows.delete(bytes.readUInt32BE(at + 5) & 0x7fffffff)
    } else if (type === PING || type === SETTINGS) {
      if ((flags & ACK) === 0) { if (type === PING) pings++ } else if (owed > 0) owed--
    }
  }

  return {
    open (stream) { if (windows.size < MAX_STREAMS) windows.set(stream, initial) },
    close (stream) { windows.delete(stream) },
    growConnection (increment) {
      if (connection + increment > MAX_WINDOW) return false
      connection += increment
      return true
    },
    growStream (stream, increment) {
      const window = windows.get(stream)
      if (window === undefined) return 'ok'
      if (window === RESET) return 'reset'
      if (window + increment > MAX_WINDOW) { windows.set(stream, RESET); return 'overflow' }
      windows.set(stream, window + increment)
      return 'ok'
    },
    setInitial (value) {
      const delta = value - initial
      initial = value
      for (const [stream, window] of windows) {
        if (window === RESET) continue
        if (window + delta > MAX_WINDOW) return false
        windows.set(stream, window + delta)
      }
      return true
    },
    owe () { return ++owed <= MAX_ACKS_OWED },
    betweenFrames () { return skip === 0 && headLength === 0 },
    pingAcked () {
      if (pings === 0) return false
      pings--
      return true
    },
    sent (chunk) {
      const n = chunk.length
      let i = 0
      while (i < n) {
        if (skip > 0) {
          const step = Math.min(skip, n - i)
          skip -= step
          i += step
        } else if (headLength === 0 && n - i >= 9) {
          frameSent(chunk, i)
          i += 9
        } else {
          const take = Math.min(9 - headLength, n - i)
          chunk.copy(head, headLength, i, i + take)
          headLength += take
          i += take
          if (headLength === 9) { headLength = 0; frameSent(head, 0) }
        }
      }
    }
  }
}
