// Pure logic of the renderer and kernel names (their real effect is proven with packets in
// firewall.test.ts).
import test from 'ava';
import { KernelNames, idHash, CHAIN_NAME_MAX, IPSET_NAME_MAX } from '../src/firewall/names.js';
import { linkLocalFromMac, maxelemFor, render, restoreScript, portAddresses } from '../src/firewall/render.js';
import type { Port, SecurityGroup } from '../src/model.js';
import { validateGroup } from '../src/domain/validate.js';

const names = new KernelNames('sg');

test('kernel names fit the limits and differ for ids sharing a long prefix', (t) => {
  const long = 'a'.repeat(500);
  for (const id of [long, `${long}b`, 'x', 'ü;\n"']) {
    t.true(names.groupSet(id, 'inet6').length <= IPSET_NAME_MAX);
    for (const c of [names.ingressChain(id), names.egressChain(id), names.spoofChain(id), names.dispatchChain]) t.true(c.length <= CHAIN_NAME_MAX, c);
  }
  t.not(idHash(long), idHash(`${long}b`));
  t.is(idHash('x'), idHash('x'), 'stable');
  t.true(names.owns(names.ingressChain('p')));
  t.true(names.owns(names.groupSet('g', 'inet')));
  t.false(names.owns('neutron-openvswi-i1234'));
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

const port: Port = {
  id: 'p1', host: 'h', device: 'tap1', mac: '02:00:00:00:00:01', fixedIps: ['10.0.0.1', 'fd00::1'],
  allowedAddressPairs: [{ ipAddress: '0.0.0.0/0' }, { ipAddress: '10.9.0.0/16', macAddress: '02:00:00:00:00:99' }],
  securityGroups: ['g'], portSecurityEnabled: true,
};
const group: SecurityGroup = validateGroup({
  id: 'g', stateful: true,
  rules: [
    { id: 'a', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', portRangeMin: 22, portRangeMax: 22, remoteGroupId: 'g' },
    { id: 'b', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', portRangeMin: 22, portRangeMax: 22, remoteGroupId: 'g' },
    { id: 'c', direction: 'egress', ethertype: 'IPv6', protocol: 'udp', portRangeMin: 53, portRangeMax: 54, remoteIpPrefix: 'fd00::/8' },
  ],
});

test('rendering: one set per referenced group and family, catch-alls left out, duplicate rules once', (t) => {
  const r = render({ ports: [port], groups: new Map([['g', group]]), members: new Map([['g', new Set(['10.0.0.1', '0.0.0.0/0', '10.9.0.0/16', 'fd00::1'])]]), names, mode: 'bridged' });
  t.deepEqual([...r.sets.keys()], [names.groupSet('g', 'inet')], 'no IPv4 rule names no v6 set');
  t.deepEqual(r.sets.get(names.groupSet('g', 'inet'))!.members.sort(), ['10.0.0.1', '10.9.0.0/16']);
  const ingress = r.v4.get(names.ingressChain('p1'))!;
  t.is(ingress.filter((l) => l.includes('--dport 22')).length, 1);
  t.is(ingress.at(-1), `-j ${names.fallbackChain}`);
  const egress6 = r.v6.get(names.egressChain('p1'))!;
  t.true(egress6.includes('-d fd00::/8 -p udp -m udp --dport 53:54 -j RETURN'));
  const spoof4 = r.v4.get(names.spoofChain('p1'))!;
  t.deepEqual(spoof4, [
    '-s 10.0.0.1/32 -m mac --mac-source 02:00:00:00:00:01 -j RETURN',
    '-m mac --mac-source 02:00:00:00:00:01 -j RETURN',
    '-s 10.9.0.0/16 -m mac --mac-source 02:00:00:00:00:99 -j RETURN',
    '-j DROP',
  ]);
  t.deepEqual(portAddresses(port), ['10.0.0.1', 'fd00::1', '10.9.0.0/16']);
  const routed = render({ ports: [port], groups: new Map([['g', group]]), members: new Map(), names, mode: 'routed' });
  t.true(routed.v4.get(names.dispatchChain)!.includes(`-o tap1 -j ${names.portsChain}`));
});

test('restore scripts declare, fill and delete only the named chains', (t) => {
  const chains = new Map([['sg-a', ['-j DROP']], ['sg-b', ['-j RETURN']]]);
  t.is(restoreScript(chains, ['sg-a'], ['sg-old'], '-I FORWARD 1 -j sg-dispatch'),
    '*filter\n:sg-a - [0:0]\n:sg-old - [0:0]\n-A sg-a -j DROP\n-X sg-old\n-I FORWARD 1 -j sg-dispatch\nCOMMIT\n');
});

test('addresses are written as iptables-save prints them', async (t) => {
  const { canonicalCidr } = await import('../src/firewall/render.js');
  t.is(canonicalCidr('10.1.2.3'), '10.1.2.3/32');
  t.is(canonicalCidr('10.1.2.3/16'), '10.1.0.0/16');
  t.is(canonicalCidr('0.0.0.0/0'), '0.0.0.0/0');
  t.is(canonicalCidr('FD00:0:0:1::5/64'), 'fd00:0:0:1::/64');
  t.is(canonicalCidr('fe80::0:ff:fe00:1'), 'fe80::ff:fe00:1/128');
  t.is(canonicalCidr('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1/128');
});
