import { connect } from 'node:tls'

/*
 * Shared by the edge fuzzer (scripts/fuzz-edge.ts) and the replay of its corpus
 * (test/security/fuzz-replay.test.ts): seed requests, a deterministic mutator, and one raw exchange.
 */

/** Stands for a fresh valid token in stored requests (tokens expire; the corpus must not). */
export const TOKEN = '{{TOKEN}}'

export const SEEDS = [
  `GET /hello/a?b=c HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${TOKEN}\r\n\r\n`,
  `POST /orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{"a":"b"}`,
  `POST /orders HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n`,
  `GET /admin/users HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${TOKEN}\r\nConnection: keep-alive\r\n\r\n`
]

// Fragments that made gateways and parsers disagree before (RFC 9112 framing, RFC 3986 paths).
const DICTIONARY = [
  '\r\n', '\n', '\r', ' ', '\t', ':', '\0', '\x7f', '\xff', 'Transfer-Encoding: chunked\r\n', 'Content-Length: 4\r\n',
  'Content-Length: -1\r\n', 'Transfer-Encoding: chunked, identity\r\n', 'Transfer-Encoding : chunked\r\n',
  'Host: evil\r\n', 'Connection: close, X-Forwarded-For\r\n', 'X-Forwarded-User: admin\r\n', 'Upgrade: h2c\r\n',
  '/..', '/.', '//', '%2f', '%2e%2e', '%00', '%c0%ae', '\\', '?', '#', ';', 'GET /admin HTTP/1.1\r\nHost: gw\r\n\r\n',
  'HTTP/1.0', 'HTTP/2.0', 'http://evil', '*', '0\r\n\r\n', 'ffffffffffffffff\r\n'
]

/** mulberry32: a tiny seeded PRNG, so a fuzz run is reproducible from its seed. */
export function prng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** One to four byte-level mutations of a seed: insert a dictionary fragment, delete, duplicate or flip. */
export function mutate (input: string, random: () => number): string {
  let s = input
  const n = 1 + Math.floor(random() * 4)
  for (let i = 0; i < n; i++) {
    const at = Math.floor(random() * (s.length + 1))
    const op = Math.floor(random() * 4)
    if (op === 0) s = s.slice(0, at) + DICTIONARY[Math.floor(random() * DICTIONARY.length)]! + s.slice(at)
    else if (op === 1) s = s.slice(0, at) + s.slice(at + 1 + Math.floor(random() * 8))
    else if (op === 2) s = s.slice(0, at) + s.slice(at, at + 12) + s.slice(at)
    else s = s.slice(0, at) + String.fromCharCode(Math.floor(random() * 256)) + s.slice(at + 1)
  }
  return s
}

export interface Exchange {
  /** Status of the first response, or null when the gateway closed without answering. */
  status: number | null
  /** The gateway's error code when the answer is its JSON error body. */
  code: string | null
  /** Whether that body (if any) had exactly the gateway error shape. */
  shapeOk: boolean
  responses: number
  /** Responses with a 1xx-3xx status (answered by the function). */
  successes: number
}

/**
 * Writes the bytes (latin1, so every byte is exact) and reads until the gateway closes or stays
 * quiet for `quietMs` after answering. The socket is not half-closed: Node drops a request whose
 * client sent FIN before the answer, which would hide the gateway's real behaviour.
 */
export async function exchange (port: number, ca: string | Buffer, bytes: string, token: string, quietMs = 300): Promise<Exchange> {
  const payload = Buffer.from(bytes.replaceAll(TOKEN, token), 'latin1')
  const data = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = []
    let quiet: NodeJS.Timeout | undefined
    const socket = connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => socket.write(payload))
    const done = (): void => { clearTimeout(quiet); socket.destroy(); resolve(Buffer.concat(chunks)) }
    const limit = setTimeout(done, 3000)
    socket.on('data', (d: Buffer) => {
      chunks.push(d)
      clearTimeout(quiet)
      quiet = setTimeout(done, quietMs)
    })
    socket.on('close', () => { clearTimeout(limit); clearTimeout(quiet); resolve(Buffer.concat(chunks)) })
    socket.on('error', (err: NodeJS.ErrnoException) => err.code === 'ECONNRESET' || err.code === 'EPIPE' ? undefined : reject(err))
  })
  const text = data.toString('latin1')
  const status = /^HTTP\/1\.1 (\d{3}) /.exec(text)?.[1]
  const responses = text.match(/^HTTP\/1\.1 \d{3} /gm)?.length ?? 0
  const successes = text.match(/^HTTP\/1\.1 [123]\d\d /gm)?.length ?? 0
  const headEnd = text.indexOf('\r\n\r\n')
  const length = Number(/\r\ncontent-length: *(\d+)/i.exec(text.slice(0, headEnd))?.[1] ?? NaN)
  const body = Number.isNaN(length) ? '' : text.slice(headEnd + 4, headEnd + 4 + length)
  let code: string | null = null
  let shapeOk = true
  if (status !== undefined && Number(status) >= 400) {
    try {
      const json = JSON.parse(body) as Record<string, unknown>
      code = typeof json.code === 'string' ? json.code : null
      shapeOk = Object.keys(json).sort().join() === 'code,error,request_id'
    } catch {
      shapeOk = false
    }
  }
  return { status: status === undefined ? null : Number(status), code, shapeOk, responses, successes }
}
