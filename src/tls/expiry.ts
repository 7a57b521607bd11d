import { X509Certificate } from 'node:crypto'
import { readFileSync } from 'node:fs'

/** When the first certificate of a PEM bundle (a CA file may hold several) stops being valid, in ms; null when it holds none. */
export function earliestExpiry (pem: string): number | null {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
  const times = blocks.map(b => Date.parse(new X509Certificate(b).validTo))
  return times.length === 0 ? null : Math.min(...times)
}

/** Where the stages report the certificates they hold (metrics.certificateNotAfter, by name). */
export interface CertificateExpiry {
  /** A PEM file (a CA bundle: its earliest certificate); nothing when no file is configured. */
  file: (name: string, path: string | undefined) => void
  set: (name: string, notAfterMs: number) => void
}

export function createCertificateExpiry (notAfter: Map<string, number>): CertificateExpiry {
  return {
    file (name, path) {
      const at = path === undefined ? null : earliestExpiry(readFileSync(path, 'utf8'))
      if (at !== null) notAfter.set(name, at)
    },
    set: (name, at) => { notAfter.set(name, at) }
  }
}
