// Pure logic of the fixed port policy, the iptables backend's rendering and kernel names (their real
// effect is proven with packets in firewall.test.ts and firewall-parity.test.ts, on both backends).
import test from 'ava';
import { KernelNames, idHash, CHAIN_NAME_MAX, IPSET_NAME_MAX } from '../src/firewall/iptables/names.js';
import {
  iptablesCidr,
  maxelemFor,
  ndTargetU32,
  ndLinkLayerU32,
  renderArp,
  renderDispatch,
  renderMacDispatch,
  renderMacSources,
  renderPortChains,
  renderRaw,
  DEFAULT_MARK_BIT,
  MARK_BITS,
  markHex,
  restoreScript,
} from '../src/firewall/iptables/render.js';
import { buildFilter } from '../src/firewall/planner.js';
import { linkLocalFromMac } from '../src/domain/mac.js';
import { validateGroup, validatePort } from '../src/domain/validate.js';
import type { SecurityGroup } from '../src/domain/model.js';
import { egressPolicy } from '../src/firewall/policy.js';
import { explain } from '../src/firewall/explain.js';
import { MARK_MASK, egressRules, ingressRules } from '../src/firewall/nftables/render.js';
import { NftNames } from '../src/firewall/nftables/names.js';
import { bridgeZones, zoneOf } from '../src/firewall/zones.js';

const names = new KernelNames('sg');
/** The iptables backend's default mark bit, as the tools print it. */
const M = markHex(DEFAULT_MARK_BIT);

test('kernel names fit the limits, differ for ids sharing a long prefix, and are the only ones owned', (t) => {
  const long = 'a'.repeat(500);
  for (const id of [long, `${long}b`, 'x', 'ü;\n"']) {
    t.true(names.groupSet(id, 6).length <= IPSET_NAME_MAX);
    for (const c of [
      names.ingressChain(id),
      names.egressChain(id),
      names.spoofChain(id),
      names.arpChain(id),
      names.macChain(id),
      names.dispatchChain,
      names.inputChain,
      names.rawChain,
    ])
      t.true(c.length <= CHAIN_NAME_MAX, c);
  }
  t.not(idHash(long), idHash(`${long}b`));
  t.is(idHash('x'), idHash('x'), 'stable');
  for (const ours of [
    names.ingressChain('p'),
    names.groupSet('g', 4),
    `${names.groupSet('g', 6)}.t`,
    names.dispatchChain,
    names.fallbackChain,
    names.arpDispatchChain,
    names.macDispatchChain,
    names.macChain('p'),
  ])
    t.true(names.owns(ours), ours);
  // Other programs' objects that merely start like ours are never ours.
  for (const foreign of [
    'neutron-openvswi-i1234',
    'sg-admin-allow',
    'sg-custom',
    'sg-dispatch',
    'sgtmp-0123456789abcdef',
    'sg4-nothex',
    'sg-i-0123',
    `${names.ingressChain('p')}x`,
    'sg-q-0123456789abcdef',
  ]) {
    t.false(names.owns(foreign), foreign);
  }
  t.not(new KernelNames('sgb').dispatchChain, names.dispatchChain, 'another prefix, other names');
  t.throws(() => new KernelNames('Bad Prefix'));
});

test('maxelem keeps headroom and grows in powers of two', (t) => {
  t.is(maxelemFor(10), 65536);
  t.is(maxelemFor(52_000), 65536);
  t.is(maxelemFor(53_000), 131072);
  t.is(maxelemFor(70_000), 131072);
  t.is(maxelemFor(110_000), 262144);
});

test('EUI-64 link-local addresses from MACs', (t) => {
  t.is(linkLocalFromMac('02:00:00:00:00:01'), 'fe80::0:ff:fe00:1');
  t.is(linkLocalFromMac('fa:16:3e:12:34:56'), 'fe80::f816:3eff:fe12:3456');
});

const port = validatePort({
  id: 'p1',
  host: 'h',
  device: 'tap1',
  mac: '02:00:00:00:00:01',
  fixedIps: ['10.0.0.1', 'fd00::1'],
  allowedAddressPairs: [{ ipAddress: '0.0.0.0/0' }, { ipAddress: '10.9.0.0/16', macAddress: '02:00:00:00:00:99' }],
  securityGroups: ['g'],
});
const group: SecurityGroup = validateGroup({
  id: 'g',
  stateful: true,
  rules: [
    { id: 'a', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', portRangeMin: 22, portRangeMax: 22, remoteGroupId: 'g' },
    { id: 'b', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', portRangeMin: 22, portRangeMax: 22, remoteGroupId: 'g' },
    { id: 'c', direction: 'egress', ethertype: 'IPv6', protocol: 'udp', portRangeMin: 53, portRangeMax: 54, remoteIpPrefix: 'fd00::/8' },
    { id: 'd', direction: 'egress', ethertype: 'IPv4', protocol: 'udplite', portRangeMin: 5, portRangeMax: 6 },
  ],
});
const noHolds = { failedSets: new Set<string>(), retrySets: [] };

test('a port filter names each set once and renders each distinct rule once', (t) => {
  const f = buildFilter({ group: (id) => (id === 'g' ? group : undefined) }, port, noHolds);
  t.deepEqual(f.sets, [{ groupId: 'g', family: 4 }], 'no IPv6 rule names the group');
  t.is(f.rules.length, 3);
  const chains = renderPortChains(f, names);
  const ingress = chains.v4.get(names.ingressChain('p1'))!;
  t.is(ingress.filter((l) => l.includes('--dport 22')).length, 1);
  t.is(ingress.at(-1), `-j ${names.fallbackChain}`);
  t.true(chains.v6.get(names.egressChain('p1'))!.includes('-d fd00::/8 -p udp -m udp --dport 53:54 -j RETURN'));
  t.true(
    chains.v4.get(names.egressChain('p1'))!.includes('-p udplite -m multiport --dports 5:6 -j RETURN'),
    'udplite ports through multiport, as Neutron',
  );
  t.deepEqual(chains.v4.get(names.spoofChain('p1')), [
    '-s 10.0.0.1/32 -m mac --mac-source 02:00:00:00:00:01 -j RETURN',
    '-m mac --mac-source 02:00:00:00:00:01 -j RETURN',
    '-s 10.9.0.0/16 -m mac --mac-source 02:00:00:00:00:99 -j RETURN',
    '-j DROP',
  ]);
  t.deepEqual(renderArp(f), [
    '-p ARP --arp-ip-src 10.0.0.1 --arp-mac-src 02:00:00:00:00:01 -j RETURN',
    '-p ARP --arp-mac-src 02:00:00:00:00:01 -j RETURN',
    '-p ARP --arp-ip-src 10.9.0.0/16 --arp-mac-src 02:00:00:00:00:99 -j RETURN',
    '-p ARP -j DROP',
  ]);
  t.deepEqual(renderMacSources(f), ['-s 02:00:00:00:00:01 -j RETURN', '-s 02:00:00:00:00:99 -j RETURN', '-j DROP'], 'each source MAC once');
  t.deepEqual(renderMacDispatch([f], new Set(), names, M), [[`-i tap1 -j ${names.macChain('p1')}`], []], 'stateful: nothing marked');
  t.deepEqual(renderMacDispatch([f], new Set(['p1']), names, M), [['-i tap1 -j DROP'], []], "a refused filter's port sends nothing");
  // A port with no fixed IP: any source from its MAC, as Neutron has it.
  const bare = buildFilter({ group: () => group }, validatePort({ ...port, fixedIps: [], allowedAddressPairs: [] }), noHolds);
  const bareChains = renderPortChains(bare, names);
  t.deepEqual(bareChains.v4.get(names.spoofChain('p1')), ['-m mac --mac-source 02:00:00:00:00:01 -j RETURN', '-j DROP']);
  t.true(bareChains.v6.get(names.spoofChain('p1'))!.includes('-m mac --mac-source 02:00:00:00:00:01 -j RETURN'));
  t.deepEqual(renderArp(bare), ['-p ARP --arp-mac-src 02:00:00:00:00:01 -j RETURN', '-p ARP -j DROP']);
  // A set that could not be made: rules naming it are held back (fail-closed), nothing else changes.
  const held = buildFilter({ group: () => group }, port, { failedSets: new Set(['4:g']), retrySets: [] });
  t.deepEqual(held.sets, []);
  t.is(held.rules.length, 2);
});

/** An IPv6 port in no group, with one allowed pair at a MAC of its own. */
function v6Port(pairNet: string) {
  return validatePort({
    id: 'p1',
    host: 'h',
    device: 'tap1',
    mac: '02:00:00:00:00:01',
    fixedIps: ['fd00::1'],
    allowedAddressPairs: [{ ipAddress: pairNet, macAddress: '02:00:00:00:00:99' }],
    securityGroups: [],
  });
}

test('IPv6 egress: only duplicate address detection before the anti-spoof check, advertisements only for own addresses', (t) => {
  const p = v6Port('fd00:a:0:7::/60');
  const egress = renderPortChains(buildFilter({ group: () => undefined }, p, noHolds), names).v6.get(names.egressChain('p1'))!;
  const jump = egress.indexOf(`-j ${names.spoofChain('p1')}`);
  const own = ['fd00::1', 'fd00:a::/60', linkLocalFromMac('02:00:00:00:00:01'), linkLocalFromMac('02:00:00:00:00:99')].map(ndTargetU32);
  const dad = '-s ::/128 -d ff02::/16 -p ipv6-icmp -m icmp6 --icmpv6-type';
  const probes = own.map((u) => `${dad} 135 -m u32 --u32 "${u}" -j RETURN`);
  t.deepEqual(egress.slice(0, jump), [`${dad} 131 -j RETURN`, `${dad} 143 -j RETURN`, ...probes]);
  const na = '-p ipv6-icmp -m icmp6 --icmpv6-type 136';
  const adverts = own.map((u) => `${na} -m u32 --u32 "${u}" -j RETURN`);
  // First the three link-layer address guards (the next test), then the advertisements.
  t.deepEqual(egress.slice(jump + 4, jump + 10), [...adverts, `${na} -j DROP`, '-p ipv6-icmp -m icmp6 --icmpv6-type 134 -j DROP']);
  // As iptables-save prints u32: next header ICMPv6, then the target's words, the last one masked.
  t.is(ndTargetU32('fd00:100::1'), '0x4&0xff00=0x3a00&&0x30=0xfd000100&&0x34=0x0&&0x38=0x0&&0x3c=0x1');
  t.is(ndTargetU32('fd00:a:0:7::/60'), '0x4&0xff00=0x3a00&&0x30=0xfd00000a&&0x34&0xfffffff0=0x0');
  t.is(ndTargetU32('fe80::/10'), '0x4&0xff00=0x3a00&&0x30&0xffc00000=0xfe800000');
  const anyPort = validatePort({ ...p, allowedAddressPairs: [{ ipAddress: '::/0' }] });
  const anyTarget = renderPortChains(buildFilter({ group: () => undefined }, anyPort, noHolds), names);
  t.true(anyTarget.v6.get(names.egressChain('p1'))!.includes(`${na} -j RETURN`), 'a ::/0 pair may advertise any address');
  const spoof = renderPortChains(buildFilter({ group: () => undefined }, p, noHolds), names).v6.get(names.spoofChain('p1'))!;
  const pairLla = `-s ${iptablesCidr(linkLocalFromMac('02:00:00:00:00:99'))} -m mac --mac-source 02:00:00:00:00:99 -j RETURN`;
  t.true(spoof.includes(pairLla), 'the link-local address of each MAC');
});

test("neighbour discovery from a port names no MAC but the port's own, on both backends and in explain", (t) => {
  const f = buildFilter({ group: () => undefined }, v6Port('fd00:a::/64'), noHolds);
  const macs = ['02:00:00:00:00:01', '02:00:00:00:00:99'];
  // As iptables-save prints u32: the payload length and next header (the fixed part alone), or the
  // fixed part and one option: its type and length 1 with the MAC's first two bytes, then the last four.
  t.deepEqual(ndLinkLayerU32(136, macs), [
    '0x4&0xffffff00=0x183a00',
    '0x4&0xffffff00=0x203a00&&0x40=0x2010200&&0x44=0x1',
    '0x4&0xffffff00=0x203a00&&0x40=0x2010200&&0x44=0x99',
  ]);
  t.deepEqual(ndLinkLayerU32(133, ['fa:16:3e:ab:cd:ef']), [
    '0x4&0xffffff00=0x83a00',
    '0x4&0xffffff00=0x103a00&&0x30=0x101fa16&&0x34=0x3eabcdef',
  ]);
  t.throws(() => ndLinkLayerU32(128, macs), { message: /no link-layer address option/ });
  const egress = renderPortChains(f, names).v6.get(names.egressChain('p1'))!;
  const jump = egress.indexOf(`-j ${names.spoofChain('p1')}`);
  const guard = (type: number) =>
    [`-p ipv6-icmp -m icmp6 --icmpv6-type ${type}`, ...ndLinkLayerU32(type, macs).map((u) => `-m u32 ! --u32 "${u}"`), '-j DROP'].join(' ');
  t.deepEqual(egress.slice(jump + 1, jump + 4), [guard(133), guard(135), guard(136)], 'after the anti-spoof check, before the rest');
  t.true(egress.indexOf('-p ipv6-icmp -m icmp6 --icmpv6-type 135 -j RETURN') > jump + 3, 'solicitations return only after the guard');

  // nftables: two rules a type (no "or"): neither the fixed part alone nor one option more, dropped;
  // one option naming another MAC, dropped.
  const nft = egressRules(f, new NftNames('sg'));
  const guards = nft.rules.filter((_, i) => JSON.stringify(nft.tags[i]) === '{"fixed":"neighbour link-layer address guard"}');
  const head = (type: number) => [
    { m: 'nfproto', v: 6 },
    { m: 'l4proto', v: 58 },
    { m: 'icmp', type },
  ];
  const tail = [{ m: 'counter' }, { m: 'verdict', v: 'drop' }];
  t.deepEqual(guards, [
    [...head(133), { m: 'ip6Length', v: 8, negate: true }, { m: 'ip6Length', v: 16, negate: true }, ...tail],
    [...head(133), { m: 'ndLinkLayerNot', at: 8, option: 1, macs }, ...tail],
    [...head(135), { m: 'ip6Length', v: 24, negate: true }, { m: 'ip6Length', v: 32, negate: true }, ...tail],
    [...head(135), { m: 'ndLinkLayerNot', at: 24, option: 1, macs }, ...tail],
    [...head(136), { m: 'ip6Length', v: 24, negate: true }, { m: 'ip6Length', v: 32, negate: true }, ...tail],
    [...head(136), { m: 'ndLinkLayerNot', at: 24, option: 2, macs }, ...tail],
  ]);

  // explain walks the same entries.
  const advert = (ndLinkLayer?: string) =>
    explain(f, () => [], {
      direction: 'egress',
      src: 'fd00::1',
      dst: 'fd00::2',
      proto: 58,
      icmpType: 136,
      ndTarget: 'fd00::1',
      ...(ndLinkLayer ? { ndLinkLayer } : {}),
    });
  t.is(advert().verdict, 'accept', 'no option');
  t.is(advert('02:00:00:00:00:99').verdict, 'accept', "an allowed pair's MAC");
  t.is(advert('02:00:00:00:00:01'.toUpperCase()).verdict, 'accept');
  const lie = advert('02:00:00:00:00:02');
  t.is(lie.verdict, 'drop');
  t.deepEqual(lie.decidedBy.rule, { fixed: 'neighbour link-layer address guard' });
});

test("DHCP replies go only to the port's fixed IPs and broadcast (IPv6: link-local); router advertisements only to a port with an IPv6 fixed IP", (t) => {
  const p = validatePort({
    id: 'p1',
    host: 'h',
    device: 'tap1',
    mac: '02:00:00:00:00:01',
    fixedIps: ['10.0.0.1', '10.0.0.2', 'fd00::1'],
    allowedAddressPairs: [{ ipAddress: '10.9.0.0/16' }, { ipAddress: 'fd00:9::/64' }],
    securityGroups: [],
  });
  const ingress = (port: typeof p) => renderPortChains(buildFilter({ group: () => undefined }, port, noHolds), names);
  const chains = ingress(p);
  const v4 = chains.v4.get(names.ingressChain('p1'))!;
  const v6 = chains.v6.get(names.ingressChain('p1'))!;
  const dhcp4 = '-p udp -m udp --sport 67 --dport 68 -j RETURN';
  t.deepEqual(
    v4.filter((l) => l.includes('--sport 67')),
    ['-d 10.0.0.1/32', '-d 10.0.0.2/32', '-d 255.255.255.255/32'].map((d) => `${d} ${dhcp4}`),
    'the fixed IPs and broadcast; not the allowed pairs',
  );
  const dhcp6 = '-p udp -m udp --sport 547 --dport 546 -j RETURN';
  t.deepEqual(
    v6.filter((l) => l.includes('--sport 547')),
    ['-d fd00::1/128', '-d fe80::/64'].map((d) => `${d} ${dhcp6}`),
  );
  t.true(v6.includes('-p ipv6-icmp -m icmp6 --icmpv6-type 134 -j RETURN'), 'an IPv6 fixed IP: router advertisements');
  const v4Only = ingress(validatePort({ ...p, fixedIps: ['10.0.0.1'] })).v6.get(names.ingressChain('p1'))!;
  t.false(
    v4Only.some((l) => l.includes('--icmpv6-type 134')),
    'none without one, whatever its pairs',
  );
  t.deepEqual(
    v4Only.filter((l) => l.includes('--sport 547')),
    [`-d fe80::/64 ${dhcp6}`],
  );
  // Both backends lower the same entries: nft's ingress chain holds as many DHCP rules.
  const nft = ingressRules(buildFilter({ group: () => undefined }, p, noHolds), new NftNames('sg'));
  t.is(nft.tags.filter((x) => 'fixed' in x && (x.fixed === 'DHCP' || x.fixed === 'DHCPv6')).length, 5);
});

test('the fixed policy admits nothing before the anti-spoof check but what leaves from an unspecified address, on both backends', (t) => {
  const p = validatePort({
    id: 'p1',
    host: 'h',
    device: 'tap1',
    mac: '02:00:00:00:00:01',
    fixedIps: ['10.0.0.1', 'fd00::1'],
    allowedAddressPairs: [{ ipAddress: '::/0' }],
    securityGroups: [],
  });
  const f = buildFilter({ group: () => undefined }, p, noHolds);
  const entries = egressPolicy(f);
  const before = entries.slice(
    0,
    entries.findIndex((e) => 'spoofCheck' in e),
  );
  t.true(before.length > 0);
  for (const e of before) t.true('match' in e && (e.match.src === '0.0.0.0/32' || e.match.src === '::/128'), JSON.stringify(e));
  // Each backend lowers the same entries: its chains put the anti-spoof check at the same place.
  const nft = egressRules(f, new NftNames('sg')).rules;
  t.is(
    nft.findIndex((r) => JSON.stringify(r).includes('"jump"')),
    before.length,
    'one nftables rule per entry',
  );
  const v6 = renderPortChains(f, names).v6.get(names.egressChain('p1'))!;
  t.true(v6.slice(0, v6.indexOf(`-j ${names.spoofChain('p1')}`)).every((l) => l.startsWith('-s ::/128 -d ff02::/16 ')));
});

test("dispatch: our ports' traffic through the sender's egress and the receiver's ingress; refused ports dropped; INPUT through egress", (t) => {
  const f = buildFilter({ group: () => group }, port, noHolds);
  const off = buildFilter({ group: () => group }, validatePort({ ...port, id: 'p2', device: 'tap2', portSecurityEnabled: false }), noHolds);
  const bad = buildFilter({ group: () => group }, validatePort({ ...port, id: 'p3', device: 'tap3' }), noHolds);
  const d = renderDispatch([off, f, bad], new Set(['p3']), 'bridged', names);
  const pd = (dir: string, dev: string) => `-m physdev --physdev-${dir} ${dev} --physdev-is-bridged`;
  t.deepEqual(d.forward.flat(), [
    `${pd('out', 'tap3')} -j ${names.fallbackChain}`,
    `${pd('in', 'tap3')} -j ${names.fallbackChain}`,
    `${pd('in', 'tap1')} -j ${names.portsChain}`,
    `${pd('in', 'tap2')} -j ${names.portsChain}`,
    `${pd('out', 'tap1')} -j ${names.portsChain}`,
    `${pd('out', 'tap2')} -j ACCEPT`,
  ]);
  t.deepEqual(d.ports.flat(), [
    `${pd('in', 'tap1')} -j ${names.egressChain('p1')}`,
    `${pd('out', 'tap1')} -j ${names.ingressChain('p1')}`,
    '-j ACCEPT',
  ]);
  t.deepEqual(d.input.flat(), [
    `-m physdev --physdev-in tap3 -j ${names.fallbackChain}`,
    `-m physdev --physdev-in tap1 -j ${names.egressChain('p1')}`,
  ]);
  const routed = renderDispatch([f], new Set(), 'routed', names);
  t.true(routed.forward.flat().includes(`-o tap1 -j ${names.portsChain}`));
  t.deepEqual(routed.input.flat(), [`-i tap1 -j ${names.egressChain('p1')}`]);
  // Unknown devices named like VM ports are dropped, after every known one.
  const closed = renderDispatch([f, off], new Set(), 'bridged', names, ['tap']);
  t.deepEqual(closed.forward.flat().slice(2, 3), [`${pd('in', 'tap+')} -j DROP`]);
  t.is(closed.forward.flat().at(-1), `${pd('out', 'tap+')} -j DROP`);
  t.deepEqual(closed.ports.flat().slice(-4), [
    `${pd('out', 'tap1')} -j ACCEPT`,
    `${pd('out', 'tap2')} -j ACCEPT`,
    `${pd('out', 'tap+')} -j DROP`,
    '-j ACCEPT',
  ]);
});

test('stateless ports are not tracked, from and to them; stateful ones are', (t) => {
  // The mark bit as the tools print it: the default, and any other an operator sets.
  t.is(M, '0x2000');
  // Never one of the nftables backend's bits (its port ids): both run while the backend is switched.
  for (let bit = MARK_BITS.min; bit <= MARK_BITS.max; bit++) t.is((2 ** bit) & MARK_MASK, 0, `bit ${bit}`);
  t.is(markHex(3), '0x8');
  t.is(markHex(31), '0x80000000');
  t.true(renderRaw([], 'bridged', false, markHex(3))[0]!.startsWith('-m mark --mark 0x8/0x8 '));
  const stateless = buildFilter({ group: () => ({ ...group, stateful: false }) }, port, noHolds);
  t.false(stateless.stateful);
  // Bridged, traffic to the port is known by the mark ebtables sets on frames to its MACs, which is
  // cleared once read.
  const mark = `-m mark --mark ${M}/${M}`;
  t.deepEqual(renderRaw([stateless], 'bridged', false, M), [
    '-m physdev --physdev-in tap1 -j CT --notrack',
    `-d 10.0.0.1/32 ${mark} -m addrtype ! --dst-type LOCAL -j CT --notrack`,
    `-d 10.9.0.0/16 ${mark} -m addrtype ! --dst-type LOCAL -j CT --notrack`,
    `${mark} -j MARK --set-xmark 0x0/${M}`,
  ]);
  t.deepEqual(renderRaw([stateless], 'bridged', true, M), [
    '-m physdev --physdev-in tap1 -j CT --notrack',
    `-d fd00::1/128 ${mark} -m addrtype ! --dst-type LOCAL -j CT --notrack`,
    `${mark} -j MARK --set-xmark 0x0/${M}`,
  ]);
  t.deepEqual(renderRaw([stateless], 'routed', false, M), [
    '-i tap1 -j CT --notrack',
    '-d 10.0.0.1/32 -m addrtype ! --dst-type LOCAL -j CT --notrack',
    '-d 10.9.0.0/16 -m addrtype ! --dst-type LOCAL -j CT --notrack',
  ]);
  // Its MACs (its own and its pairs') marked once each, though two ports share one.
  const twin = buildFilter(
    { group: () => ({ ...group, stateful: false }) },
    validatePort({ ...port, id: 'p2', device: 'tap2', mac: '02:00:00:00:00:02' }),
    noHolds,
  );
  const marks = (mac: string) => `-d ${mac} -j mark --mark-or ${M} --mark-target CONTINUE`;
  t.deepEqual(renderMacDispatch([stateless, twin], new Set(), names, M)[1], [
    marks('02:00:00:00:00:01'),
    marks('02:00:00:00:00:99'),
    marks('02:00:00:00:00:02'),
  ]);
  t.false(
    renderPortChains(stateless, names)
      .v4.get(names.ingressChain('p1'))!
      .some((l) => l.includes('ESTABLISHED')),
    'no return-traffic shortcut',
  );
  const stateful = buildFilter({ group: () => group }, port, noHolds);
  t.deepEqual(renderRaw([stateful], 'bridged', false, M), [`${mark} -j MARK --set-xmark 0x0/${M}`], 'only the mark cleared');
  t.deepEqual(renderRaw([stateful], 'routed', false, M), []);
});

test("routed, iptables: the other ports' addresses inside a stateless port's pair stay tracked, the most specific route winning", (t) => {
  const filter = (id: string, fixedIps: string[], pairs: string[], stateful: boolean) =>
    buildFilter(
      { group: () => ({ ...group, stateful }) },
      validatePort({
        ...port,
        id,
        device: `tap-${id}`,
        fixedIps,
        allowedAddressPairs: pairs.map((ipAddress) => ({ ipAddress })),
      }),
      noHolds,
    );
  // s: stateless, its pair the host's whole VM network; v: stateful inside it; w: stateful with a
  // network of its own inside it that holds s's address; x: stateful elsewhere; y: stateless inside.
  const s = filter('s', ['10.200.1.2'], ['10.200.0.0/16'], false);
  const v = filter('v', ['10.200.2.2', 'fd00:200:2::2'], [], true);
  const w = filter('w', ['10.200.3.2'], ['10.200.0.0/17'], true);
  const x = filter('x', ['10.99.0.2'], [], true);
  const y = filter('y', ['10.200.4.2'], [], false);
  const notrack = (ip: string) => `-d ${ip} -m addrtype ! --dst-type LOCAL -j CT --notrack`;
  const ret = (ip: string) => `-d ${ip} -j RETURN`;
  t.deepEqual(renderRaw([s, v, w, x, y], 'routed', false, M), [
    '-i tap-s -j CT --notrack',
    '-i tap-y -j CT --notrack',
    // Hosts first (their order among equals: the stateless ports' before the others'), then networks.
    notrack('10.200.1.2/32'),
    notrack('10.200.4.2/32'),
    ret('10.200.2.2/32'),
    ret('10.200.3.2/32'),
    ret('10.200.0.0/17'),
    notrack('10.200.0.0/16'),
  ]);
  // IPv6: no stateless address of that family, so no exception either.
  t.deepEqual(renderRaw([s, v], 'routed', true, M), ['-i tap-s -j CT --notrack']);
  // Bridged, the destination MAC tells the port: no exceptions.
  t.false(renderRaw([s, v], 'bridged', false, M).some((l) => l.includes('RETURN')));
  // No stateless port, no rule.
  t.deepEqual(renderRaw([v, w, x], 'routed', false, M), []);
});

test('conntrack zones: a bridge named by a prefix is tracked in the zone of its index; the rules after the notrack ones', (t) => {
  const bridge = 'bridge';
  const links = [
    { index: 7, name: 'qbr1', kind: bridge, master: undefined },
    { index: 3, name: 'brq9', kind: bridge },
    { index: 65_537, name: 'qbr2', kind: bridge },
    { index: 9, name: 'tap1', kind: 'tun', master: 7 },
    { index: 4, name: 'eth0' },
    { index: 5, name: 'qbr+x', kind: bridge },
    { index: 6, name: 'brq-ovs', kind: 'openvswitch' },
  ];
  t.deepEqual(bridgeZones(['qbr', 'brq'], links), [
    { bridge: 'brq9', zone: 3 },
    { bridge: 'qbr1', zone: 7 },
    { bridge: 'qbr2', zone: 1 },
  ]);
  t.is(zoneOf(['qbr'], { index: 4, name: 'eth0' }), 0, 'a device no prefix names: the default zone');
  // qbr+x is left out ("+" would make the rule's -i a wildcard), and brq-ovs (not a Linux bridge).
  t.is(zoneOf(['qbr'], { index: 65_536, name: 'qbr3', kind: bridge }), 0, 'an index past 16 bits wraps (to the default zone here)');
  t.deepEqual(bridgeZones([], links), []);
  const stateless = buildFilter({ group: () => ({ ...group, stateful: false }) }, port, noHolds);
  const zones = [
    { bridge: 'qbr1', zone: 7 },
    { bridge: 'qbr3', zone: 0 },
  ];
  t.deepEqual(renderRaw([stateless], 'bridged', false, M, zones).slice(0, 1), ['-m physdev --physdev-in tap1 -j CT --notrack']);
  t.deepEqual(
    renderRaw([], 'bridged', false, M, zones),
    ['-i qbr1 -j CT --zone 7', `-m mark --mark ${M}/${M} -j MARK --set-xmark 0x0/${M}`],
    'one rule per zoned bridge, none for the default zone',
  );
});

test('restore scripts declare, fill and delete only the named chains', (t) => {
  const chains = new Map([
    ['sg-a', ['-j DROP']],
    ['sg-b', ['-j RETURN']],
  ]);
  t.is(
    restoreScript('filter', chains, ['sg-a'], ['sg-old'], ['-I FORWARD 1 -j sg-d']),
    '*filter\n:sg-a - [0:0]\n:sg-old - [0:0]\n-A sg-a -j DROP\n-X sg-old\n-I FORWARD 1 -j sg-d\nCOMMIT\n',
  );
});

test('addresses are written as iptables-save prints them', (t) => {
  t.is(iptablesCidr('10.1.2.3'), '10.1.2.3/32');
  t.is(iptablesCidr('10.1.2.3/16'), '10.1.0.0/16');
  t.is(iptablesCidr('0.0.0.0/0'), '0.0.0.0/0');
  t.is(iptablesCidr('FD00:0:0:1::5/64'), 'fd00:0:0:1::/64');
  t.is(iptablesCidr('fe80::0:ff:fe00:1'), 'fe80::ff:fe00:1/128');
  t.is(iptablesCidr('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1/128');
});
