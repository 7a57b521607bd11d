import { readFileSync } from 'node:fs'
import { userInfo } from 'node:os'
import { Agent, fetch } from 'undici'

/*
 * The admin API as the CLI calls it (`portcullis revoke`, `portcullis unban`): one HTTP request to
 * the admin listener with the admin token, and the answer printed. The token comes from a file or
 * $PORTCULLIS_ADMIN_TOKEN, never from the command line (it would show in `ps` and shell history).
 */

export interface AdminCallOptions {
  adminUrl: string
  tokenFile?: string
  actor?: string
  /** For an admin listener with admin.tls: the CA its certificate chains to, and a client certificate. */
  ca?: string
  cert?: string
  key?: string
}

/** `90`, `90s`, `15m`, `12h`, `7d` → seconds. */
export function parseDuration (value: string): number | null {
  const m = /^(\d+)([smhd]?)$/.exec(value)
  if (m === null) return null
  const n = Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as '' | 's' | 'm' | 'h' | 'd']
  return n > 0 ? n : null
}

function adminToken (tokenFile: string | undefined): string {
  const token = tokenFile !== undefined ? readFileSync(tokenFile, 'utf8').trim() : process.env.PORTCULLIS_ADMIN_TOKEN
  if (token === undefined || token === '') throw new Error('no admin token: pass --token-file or set PORTCULLIS_ADMIN_TOKEN')
  return token
}

/** Calls the admin API; the parsed JSON answer, or throws with the API's own message. */
export async function callAdmin (opts: AdminCallOptions, method: string, path: string, body?: unknown): Promise<unknown> {
  if ((opts.cert === undefined) !== (opts.key === undefined)) throw new Error('--cert and --key go together')
  const dispatcher = new Agent({
    connect: {
      ...(opts.ca !== undefined ? { ca: readFileSync(opts.ca) } : {}),
      ...(opts.cert !== undefined && opts.key !== undefined ? { cert: readFileSync(opts.cert), key: readFileSync(opts.key) } : {})
    }
  })
  try {
    return await send(opts, dispatcher, method, path, body)
  } finally {
    await dispatcher.close()
  }
}

async function send (opts: AdminCallOptions, dispatcher: Agent, method: string, path: string, body?: unknown): Promise<unknown> {
  const res = await fetch(new URL(path, opts.adminUrl), {
    dispatcher,
    method,
    headers: {
      authorization: `Bearer ${adminToken(opts.tokenFile)}`,
      'x-portcullis-actor': opts.actor ?? userInfo().username,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {})
    },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {})
  })
  const text = await res.text()
  const parsed: unknown = text === '' ? null : JSON.parse(text)
  if (!res.ok) throw new Error(`admin API answered ${res.status}: ${(parsed as { error?: string } | null)?.error ?? text}`)
  return parsed
}
