import { isIP } from 'node:net'
import { networkInterfaces } from 'node:os'

/*
 * Which Host values the admin listener answers. A web page can point a name it controls at 127.0.0.1
 * (DNS rebinding) and read the answers as its own origin; the browser then sends that name as Host.
 * So a name is answered only when it is on the list, whatever address it resolved to. IP literals
 * cannot be rebound; they are allowed when they are this listener's own addresses.
 */

const WILDCARDS = new Set(['0.0.0.0', '::', '', '*'])

/** Lower case, without brackets around an IPv6 literal and without a trailing dot. */
function canonical (host: string): string {
  const h = host.toLowerCase().replace(/\.$/, '')
  return h.startsWith('[') && h.endsWith(']') ? h.slice(1, -1) : h
}

const isLoopback = (ip: string): boolean => ip === '::1' || (isIP(ip) === 4 && ip.startsWith('127.')) || ip.startsWith('::ffff:127.')

/**
 * A check of a Host header value (`name`, `name:port`, `[v6]`, `[v6]:port`; any port) against the
 * listener's names: `localhost`, loopback addresses, its bind address (every address of the machine
 * when bound to a wildcard, as read at start) and `extra`. Built once; per request it is a parse and
 * a set lookup.
 */
export function createHostCheck (bindHost: string, extra: readonly string[]): (host: string | undefined) => boolean {
  const allowed = new Set<string>(['localhost', ...extra.map(canonical)])
  if (WILDCARDS.has(bindHost)) {
    for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) allowed.add(canonical(a.address))
  } else {
    allowed.add(canonical(bindHost))
  }
  return host => {
    if (host === undefined) return false
    const m = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(host)
    if (m === null) return false
    const name = canonical(m[1]!)
    return allowed.has(name) || isLoopback(name)
  }
}
