import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Server as HttpsServer } from 'node:https'

/*
 * Node answers expectations itself unless someone listens: any Expect it does not read as
 * 100-continue gets a bare 417 (no gateway body, access line or count), and its 100-continue test is
 * loose (`100-continue-x`, `foo, 100-continue` pass it), so a value the guard must refuse would get a
 * 100 Continue first. Here every request with an Expect goes to the gateway's handler like any other;
 * only the exact value `100-continue` is answered with 100 Continue, and the guard refuses the rest
 * with GW_ERR_GUARD_EXPECTATION (RFC 9110 §10.1.1).
 */

type Handler = (req: IncomingMessage, res: ServerResponse) => void

/** Whether an Expect value is exactly the one expectation the gateway meets. */
export function isContinue (value: string | undefined): boolean {
  return value !== undefined && value.trim().toLowerCase() === '100-continue'
}

/** Routes Node's checkContinue and checkExpectation requests to `handle` instead of Node's answers. */
export function serveExpectations (server: Server | HttpsServer, handle: Handler): void {
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
    if (isContinue(req.headers.expect)) res.writeContinue()
    handle(req, res)
  })
  server.on('checkExpectation', handle)
}
