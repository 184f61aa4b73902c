// The one model validator and the address module: pure logic, no kernel. What it accepts is proven to
// render and filter in firewall.test.ts; here, what it accepts, refuses and how it spells things.
import test from 'ava';
import { canonicalCidr, contains, formatCidrWithPrefix, parseCidr } from '../src/domain/address.js';
import { PROTOCOL_NUMBERS } from '../src/domain/protocols.js';
import { portMemberAddresses, validateGroup, validateMember, validatePort, validateRule, ValidationError } from '../src/domain/validate.js';

test('addresses: one canonical spelling, as inet_ntop (ipset save, iptables-save) prints it', (t) => {
  const cases: [string, string][] = [
    ['10.0.0.1', '10.0.0.1'],
    ['10.0.0.1/32', '10.0.0.1'],
    ['10.1.2.3/16', '10.1.0.0/16'],
    ['FD00:0:0:1::5/64', 'fd00:0:0:1::/64'],
    ['fd00:0000:0000:0000:0000:0000:0000:0001', 'fd00::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['::1.2.3.4', '::1.2.3.4'],
    ['::102:304', '::1.2.3.4'],
    ['::ffff:10.0.0.1', '::ffff:10.0.0.1'],
    ['::1', '::1'],
    ['::', '::'],
    ['1::', '1::'],
    ['0.0.0.0/0', '0.0.0.0/0'],
  ];
  for (const [input, want] of cases) t.is(canonicalCidr(input), want, input);
  t.is(formatCidrWithPrefix(parseCidr('fe80::0:ff:fe00:1')), 'fe80::ff:fe00:1/128');
  t.true(contains(parseCidr('10.0.0.0/8'), parseCidr('10.2.3.4')));
  t.false(contains(parseCidr('10.0.0.0/8'), parseCidr('11.0.0.1')));
});

test('addresses: zone ids, leading zeros and malformed text are refused', (t) => {
  for (const bad of [
    'fe80::1%lo',
    'fe80::1%eth0',
    '010.0.0.1',
    '10.0.0.1/032',
    '10.0.0.1/33',
    '10.0.0.1/',
    '10.0.0',
    '10.0.0.256',
    '1:2:3:4:5:6:7:8:9',
    '1::2::3',
    ':1::',
    '::g',
    '10.0.0.1 ',
    ' 10.0.0.1',
    '1.2.3.4::',
    'fd00::1/129',
    '',
    'x'.repeat(70),
  ]) {
    t.throws(() => parseCidr(bad), undefined, bad);
  }
});

test('members: canonical; catch-alls and the unspecified address are never members', (t) => {
  t.is(validateMember('10.0.0.5/24'), '10.0.0.0/24');
  t.is(validateMember('FD00::1'), 'fd00::1');
  for (const bad of ['0.0.0.0/0', '::/0', '0.0.0.0', '::', 'fe80::1%lo', 42])
    t.throws(() => validateMember(bad), { instanceOf: ValidationError }, String(bad));
  t.deepEqual(
    portMemberAddresses({
      fixedIps: ['10.0.0.1'],
      allowedAddressPairs: [{ ipAddress: '0.0.0.0/0' }, { ipAddress: '10.0.0.1' }, { ipAddress: '10.9.0.0/16' }],
    }),
    ['10.0.0.1', '10.9.0.0/16'],
  );
});

const rule = (extra: Record<string, unknown>) => ({ id: 'r', direction: 'ingress', ethertype: 'IPv4', ...extra });

test("rules: every protocol Neutron accepts, by name or number, with Neutron's meaning", (t) => {
  for (const [name, n] of Object.entries(PROTOCOL_NUMBERS)) {
    const ethertype = [41, 43, 44, 58, 59, 60].includes(n) ? 'IPv6' : 'IPv4';
    t.is(validateRule(rule({ protocol: name, ethertype })).protocol, n === 0 ? null : n, name);
    t.is(validateRule(rule({ protocol: name.toUpperCase(), ethertype })).protocol, n === 0 ? null : n, name.toUpperCase());
    t.is(validateRule(rule({ protocol: String(n), ethertype })).protocol, n === 0 ? null : n, `"${n}"`);
  }
  t.is(validateRule(rule({ protocol: 'any' })).protocol, null);
  t.is(validateRule(rule({ protocol: null })).protocol, null);
  t.is(validateRule(rule({ protocol: 200 })).protocol, 200);
  // Neutron stores icmp (or 1) on an IPv6 rule as ipv6-icmp.
  t.is(validateRule(rule({ protocol: 'icmp', ethertype: 'IPv6' })).protocol, 58);
  t.is(validateRule(rule({ protocol: '1', ethertype: 'IPv6' })).protocol, 58);
  t.is(validateRule(rule({ protocol: 'icmpv6', ethertype: 'IPv6', portRangeMin: 128, portRangeMax: 0 })).portRangeMin, 128);
});

test('rules: port ranges as Neutron takes them', (t) => {
  t.like(validateRule(rule({ protocol: 'tcp', portRangeMin: 80, portRangeMax: 90 })), { protocol: 6, portRangeMin: 80, portRangeMax: 90 });
  t.like(validateRule(rule({ protocol: '17', portRangeMin: '53', portRangeMax: '53' })), {
    protocol: 17,
    portRangeMin: 53,
    portRangeMax: 53,
  });
  for (const p of ['udplite', 'dccp', 'sctp', '136', '33', '132'])
    t.like(validateRule(rule({ protocol: p, portRangeMin: 5, portRangeMax: 6 })), { portRangeMin: 5, portRangeMax: 6 }, p);
  t.like(
    validateRule(rule({ protocol: 'tcp', portRangeMin: 1, portRangeMax: 65535 })),
    { portRangeMin: null, portRangeMax: null },
    'the whole range is no range',
  );
  t.like(validateRule(rule({ protocol: 'icmp', portRangeMin: 8, portRangeMax: 0 })), { protocol: 1, portRangeMin: 8, portRangeMax: 0 });
  t.like(validateRule(rule({ protocol: 'icmp', portRangeMin: 8 })), { portRangeMin: 8, portRangeMax: null });
  const refused: [string, Record<string, unknown>][] = [
    ['max < min', { protocol: 'tcp', portRangeMin: 90, portRangeMax: 80 }],
    ['range without protocol', { portRangeMin: 80, portRangeMax: 80 }],
    ['port 0', { protocol: 'tcp', portRangeMin: 0, portRangeMax: 10 }],
    ['min missing', { protocol: 'udp', portRangeMax: 100 }],
    ['max missing', { protocol: 'udp', portRangeMin: 100 }],
    ['port > 65535', { protocol: 'tcp', portRangeMin: 1, portRangeMax: 70000 }],
    ['ports on gre', { protocol: 'gre', portRangeMin: 1, portRangeMax: 2 }],
    ['icmp code without type', { protocol: 'icmp', portRangeMax: 0 }],
    ['icmp type > 255', { protocol: 'icmp', portRangeMin: 256 }],
    ['ipv6-only protocol on IPv4', { protocol: 'ipv6-icmp' }],
    ['58 on IPv4', { protocol: 58 }],
    ['unknown name', { protocol: 'tcp6' }],
    ['protocol 256', { protocol: 256 }],
    ['protocol -1', { protocol: '-1' }],
    ['protocol object', { protocol: { $ne: 1 } }],
    ['prefix family differs', { remoteIpPrefix: 'fd00::/8' }],
    ['both remotes', { remoteIpPrefix: '10.0.0.0/8', remoteGroupId: 'g' }],
    ['bad prefix', { remoteIpPrefix: '10.0.0.0/40' }],
    ['zone id in prefix', { remoteIpPrefix: 'fe80::1%lo', ethertype: 'IPv6' }],
    ['direction', { direction: 'sideways' }],
    ['ethertype', { ethertype: 'IPv5' }],
  ];
  for (const [what, extra] of refused) t.throws(() => validateRule(rule(extra)), { instanceOf: ValidationError }, what);
});

test('rules: a prefix with host bits means its network; /0 means any', (t) => {
  t.is(validateRule(rule({ remoteIpPrefix: '10.1.2.3/8' })).remoteIpPrefix, '10.0.0.0/8');
  t.is(validateRule(rule({ remoteIpPrefix: '10.1.2.3' })).remoteIpPrefix, '10.1.2.3');
  t.is(validateRule(rule({ remoteIpPrefix: '0.0.0.0/0' })).remoteIpPrefix, null);
  t.is(validateRule(rule({ remoteIpPrefix: 'FD00::1/8', ethertype: 'IPv6' })).remoteIpPrefix, 'fd00::/8');
});

test('groups and ports: canonical, defaults explicit, hostile values refused', (t) => {
  const g = validateGroup({ id: 'g', rules: [rule({})] });
  t.deepEqual(g, {
    id: 'g',
    stateful: true,
    rules: [
      {
        id: 'r',
        direction: 'ingress',
        ethertype: 'IPv4',
        protocol: null,
        portRangeMin: null,
        portRangeMax: null,
        remoteIpPrefix: null,
        remoteGroupId: null,
      },
    ],
  });
  t.throws(() => validateGroup({ id: 'g', rules: Array.from({ length: 1001 }, (_, i) => rule({ id: `r${i}` })) }), {
    instanceOf: ValidationError,
  });
  t.throws(() => validateGroup({ id: 'x'.repeat(256), rules: [] }), { instanceOf: ValidationError });
  const port = {
    id: 'p',
    host: 'h',
    device: 'tap1',
    mac: '02:00:00:00:00:0A',
    fixedIps: ['10.0.0.1', 'FD00::1'],
    securityGroups: ['g', 'g'],
  };
  t.deepEqual(validatePort(port), {
    ...port,
    mac: '02:00:00:00:00:0a',
    fixedIps: ['10.0.0.1', 'fd00::1'],
    securityGroups: ['g'],
    allowedAddressPairs: [],
    portSecurityEnabled: true,
  });
  const refused: [string, Record<string, unknown>][] = [
    ['zone id', { fixedIps: ['fe80::1%lo'] }],
    ['network as fixed ip', { fixedIps: ['10.0.0.0/24'] }],
    ['unspecified', { fixedIps: ['0.0.0.0'] }],
    ['device injection', { device: 'eth0 -j ACCEPT' }],
    ['device too long', { device: 'a'.repeat(16) }],
    ['multicast mac', { mac: '01:00:5e:00:00:01' }],
    ['zero mac', { mac: '00:00:00:00:00:00' }],
    ['pair prefix', { allowedAddressPairs: [{ ipAddress: '10.0.0.1/40' }] }],
    ['pair mac', { allowedAddressPairs: [{ ipAddress: '10.0.0.1', macAddress: 'ff:ff:ff:ff:ff:ff' }] }],
    ['groups not an array', { securityGroups: 'g' }],
    ['too many groups', { securityGroups: Array.from({ length: 65 }, (_, i) => `g${i}`) }],
    ['port security not boolean', { portSecurityEnabled: 'no' }],
    ['migration destination not a string', { migratingTo: 7 }],
    ['migration destination too long', { migratingTo: 'h'.repeat(256) }],
    ['migration of an unbound port', { host: '', migratingTo: 'h2' }],
  ];
  for (const [what, extra] of refused) t.throws(() => validatePort({ ...port, ...extra }), { instanceOf: ValidationError }, what);
  // A live migration's destination: a second host, never the port's own (src/domain/placement.ts).
  t.is(validatePort({ ...port, migratingTo: 'h2' }).migratingTo, 'h2');
  t.false('migratingTo' in validatePort({ ...port, migratingTo: 'h' }), 'the host itself is no second host');
  t.false('migratingTo' in validatePort({ ...port, migratingTo: '' }));
  // Distinct MACs, the port's own counted: 15 pairs at MACs of their own (and any number at the
  // port's MAC, or at one MAC shared by many) are taken, 16 are not.
  const pairsAt = (n: number, macs = n) =>
    Array.from({ length: n }, (_, i) => ({
      ipAddress: `10.1.0.${i}`,
      macAddress: `02:00:00:00:01:${(i % macs).toString(16).padStart(2, '0')}`,
    }));
  t.is(validatePort({ ...port, allowedAddressPairs: pairsAt(15) }).allowedAddressPairs.length, 15);
  t.is(validatePort({ ...port, allowedAddressPairs: pairsAt(200, 2) }).allowedAddressPairs.length, 200);
  t.throws(() => validatePort({ ...port, allowedAddressPairs: pairsAt(16) }), {
    instanceOf: ValidationError,
    message: "port p: has 17 MACs (its own and its allowed pairs'), more than 16",
  });
});
