import t from 'tap'
import { headerFields } from '../helpers/recording-upstream.js'
import { expectForwarded, startSecurityHarness } from '../helpers/security.js'

// Issue #20 items 1 and 2, through the real gateway, reading the bytes the function received.
// 1. A client header whose name a server would fold onto a header the policy sets upstream
//    (`X_Policy_Path`, `x.policy.path`, `x~policy~path`...) must not arrive beside the policy's value:
//    a server that maps "_" to "-" and keeps the last value (Puma CVE-2024-45614) would read the client's.
// 2. Headers that assert a client address, identity, client certificate or rewritten target are
//    stripped by family, in any spelling; an upstream's passClientHeaders lets exact names through.

const PASSED = 'cf-connecting-ip'
const h = await startSecurityHarness(t, { configure: raw => { raw.upstreams[0].passClientHeaders = [PASSED] } })

/** How the most lenient server reads a name: lower case, every non-alphanumeric as "-". */
const fold = (name: string): string => name.toLowerCase().replace(/[^a-z0-9]/g, '-')
const title = (name: string): string => name.replace(/(^|-)([a-z])/g, (_m, d: string, c: string) => d + c.toUpperCase())
// Token characters (RFC 9110 §5.6.2) other than letters and digits: each a separator some server folds.
const SEPARATORS = ['_', '.', '~', '!', '*', "'", '|', '^', '`', '#', '$', '%', '&', '+']

/** The name in other spellings: title and upper case, and each separator in place of "-", in both cases. */
function spellings (name: string): string[] {
  const out = [title(name), name.toUpperCase()]
  for (const sep of SEPARATORS) out.push(name.replace(/-/g, sep), title(name).replace(/-/g, sep).toUpperCase())
  return [...new Set(out)].filter(s => s !== name)
}

t.test('aliases of the headers the policy sets upstream never reach the function beside the policy\'s', async t => {
  // GATE_POLICY sets these four on every allowed request.
  const decided = ['x-policy-method', 'x-policy-path', 'x-policy-query', 'x-policy-headers']
  for (const name of decided) {
    const aliases = spellings(name)
    t.ok(aliases.length >= 28, `${name}: ${aliases.length} spellings`)
    const seen = await expectForwarded(t, h, name, h.head('GET', '/public/x', aliases.map((a, i) => `${a}: forged-${i}`)), { target: '/public/x' })
    if (seen === null) continue
    t.notMatch(seen.head, /forged/, `${name}: no client value upstream`)
    const folded = seen.fields.filter(([n]) => fold(n) === name)
    t.equal(folded.length, 1, `${name}: exactly one field that any server reads as ${name}`, { folded })
    t.equal(folded[0]?.[0], name, `${name}: and it is the policy's`)
  }
  // The exact name from the client is replaced, not doubled.
  const seen = await expectForwarded(t, h, 'exact name', h.head('GET', '/public/x', ['X-Policy-Method: DELETE']), { target: '/public/x' })
  t.strictSame(seen?.fields.filter(([n]) => fold(n) === 'x-policy-method').map(([, v]) => v), ['GET'])
})

// One or more members of each family, with where the name comes from.
const FAMILIES: Record<string, string[]> = {
  // Cloudflare, Akamai, Fastly, generic load balancers and PaaS front ends
  'client address': ['cf-connecting-ip', 'cf-connecting-ipv6', 'cf-pseudo-ipv4', 'cf-ipcountry', 'cf-visitor', 'cf-ray',
    'true-client-ip', 'x-true-client-ip', 'akamai-origin-hop', 'x-akamai-edgescape', 'fastly-client-ip', 'fastly-ssl',
    'fastly-ff', 'x-real-ip', 'x-client-ip', 'x-cluster-client-ip', 'x-originating-ip', 'x-remote-ip', 'x-remote-addr',
    'x-proxyuser-ip', 'client-ip', 'x-appengine-user-ip', 'x-azure-clientip', 'x-azure-socketip', 'x-envoy-external-address',
    'x-envoy-internal', 'forwarded', 'forwarded-for', 'x-forwarded', 'x-forward-for', 'x-forwarded-for', 'x-original-forwarded-for',
    'x-forwarded-for-original', 'x-forwarded-port', 'x-forwarded-proto-version', 'x-host'],
  // Grafana auth proxy, oauth2-proxy, Authelia, Pomerium, vouch-proxy, Kong, Apache, Oathkeeper
  'auth proxy identity': ['x-webauth-user', 'x-webauth-email', 'x-webauth-role', 'x-auth-user', 'x-auth-email', 'x-auth-groups',
    'x-remote-user', 'remote-user', 'remote-groups', 'remote-email', 'remote-name', 'x-forwarded-user', 'x-forwarded-email',
    'x-forwarded-groups', 'x-forwarded-preferred-username', 'x-auth-request-user', 'x-auth-request-email',
    'x-auth-request-groups', 'x-auth-request-access-token', 'x-pomerium-jwt-assertion', 'x-pomerium-claim-email',
    'x-vouch-user', 'x-consumer-id', 'x-consumer-username', 'x-credential-identifier', 'x-anonymous-consumer',
    'x-authenticated-user', 'x-authenticated-userid', 'x-user', 'x-user-id', 'x-username', 'x-jwt-assertion', 'x-id-token'],
  // Apache mod_ssl (SSL_CLIENT_* as headers), nginx, HAProxy, F5, IIS ARR, Envoy XFCC, RFC 9440, ALB mTLS
  'client certificate': ['ssl-client-cert', 'ssl-client-s-dn', 'ssl-client-verify', 'ssl-client-i-dn', 'x-ssl-client-cert',
    'x-ssl-client-verify', 'x-ssl-cert', 'x-client-cert', 'x-client-cert-chain', 'x-client-certificate', 'x-client-verify',
    'x-client-dn', 'x-client-s-dn', 'x-arr-clientcert', 'x-arr-ssl', 'x-forwarded-client-cert', 'x-forwarded-tls-client-cert',
    'client-cert', 'client-cert-chain', 'x-amzn-mtls-clientcert', 'x-amzn-mtls-clientcert-subject', 'x-tls-client-cert'],
  // Google IAP and API Gateway, Cloud Endpoints, Azure App Service (Easy Auth), AWS ALB OIDC, API Gateway
  'cloud gateway identity': ['x-goog-authenticated-user-email', 'x-goog-authenticated-user-id', 'x-goog-iap-jwt-assertion',
    'x-apigateway-api-userinfo', 'x-endpoint-api-userinfo', 'x-ms-client-principal', 'x-ms-client-principal-name',
    'x-ms-client-principal-id', 'x-ms-client-principal-idp', 'x-ms-token-aad-access-token', 'x-ms-token-aad-id-token',
    'x-amzn-oidc-identity', 'x-amzn-oidc-data', 'x-amzn-oidc-accesstoken', 'x-amzn-requestcontext', 'cf-access-authenticated-user-email',
    'cf-access-jwt-assertion'],
  // Symfony CVE-2018-14773, IIS URL Rewrite, Express method-override, Envoy, Next.js CVE-2025-29927
  'target rewrite': ['x-original-url', 'x-original-uri', 'x-original-host', 'x-original-method', 'x-original-path',
    'x-rewrite-url', 'x-rewrite-uri', 'x-forwarded-host', 'x-forwarded-prefix', 'x-forwarded-path', 'x-forwarded-uri',
    'x-forwarded-server', 'x-http-method-override', 'x-http-method', 'x-method-override', 'x-http-host-override',
    'x-envoy-original-path', 'x-middleware-subrequest']
}

t.test('headers asserting an address, identity, certificate or rewritten target are stripped by family, in any spelling', async t => {
  for (const [family, names] of Object.entries(FAMILIES)) {
    for (const name of names) {
      // The allow-listed name passes in its exact spelling, in any case (tested below); its aliases are still here.
      const sent = name === PASSED ? spellings(name).filter(s => s.toLowerCase() !== name) : [name, ...spellings(name)]
      const lines = sent.map((s, i) => `${s}: forged-${i}`)
      const seen = await expectForwarded(t, h, `${family}: ${name}`, h.head('GET', '/public/x', lines), { target: '/public/x' })
      if (seen === null) continue
      t.notMatch(seen.head, /forged/, `${family}: ${name} in ${sent.length} spellings: none reached the function`)
    }
  }
})

t.test('ordinary neighbours of those families still pass', async t => {
  const ordinary = ['x-auth-token: a', 'x-client-id: b', 'x-request-id: c', 'x-tenant: d', 'x-amzn-trace-id: e', 'x-api-key: f',
    'x-user-agent: g', 'accept: h', 'x-ssl: i', 'x-remote: j', 'x-cfg: k']
  const seen = await expectForwarded(t, h, 'ordinary', h.head('GET', '/public/x', ordinary), { target: '/public/x' })
  const fields = headerFields(seen?.head ?? '')
  for (const line of ordinary) {
    const [name, value] = line.split(': ') as [string, string]
    if (name === 'x-ssl') continue // x-ssl-* is a family prefix; "x-ssl" itself is not one
    t.ok(fields.some(([n, v]) => n === name && v === value), `${name} passes`)
  }
})

t.test('passClientHeaders lets the exact name through, and only that spelling', async t => {
  const seen = await expectForwarded(t, h, 'allowed', h.head('GET', '/public/x', [
    'CF-Connecting-IP: 203.0.113.7', 'CF_Connecting_IP: 6.6.6.6', 'cf.connecting.ip: 6.6.6.6', 'True-Client-IP: 6.6.6.6'
  ]), { target: '/public/x' })
  const fields = headerFields(seen?.head ?? '')
  t.strictSame(fields.filter(([n]) => fold(n) === PASSED).map(([n, v]) => [n, v]), [[PASSED, '203.0.113.7']], 'one value, the exact spelling\'s')
  t.notOk(fields.some(([n]) => n === 'true-client-ip'), 'other family members are still stripped')
})
