// @peculiar/x509 resolves its ASN.1 services through tsyringe, which needs the Reflect metadata API.
import 'reflect-metadata'
import { webcrypto } from 'node:crypto'
import * as x509 from '@peculiar/x509'

/*
 * A small certificate authority for the demo and for tests: ECDSA P-256 keys, certificates with the
 * extensions real TLS stacks check (basic constraints, key usage, extended key usage, SANs, key ids).
 * Nothing here is used on the request path; production certificates come from the operator.
 */

type CryptoKey = webcrypto.CryptoKey
type CryptoKeyPair = webcrypto.CryptoKeyPair

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0])

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const
const DAY_MS = 86_400_000

export interface PemPair { cert: string, key: string }

export interface IssueOptions {
  commonName: string
  dnsNames?: string[]
  ipAddresses?: string[]
  /** URI SANs, e.g. a SPIFFE ID `spiffe://example.org/gateway`. */
  uris?: string[]
  usage: 'server' | 'client' | 'both'
  days?: number
  /** Explicit validity, e.g. an already expired certificate for a test; overrides `days`. */
  validity?: { notBefore: Date, notAfter: Date }
}

export interface CertificateAuthority extends PemPair {
  issue: (opts: IssueOptions) => Promise<PemPair>
}

async function toPemKey (key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key)
  return x509.PemConverter.encode(der, 'PRIVATE KEY')
}

async function generateKeys (): Promise<CryptoKeyPair> {
  return await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify']) as CryptoKeyPair
}

function validity (days: number): { notBefore: Date, notAfter: Date } {
  const now = Date.now()
  // Backdated a little so a peer whose clock is slightly behind still accepts a fresh certificate.
  return { notBefore: new Date(now - 5 * 60_000), notAfter: new Date(now + days * DAY_MS) }
}

/** Creates a new self-signed CA. */
export async function createCa (commonName: string, days = 3650): Promise<CertificateAuthority> {
  const keys = await generateKeys()
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${commonName}`,
    keys,
    signingAlgorithm: ALG,
    ...validity(days),
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey)
    ]
  })
  return caFrom(cert, keys.privateKey, await toPemKey(keys.privateKey))
}

/** Loads a CA created earlier (by createCa) from its PEM certificate and PKCS#8 key. */
export async function loadCa (pair: PemPair): Promise<CertificateAuthority> {
  const cert = new x509.X509Certificate(pair.cert)
  const der = x509.PemConverter.decodeFirst(pair.key)
  const key = await webcrypto.subtle.importKey('pkcs8', der, ALG, true, ['sign'])
  return caFrom(cert, key, pair.key)
}

function caFrom (caCert: x509.X509Certificate, caKey: CryptoKey, caKeyPem: string): CertificateAuthority {
  return {
    cert: caCert.toString('pem'),
    key: caKeyPem,
    async issue (opts) {
      const keys = await generateKeys()
      const names: x509.JsonGeneralName[] = [
        ...(opts.dnsNames ?? []).map(value => ({ type: 'dns' as const, value })),
        ...(opts.ipAddresses ?? []).map(value => ({ type: 'ip' as const, value })),
        ...(opts.uris ?? []).map(value => ({ type: 'url' as const, value }))
      ]
      const eku = opts.usage === 'server'
        ? [x509.ExtendedKeyUsage.serverAuth]
        : opts.usage === 'client' ? [x509.ExtendedKeyUsage.clientAuth] : [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]
      const cert = await x509.X509CertificateGenerator.create({
        subject: `CN=${opts.commonName}`,
        issuer: caCert.subject,
        publicKey: keys.publicKey,
        signingKey: caKey,
        signingAlgorithm: ALG,
        ...(opts.validity ?? validity(opts.days ?? 365)),
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
          new x509.ExtendedKeyUsageExtension(eku),
          ...(names.length > 0 ? [new x509.SubjectAlternativeNameExtension(names)] : []),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
          await x509.AuthorityKeyIdentifierExtension.create(caCert)
        ]
      })
      return { cert: cert.toString('pem'), key: await toPemKey(keys.privateKey) }
    }
  }
}
