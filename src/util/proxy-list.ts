import proxyAddr from '@fastify/proxy-addr'

/*
 * Checks a list of trusted proxies or networks the way guard/client-address.ts will read it. Here, not
 * in a stage, so that config validation runs no stage code (and loads no rate-limit library).
 */

/** The message of the first entry that is not an IP address or CIDR, or null. */
export function checkTrustedProxies (entries: readonly string[]): string | null {
  try {
    proxyAddr.compile([...entries])
    return null
  } catch (err) {
    return (err as Error).message
  }
}
