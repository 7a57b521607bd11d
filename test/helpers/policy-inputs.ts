import fc from 'fast-check'

/*
 * Generated policy inputs for the shipped entrypoints: mostly well-formed, often at a policy's
 * thresholds (the tiers tenant pattern's 63 characters, the edges of the internal networks, known
 * and unknown devices, scopes and roles), sometimes of the wrong type, with non-ASCII text, lone
 * surrogates, IPv6 and IPv4-mapped addresses, and big and fractional numbers.
 */

const loneSurrogate = fc.constantFrom('\ud800', '\udfff', 'a\udc00b', '\ud83d')
const text = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 10 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 6 }) },
  { weight: 1, arbitrary: fc.constantFrom('', ' ', 'é', '日本', '🙂', 'a\u0000b', 'ǅ', 'ﬃ', 'İ') },
  { weight: 1, arbitrary: fc.oneof({ weight: 5, arbitrary: fc.constant('x') }, { weight: 1, arbitrary: loneSurrogate }) }
)
const number = fc.oneof(fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(0, -0, 0.5, 1e21, 2 ** 53, 2 ** 53 + 2, 2 ** 64, -1e300, 5e-324))
const scalar = fc.oneof(text, number, fc.boolean(), fc.constant(null))
const wrong = fc.oneof(scalar, fc.array(scalar, { maxLength: 2 }), fc.dictionary(fc.string({ maxLength: 3 }), scalar, { maxKeys: 2 }))
const maybeWrong = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | unknown> => fc.oneof({ weight: 8, arbitrary: arb }, { weight: 1, arbitrary: wrong })

const lowerAlnum = 'abcdefghijklmnopqrstuvwxyz0123456789'.split('')
const tenant = fc.oneof(
  fc.constantFrom('acme', 'globex', 't1', '-acme', 'Acme', 'acme_1', 'a', ''),
  // The tiers pattern allows 1 + up to 62 characters: 62, 63 and 64 long straddle it.
  fc.integer({ min: 62, max: 64 }).chain(n => fc.array(fc.constantFrom(...lowerAlnum, '-'), { minLength: n - 1, maxLength: n - 1 })
    .map(rest => `a${rest.join('')}`)),
  text
)
const roleName = fc.oneof(fc.constantFrom('reader', 'writer', 'admin', 'Admin', 'admin ', 'platform-admin', 'reader,admin'), text, number, fc.boolean(), fc.constant(null))
const claims = fc.record({
  roles: fc.oneof(fc.array(roleName, { maxLength: 4 }), fc.dictionary(fc.constantFrom('a', 'b', 'c'), roleName, { maxKeys: 3 }), text, number, fc.constant(null)),
  scope: fc.oneof(fc.constantFrom('orders:read', 'orders:write', 'orders:read orders:write', 'orders:write orders:admin', 'profile', '', ' ', 'orders:read  profile'), text, number),
  tenant: maybeWrong(tenant),
  plan: fc.oneof(fc.constantFrom('pro', 'Pro', 'free'), wrong),
  amr: fc.oneof(fc.constant(['mfa']), fc.constant(['pwd']), fc.constant([]), wrong),
  extra: wrong
}, { requiredKeys: [] })
const principal = fc.oneof(
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: wrong },
  {
    weight: 8,
    arbitrary: fc.record({
      type: fc.oneof(fc.constantFrom('jwt', 'jwt', 'mtls', 'anonymous', 'other', 'JWT'), wrong),
      issuer: fc.constantFrom('https://issuer.example', ''),
      subject: fc.oneof(fc.constantFrom('alice', 'bob', ''), text),
      claims: fc.oneof({ weight: 8, arbitrary: claims }, { weight: 1, arbitrary: wrong })
    })
  }
)
const v4 = fc.oneof(fc.ipV4(), fc.constantFrom('10.0.0.0', '10.255.255.255', '9.255.255.255', '11.0.0.0', '192.168.0.1',
  '192.168.255.255', '192.169.0.0', '127.0.0.1', '128.0.0.1', '0.0.0.0', '255.255.255.255'))
const ip = fc.oneof(
  { weight: 4, arbitrary: v4 },
  { weight: 2, arbitrary: fc.oneof(fc.ipV6(), fc.constantFrom('::1', '::2', 'fd00::1', 'fdff:ffff::1', 'fe00::1', 'fc00::1', '::')) },
  { weight: 2, arbitrary: v4.map(a => `::ffff:${a}`) },
  { weight: 1, arbitrary: fc.oneof(fc.constantFrom('', 'localhost', '10.0.0.256', '10.1.2.3\u0000'), wrong) }
)
const segment = fc.oneof(fc.constantFrom('hello', 'orders', 'admin', 'users', 'tenants', 'reports', '7', ''), fc.stringMatching(/^[A-Za-z0-9._~-]{1,8}$/), tenant)
const routeId = fc.oneof(fc.constantFrom('hello', 'orders', 'admin', 'reports', 'tenants'), fc.stringMatching(/^[a-z0-9_-]{1,8}$/))
const metadata = fc.record({
  network: fc.oneof(fc.constantFrom('internal', 'external', ''), wrong),
  admin: fc.oneof(fc.constantFrom(true, false, 'true', 1), wrong)
}, { requiredKeys: [] })
const certificate = fc.oneof(
  fc.constant(null),
  fc.record({ spiffe_id: fc.oneof(fc.constantFrom('spiffe://corp.example/device/laptop-7', 'spiffe://corp.example/device/laptop-9', 'spiffe://corp.example/device/laptop-8'), text) }),
  wrong
)

const anyInput = fc.record({
  method: fc.oneof(fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'), fc.constantFrom('get', '')),
  segments: fc.array(segment, { maxLength: 4 }),
  query: fc.dictionary(fc.stringMatching(/^[a-z]{1,5}$/), fc.array(text, { minLength: 1, maxLength: 2 }), { maxKeys: 2 }),
  headers: fc.dictionary(fc.stringMatching(/^[a-z-]{1,10}$/), text, { maxKeys: 3 }),
  client: fc.record({ ip: maybeWrong(ip) }),
  tls: fc.record({ client_certificate: certificate }),
  principal,
  route: fc.record({ id: maybeWrong(routeId), metadata: fc.oneof({ weight: 8, arbitrary: metadata }, { weight: 1, arbitrary: wrong }) }),
  time_ns: fc.oneof(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.constantFrom(1796508000e9, 1796522400e9 - 1, 1796522400e9), number)
})

// Inputs whose parts agree with each other (a verified token whose tenant is the path's, a role
// or scope the route and method need): random parts alone would rarely be allowed.
const coherent = fc.record({
  base: anyInput,
  tenant,
  roles: fc.array(fc.constantFrom('reader', 'writer', 'admin', 'platform-admin'), { maxLength: 2 }),
  scope: fc.constantFrom('orders:read', 'orders:write', 'orders:write orders:admin', 'profile', 'orders:read orders:write'),
  method: fc.constantFrom('GET', 'HEAD', 'POST', 'PUT', 'DELETE'),
  route: fc.constantFrom('orders', 'admin', 'hello', 'reports', 'tenants'),
  subject: fc.constantFrom('alice', 'bob')
}).map(({ base, ...a }) => ({
  ...base,
  method: a.method,
  segments: ['tenants', a.tenant],
  route: { ...base.route, id: a.route },
  principal: { type: 'jwt', issuer: 'https://issuer.example', subject: a.subject, claims: { roles: a.roles, scope: a.scope, tenant: a.tenant, plan: 'pro', amr: ['mfa'] } }
}))

/** A policy input as the gateway builds it, stretched at the edges. */
export const policyInput = fc.oneof({ weight: 3, arbitrary: anyInput }, { weight: 1, arbitrary: coherent })
  .map(i => ({ ...i, path: `/${i.segments.join('/')}` }))
