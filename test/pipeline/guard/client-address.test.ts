import t from 'tap'
import { normalizeAddress } from '../../../src/pipeline/guard/client-address.js'

// Issue 18: one client address, IPv4-mapped IPv6 as the dotted quad, whatever its spelling.

t.test('IPv4-mapped IPv6 becomes the dotted quad', async t => {
  for (const mapped of ['::ffff:10.1.2.3', '::FFFF:10.1.2.3', '::ffff:a01:203', '0:0:0:0:0:ffff:10.1.2.3', '0000:0000:0000:0000:0000:FFFF:0A01:0203']) {
    t.equal(normalizeAddress(mapped), '10.1.2.3', mapped)
  }
  t.equal(normalizeAddress('::ffff:127.0.0.1'), '127.0.0.1')
  t.equal(normalizeAddress('::ffff:ffff:ffff'), '255.255.255.255')
})

t.test('other addresses keep their meaning', async t => {
  t.equal(normalizeAddress('10.1.2.3'), '10.1.2.3', 'IPv4 as is')
  t.equal(normalizeAddress('::1'), '::1')
  t.equal(normalizeAddress('2001:DB8:0:0:0:0:0:1'), '2001:db8::1', 'IPv6 in its canonical form')
  t.equal(normalizeAddress('::10.1.2.3'), '::a01:203', 'IPv4-compatible (not mapped) stays IPv6')
  t.equal(normalizeAddress('64:ff9b::10.1.2.3'), '64:ff9b::a01:203', 'NAT64 stays IPv6')
  t.equal(normalizeAddress('fe80::1%eth0'), 'fe80::1%eth0', 'a zone id is kept')
  t.equal(normalizeAddress(''), '', 'no address stays none')
})
