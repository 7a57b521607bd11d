import { X509Certificate } from 'node:crypto'

/** When the first certificate of a PEM bundle (a CA file may hold several) stops being valid, in ms; null when it holds none. */
export function earliestExpiry (pem: string): number | null {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
  const times = blocks.map(b => Date.parse(new X509Certificate(b).validTo))
  return times.length === 0 ? null : Math.min(...times)
}
