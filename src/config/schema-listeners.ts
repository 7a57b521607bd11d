import { Type } from '@sinclair/typebox'
import { INTERMEDIATE_CIPHERS } from '../tls/server-tls.js'
import { FilePath, FilePathOf, StringEnum } from './schema-common.js'
import { Http2Enabled, Http2Limits } from './schema-http2.js'

/*
 * The listeners' part of the config schema (schema.ts): the public listener, the admin listener, their
 * TLS policy and the edge limits both apply.
 */

// The TLS policy of a listener (tls/server-tls.ts): Mozilla "intermediate" unless changed.
const TlsPolicy = {
  minVersion: StringEnum(['TLSv1.2', 'TLSv1.3'], { default: 'TLSv1.2', description: 'lowest TLS version offered' }),
  ciphers: Type.String({
    minLength: 1,
    default: INTERMEDIATE_CIPHERS,
    description: 'OpenSSL cipher string for TLS 1.2 (TLS 1.3 suites, TLS_*, may be added; OpenSSL\'s TLS 1.3 suites when none are named). ' +
      'The default is Mozilla\'s "intermediate" profile with ECDHE and AEAD suites only. Every name must be known to OpenSSL, checked at start'
  })
}

const Hsts = Type.Object({
  maxAgeSeconds: Type.Integer({ minimum: 0, maximum: 63_072_000, default: 31_536_000, description: 'max-age of Strict-Transport-Security' }),
  includeSubDomains: Type.Boolean({ default: false }),
  preload: Type.Boolean({ default: false, description: 'ask for the browsers\' preload lists (needs includeSubDomains and maxAgeSeconds of at least 31536000)' })
}, { additionalProperties: false, description: 'send Strict-Transport-Security on every reply of the public listener (browser-facing listeners); off when absent' })

const ServerTls = Type.Object({
  cert: FilePath,
  key: FilePath,
  clientCa: Type.Optional(FilePathOf('read', {
    description: 'CA file for client certificates: when set, the listener asks every client for one and verifies it; routes decide whether one is required'
  })),
  ...TlsPolicy,
  hsts: Type.Optional(Hsts)
}, { additionalProperties: false })

const AdminTls = Type.Object({
  cert: FilePath,
  key: FilePath,
  clientCa: Type.Optional(FilePathOf('read', {
    description: 'CA file for client certificates: when set, a client without a valid certificate from it cannot complete the handshake'
  })),
  ...TlsPolicy
}, { additionalProperties: false, description: 'serve the admin listener over TLS (the admin token and /metrics cross it); plain HTTP when absent' })

export const Listen = Type.Object({
  host: Type.String({ default: '0.0.0.0', minLength: 1 }),
  port: Type.Integer({ minimum: 0, maximum: 65535, default: 8443 }),
  tls: Type.Optional(ServerTls),
  hosts: Type.Optional(Type.Array(Type.String({ minLength: 1, pattern: '^[A-Za-z0-9.-]+$|^\\[[0-9A-Fa-f:.]+\\]$' }), {
    minItems: 1,
    uniqueItems: true,
    description: 'Host names this gateway answers for (port ignored); any other Host is 404. All when absent.'
  })),
  plaintext: Type.Boolean({
    default: false,
    description: 'serve plain HTTP; only behind a TLS-terminating load balancer'
  }),
  http2: Http2Enabled
}, { additionalProperties: false, default: {} })

export const Admin = Type.Object({
  host: Type.String({ default: '127.0.0.1', minLength: 1 }),
  port: Type.Integer({ minimum: 0, maximum: 65535, default: 9090 }),
  hosts: Type.Array(Type.String({ minLength: 1, pattern: '^[A-Za-z0-9.-]+$|^\\[[0-9A-Fa-f:.]+\\]$' }), {
    default: [],
    uniqueItems: true,
    description: 'further Host names the admin listener answers for (any port), e.g. the name Prometheus scrapes it by. ' +
      'localhost, loopback addresses and the listener\'s own addresses (all of the machine\'s when bound to 0.0.0.0 or ::) are always allowed; ' +
      'any other Host is refused with 421, so a web page cannot read the admin listener through DNS rebinding'
  }),
  tls: Type.Optional(AdminTls),
  tokenFile: Type.Optional(FilePathOf('read', {
    description: 'file holding the bearer token of the admin API (/admin/revocations, /admin/bans; at least 32 characters); the API is off when absent'
  }))
}, { additionalProperties: false, default: {} })

export const Limits = Type.Object({
  maxBodyBytes: Type.Integer({ minimum: 0, default: 1_048_576, description: 'request body cap (413), also for chunked bodies; routes may lower or raise it' }),
  requestTimeoutMs: Type.Integer({ minimum: 1000, default: 30_000, description: 'the whole request must arrive within this (408)' }),
  headersTimeoutMs: Type.Integer({ minimum: 100, default: 10_000, description: 'the request head must arrive within this (slowloris)' }),
  keepAliveTimeoutMs: Type.Integer({ minimum: 100, default: 5_000, description: 'idle keep-alive connections are closed after this' }),
  maxHeaderBytes: Type.Integer({ minimum: 1024, maximum: 1_048_576, default: 16_384, description: 'request line and headers together (431)' }),
  maxHeaders: Type.Integer({ minimum: 8, maximum: 1000, default: 100, description: 'number of header fields (431)' }),
  maxUriBytes: Type.Integer({ minimum: 64, maximum: 65_536, default: 8192, description: 'request target length (414)' }),
  maxConnections: Type.Integer({ minimum: 1, default: 10_000, description: 'open client connections; more are refused at accept' }),
  pathParameters: Type.Union([Type.Literal('reject'), Type.Literal('allow')], {
    default: 'reject',
    description: '";" in the path (400 unless "allow"). Servlet-style functions strip ";params" from segments, ' +
      'so "/a;x" or "/..;/admin" would name a different resource there than the one the policy judged. ' +
      'Even with "allow", a dot segment carrying parameters ("..;x") is refused.'
  }),
  doubleEncodedPath: Type.Union([Type.Literal('reject'), Type.Literal('allow')], {
    default: 'reject',
    description: '"%25" before an encoded ".", "/" or "\\" ("%252e", "%252f", "%255c", any depth and case, and "%25u002e"): 400 ' +
      'GW_ERR_GUARD_AMBIGUOUS_PATH unless "allow". A function that decodes the path once more would see a dot segment or a separator the policy never judged.'
  }),
  lookalikePath: Type.Union([Type.Literal('reject'), Type.Literal('allow')], {
    default: 'reject',
    description: 'percent-encoded Unicode look-alikes of "/", "." and "\\" (anything NFKC folds to them, such as fullwidth "／" and "．", ' +
      'and DIVISION SLASH, FRACTION SLASH, BIG SOLIDUS and kin): 400 GW_ERR_GUARD_AMBIGUOUS_PATH unless "allow". ' +
      'A function that normalises Unicode would see a different path than the policy judged.'
  }),
  http2: Http2Limits
}, { additionalProperties: false, default: {} })
