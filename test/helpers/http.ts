import { readFileSync } from 'node:fs'
import type { Test } from 'tap'
import { Agent, type Dispatcher } from 'undici'

export interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
  json: <T = Record<string, unknown>>() => T
}

export interface Client {
  send: (url: string, opts?: { method?: string, headers?: Record<string, string>, body?: string, token?: string }) => Promise<Reply>
}

/**
 * The protocol the suites run over (issue #21): `PORTCULLIS_TEST_PROTOCOL=h2` (set by the *.h2.test.ts
 * files) makes every client offer h2 by ALPN, which the gateway's public listener picks.
 */
export const TEST_PROTOCOL: 'http/1.1' | 'h2' = process.env.PORTCULLIS_TEST_PROTOCOL === 'h2' ? 'h2' : 'http/1.1'

/** An HTTP(S) client that trusts exactly the given CA file (real TLS verification), closed at teardown. */
export function httpsClient (t: Test, caFile?: string, clientCert?: { cert: string, key: string }): Client {
  const dispatcher = new Agent({
    allowH2: TEST_PROTOCOL === 'h2',
    connect: {
      ...(caFile !== undefined ? { ca: readFileSync(caFile, 'utf8') } : {}),
      ...(clientCert ?? {})
    }
  })
  t.teardown(() => dispatcher.close())
  return {
    async send (url, opts = {}) {
      const headers: Record<string, string> = { ...opts.headers }
      if (opts.token !== undefined) headers.authorization = `Bearer ${opts.token}`
      // Split by hand: WHATWG URL parsing would resolve dot segments and %2e before sending.
      const [, origin, path] = /^(https?:\/\/[^/]+)(\/[\s\S]*)?$/.exec(url) ?? []
      if (origin === undefined) throw new Error(`not an absolute URL: ${url}`)
      const res = await dispatcher.request({
        origin,
        path: path ?? '/',
        method: (opts.method ?? 'GET') as Dispatcher.HttpMethod,
        headers,
        body: opts.body
      })
      const text = await res.body.text()
      return { status: res.statusCode, headers: res.headers, text, json: <T>() => JSON.parse(text) as T }
    }
  }
}
