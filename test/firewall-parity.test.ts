// Neutron's semantics beyond the port chains, with real packets in throwaway namespaces, on both
// backends: traffic from a VM to the host itself (INPUT), ARP and IPv6 neighbour spoofing protection,
// stateless groups (NOTRACK), connections cut when a port leaves a group or an allowed-pair address
// stops being admitted, and coexistence with other programs' objects that merely look like ours.
import type { ExecutionContext } from 'ava';
import type { FirewallEngine } from '../src/firewall/engine.js';
import type { SecurityGroupInput } from '../src/domain/model.js';
import { kernelTest } from './helpers/gate.js';
import { Topology, type Vm } from './helpers/topology.js';
import { NFT, openEngine, type Backend, type EngineOptions } from './helpers/backends.js';
import {
  linkLayerOption,
  mldDone,
  NA_OVERRIDE,
  neighbourAdvert,
  neighbourSolicit,
  routerAdvert,
  routerSolicit,
  solicitedNode,
  unknownOption,
} from './helpers/ndp.js';
import { icmp6Listener, otherFrame, sendFrames, udp6Frame, udpFrame, udpListener } from './helpers/frames.js';
import { waitFor } from './helpers/wait.js';
import { LIMITS } from '../src/domain/limits.js';
import { linkLocalFromMac } from '../src/domain/mac.js';
import { egressAll, firewallHost, onBothBackends, vmPort, type FirewallHost } from './helpers/firewall.js';

function selfGroup(id: string): SecurityGroupInput {
  return {
    id,
    rules: [
      { id: `${id}-i4`, direction: 'ingress', ethertype: 'IPv4', remoteGroupId: id },
      { id: `${id}-i6`, direction: 'ingress', ethertype: 'IPv6', remoteGroupId: id },
      ...egressAll,
    ],
  };
}

/** Applies, and checks each port's filter is reported in the kernel before anything is asserted. */
async function applied(t: ExecutionContext, fw: FirewallEngine, ...vms: Vm[]): Promise<void> {
  await fw.flush();
  for (const vm of vms) t.true(fw.portInKernel(`port-${vm.name}`), `${vm.name} filtered`);
}

onBothBackends("VM → host traffic goes through the port's egress rules (INPUT), DHCP as Neutron allows it", async (t, backend) => {
  const c = await firewallHost(t, backend);
  const { topo, fw } = c;
  const [a, b] = [topo.addVm(1), topo.addVm(2)];
  const host = topo.hostAddress('10.100.0.254/24');
  topo.serveOnHost(7000);
  topo.serveOnHost(67);
  fw.setGroup({
    id: 'tcp7000',
    rules: [{ id: 'o', direction: 'egress', ethertype: 'IPv4', protocol: 'tcp', portRangeMin: 7000, portRangeMax: 7000 }],
  });
  fw.setGroup({ id: 'open', rules: egressAll });
  fw.setPort(vmPort(a, ['tcp7000']));
  fw.setPort(vmPort(b, ['open']));
  await applied(t, fw, a, b);
  t.true(topo.ping(b, host), 'egress all: the host answers');
  t.false(topo.ping(a, host), 'no egress rule for ICMP: the host never sees it');
  t.true(topo.tcp(a, host, 7000), 'the egress rule admits tcp 7000 to the host');
  t.false(topo.udp(a, host, 7000), 'but not udp');
  t.true(topo.udp(a, host, 67, 68), 'DHCP client traffic to the host passes whatever the rules');
  // A VM claiming another address reaches the host no more than it reaches other VMs.
  topo.addAddress(b, '10.100.0.99/24');
  t.false(topo.tcp(b, host, 7000, '10.100.0.99'), 'anti-spoofing applies to INPUT too');
});

onBothBackends('devices named like VM ports that the agent does not know are dropped, not passed (opt-in)', async (t, backend) => {
  const topo = new Topology();
  const [a, b, unknown] = [topo.addVm(1), topo.addVm(2), topo.addVm(3)];
  // The topology names devices t<tag>v<n>: the common part is the prefix a deployment would give (tap).
  const prefix = a.device.slice(0, a.device.indexOf('v'));
  const fw = await openEngine(backend, topo.host, { coalesceMs: 5, unknownDevicePrefixes: [prefix] });
  t.teardown(async () => {
    await fw.close();
    topo.destroy();
  });
  fw.setGroup(selfGroup('default'));
  fw.setPort(vmPort(a, ['default']));
  fw.setPort(vmPort(b, ['default']));
  fw.setGroupMembers('default', [a.ip4, b.ip4, unknown.ip4]);
  await applied(t, fw, a, b);
  t.true(topo.ping(a, b.ip4), 'known ports as their rules say');
  t.false(topo.ping(unknown, b.ip4), 'an unknown port sends nothing');
  t.false(topo.ping(a, unknown.ip4), 'and receives nothing, though its address is a member');
  fw.setPort(vmPort(unknown, ['default']));
  await applied(t, fw, unknown);
  t.true(topo.ping(unknown, b.ip4), 'once known, filtered like the rest');
  fw.setPort(vmPort(b, ['default'], { portSecurityEnabled: false }));
  await fw.flush();
  t.true(topo.ping(b, a.ip4), 'a known port without port security passes unfiltered');
  fw.removePort(`port-${unknown.name}`);
  await fw.flush();
  t.false(topo.ping(unknown, b.ip4), 'a port gone: its device is unknown again');
});

onBothBackends('ARP spoofing: a port may send ARP only for its own addresses and allowed pairs', async (t, backend) => {
  const c = await firewallHost(t, backend);
  const { topo, fw } = c;
  const [a, b, v, loose] = [topo.addVm(1), topo.addVm(2), topo.addVm(3), topo.addVm(4)];
  fw.setGroup(selfGroup('default'));
  fw.setPort(vmPort(a, ['default'], { allowedAddressPairs: [{ ipAddress: '10.100.0.80/29' }] }));
  fw.setPort(vmPort(b, ['default']));
  fw.setPort(vmPort(v, ['default']));
  fw.setPort(vmPort(loose, [], { portSecurityEnabled: false }));
  fw.setGroupMembers('default', [a.ip4, b.ip4, v.ip4]);
  await applied(t, fw, a, b, v);
  const fresh = () => v.ns.run('ip', ['neigh', 'flush', 'dev', 'eth0']);
  fresh();
  t.true(topo.arping(a, v.ip4, a.ip4), 'ARP for its own address is answered');
  t.is(topo.neighbour(v, a.ip4), a.mac);
  fresh();
  t.false(topo.arping(a, v.ip4, b.ip4), "ARP claiming another VM's address is dropped");
  t.not(topo.neighbour(v, b.ip4), a.mac, 'the victim never learnt the lie');
  fresh();
  t.true(topo.arping(a, v.ip4, '10.100.0.83'), 'an address of an allowed-pair network may be claimed');
  // Proof the check can fail: a port without port security is not protected.
  fresh();
  t.true(topo.arping(loose, v.ip4, b.ip4), 'unprotected port: the lie gets through');
  t.is(topo.neighbour(v, b.ip4), loose.mac);
});

onBothBackends('IPv6 neighbour spoofing: a port advertises and probes only its own addresses, and only from them', async (t, backend) => {
  const c = await firewallHost(t, backend);
  if (!c) return;
  const { topo, fw } = c;
  const [a, b, v, loose] = [topo.addVm(1), topo.addVm(2), topo.addVm(3), topo.addVm(4)];
  fw.setGroup(selfGroup('default'));
  fw.setPort(vmPort(a, ['default'], { allowedAddressPairs: [{ ipAddress: 'fd00:100::80/124' }] }));
  fw.setPort(vmPort(b, ['default']));
  const tentative = 'fd00:100::33';
  fw.setPort(vmPort(v, ['default'], { fixedIps: [v.ip4, v.ip6, tentative] }));
  fw.setPort(vmPort(loose, [], { portSecurityEnabled: false }));
  await applied(t, fw, a, b, v);
  const fake = '02:00:00:00:ee:ee';
  // The victim's cache holds a stale entry for each address at stake: an advertisement with the
  // override flag, or a solicitation, from a neighbour replaces it.
  const believe = (ip: string, mac: string) => {
    v.ns.exec('ip', ['-6', 'neigh', 'replace', ip, 'lladdr', mac, 'dev', 'eth0', 'nud', 'stale']);
  };
  const cached = (ip: string) => topo.neighbour(v, ip);
  const advert = (from: Vm, src: string, target: string) =>
    neighbourAdvert({ from: from.mac, src, dst: v.ip6, toMac: v.mac, target, lladdr: from.mac, flags: NA_OVERRIDE });
  /** Sends the frames from `from`, then an advertisement of its own address that the filter passes:
   *  once the victim has learnt that one, the frames before it were delivered or dropped. */
  const send = async (from: Vm, what: string, ...frames: Buffer[]) => {
    believe(b.ip6, b.mac);
    believe(from.ip6, fake);
    sendFrames(from.ns, 'eth0', [...frames, advert(from, from.ip6, from.ip6)]);
    const explain = () => `${from.name} is at ${cached(from.ip6)} for ${v.name}`;
    await waitFor(`${what}: the advertisement after it`, () => cached(from.ip6) === from.mac, 20_000, explain);
  };

  await send(a, 'an advertisement of its own address passes');
  await send(a, "an advertisement of another VM's address", advert(a, a.ip6, b.ip6));
  t.is(cached(b.ip6), b.mac, "an advertisement claiming another VM's address is dropped");
  await send(a, 'the same from a spoofed source', advert(a, b.ip6, b.ip6));
  t.is(cached(b.ip6), b.mac, 'and from a spoofed source');
  await send(a, 'from its link-local address', advert(a, linkLocalFromMac(a.mac), b.ip6));
  t.is(cached(b.ip6), b.mac, 'and from its own link-local address');
  const solicit = neighbourSolicit({ from: a.mac, src: b.ip6, dst: v.ip6, toMac: v.mac, target: v.ip6, lladdr: a.mac });
  await send(a, 'a solicitation from a spoofed source', solicit);
  t.is(cached(b.ip6), b.mac, "a solicitation from another VM's address teaches nothing either");

  // Its own addresses: the link-local one and those of an allowed-pair network, none beyond it.
  const lla = linkLocalFromMac(a.mac);
  for (const ip of [lla, 'fd00:100::83', 'fd00:100::90']) believe(ip, fake);
  const own = [advert(a, lla, lla), advert(a, a.ip6, 'fd00:100::83'), advert(a, a.ip6, 'fd00:100::90')];
  await send(a, 'advertisements of its own addresses', ...own);
  t.is(cached(lla), a.mac, 'its link-local address may be advertised');
  t.is(cached('fd00:100::83'), a.mac, 'an address of its allowed-pair network may be advertised');
  t.is(cached('fd00:100::90'), fake, 'an address beyond that network may not');

  // Duplicate address detection is not another port's to answer: the victim takes a new address of
  // its own and keeps it tentative for long (one probe, ten minutes to wait for a defence).
  v.ns.exec('sysctl', ['-qw', 'net.ipv6.conf.eth0.accept_dad=1', 'net.ipv6.neigh.eth0.retrans_time_ms=600000']);
  v.ns.exec('ip', ['addr', 'add', `${tentative}/64`, 'dev', 'eth0']);
  const state = () => v.ns.exec('ip', ['-6', 'addr', 'show', 'dev', 'eth0', 'to', `${tentative}/128`]);
  const probe = (from: Vm) => neighbourSolicit({ from: from.mac, src: '::', dst: solicitedNode(tentative), target: tentative });
  await send(a, "a probe for the victim's tentative address", probe(a));
  t.regex(state(), /tentative/);
  t.notRegex(state(), /dadfailed/, "a probe for another port's address is dropped: the victim keeps it");

  // Proof the checks can fail: a port without port security is not protected.
  await send(loose, "an unprotected port's lie", advert(loose, loose.ip6, b.ip6));
  t.is(cached(b.ip6), loose.mac, 'unprotected port: the lie gets through');
  sendFrames(loose.ns, 'eth0', [probe(loose)]);
  await waitFor("an unprotected port's probe makes the victim give up its address", () => state().includes('dadfailed'), 20_000, state);
});

onBothBackends("IPv6 neighbour discovery names no MAC but the port's own (the twin of ARP's sender MAC check)", async (t, backend) => {
  const c = await firewallHost(t, backend);
  if (!c) return;
  const { topo, fw } = c;
  const [a, b, v, loose] = [topo.addVm(1), topo.addVm(2), topo.addVm(3), topo.addVm(4)];
  // a's addresses: its own, a pair network at its MAC, and one address at a MAC of its pair's.
  const pairMac = '02:00:00:00:dd:dd';
  const atPairMac = 'fd00:100::90';
  fw.setGroup(selfGroup('default'));
  // The victim admits any IPv6 in, router solicitations included (a router's port would).
  fw.setGroup({ id: 'open', rules: [{ id: 'in6', direction: 'ingress', ethertype: 'IPv6' }, ...egressAll] });
  const pairs = [{ ipAddress: 'fd00:100::80/124' }, { ipAddress: atPairMac, macAddress: pairMac }];
  fw.setPort(vmPort(a, ['default'], { allowedAddressPairs: pairs }));
  fw.setPort(vmPort(b, ['default']));
  fw.setPort(vmPort(v, ['open']));
  fw.setPort(vmPort(loose, [], { portSecurityEnabled: false }));
  await applied(t, fw, a, b, v);
  // The victim acts as a router, so that it learns from solicitations to routers too.
  v.ns.exec('sysctl', ['-qw', 'net.ipv6.conf.eth0.forwarding=1']);
  const fake = '02:00:00:00:ee:ee';
  const believe = (ip: string) => v.ns.exec('ip', ['-6', 'neigh', 'replace', ip, 'lladdr', fake, 'dev', 'eth0', 'nud', 'stale']);
  const cached = (ip: string) => topo.neighbour(v, ip);
  /** An advertisement to the victim, from `from`'s address and MAC unless others are given. */
  const advert = (from: Vm, target: string, options?: Buffer[], fromMac = from.mac, src = from.ip6) =>
    neighbourAdvert({
      from: fromMac,
      src,
      dst: v.ip6,
      toMac: v.mac,
      target,
      lladdr: fromMac,
      flags: NA_OVERRIDE,
      ...(options ? { options } : {}),
    });
  /** Sends the frames from `from`'s device, then an advertisement of its own address the filter
   *  passes: once the victim has learnt that one, the frames before it were delivered or dropped. */
  const send = async (from: Vm, what: string, ...frames: Buffer[]) => {
    believe(from.ip6);
    sendFrames(from.ns, 'eth0', [...frames, advert(from, from.ip6)]);
    const explain = () => `${from.name} is at ${cached(from.ip6)} for ${v.name}`;
    await waitFor(`${what}: the advertisement after it`, () => cached(from.ip6) === from.mac, 20_000, explain);
  };
  const lies = ['fd00:100::83', 'fd00:100::84', 'fd00:100::85', 'fd00:100::86'];
  for (const ip of [...lies, atPairMac, 'fd00:100::87', 'fd00:100::88', 'fd00:100::89', 'fd00:100::8c']) believe(ip);

  await send(
    a,
    "a's own addresses said to be at b's MAC",
    advert(a, lies[0]!, [linkLayerOption(2, b.mac)]),
    // An option nobody knows first, then the lie: a check of the first option alone would miss it.
    advert(a, lies[1]!, [unknownOption(), linkLayerOption(2, b.mac)]),
    neighbourSolicit({ from: a.mac, src: lies[2]!, dst: v.ip6, toMac: v.mac, target: v.ip6, lladdr: b.mac }),
    routerSolicit({ from: a.mac, src: lies[3]!, lladdr: b.mac }),
  );
  for (const ip of lies) t.is(cached(ip), fake, `${ip}: the victim never learnt it at b's MAC`);
  // Its own MAC, then b's: Linux believes the first option, other stacks may believe the last; either
  // way a message of two options is not the port's to send.
  await send(a, 'two options', advert(a, 'fd00:100::89', [linkLayerOption(2, a.mac), linkLayerOption(2, b.mac)]));
  t.is(cached('fd00:100::89'), fake, 'an advertisement of two options is dropped');

  // What a port may say: its own MACs, the pair's for the pair's address, or no MAC at all.
  await send(
    a,
    'its own MACs',
    advert(a, 'fd00:100::83', [linkLayerOption(2, a.mac)]),
    advert(a, atPairMac, [linkLayerOption(2, pairMac)], pairMac, atPairMac),
    neighbourSolicit({ from: a.mac, src: 'fd00:100::85', dst: v.ip6, toMac: v.mac, target: v.ip6, lladdr: a.mac }),
    routerSolicit({ from: a.mac, src: 'fd00:100::86', lladdr: a.mac }),
  );
  t.is(cached('fd00:100::83'), a.mac, 'an advertisement at its own MAC');
  t.is(cached(atPairMac), pairMac, "an advertisement of the pair's address at the pair's MAC");
  t.is(cached('fd00:100::85'), a.mac, 'a solicitation at its own MAC');
  t.is(cached('fd00:100::86'), a.mac, 'a router solicitation at its own MAC');

  // Behind an extension header, a message with an option is dropped on both backends (iptables'
  // u32 tests need ICMPv6 right after the IPv6 header; nftables compares the payload length, the
  // extension header included), even at the port's own MAC.
  const behind = (target: string, lladdr: string) =>
    neighbourAdvert({ from: a.mac, src: a.ip6, dst: v.ip6, toMac: v.mac, target, lladdr, flags: NA_OVERRIDE, hopByHop: true });
  believe('fd00:100::8a');
  believe('fd00:100::8b');
  await send(a, 'behind a hop-by-hop header', behind('fd00:100::8a', b.mac), behind('fd00:100::8b', a.mac));
  t.is(cached('fd00:100::8a'), fake, 'behind an extension header, at another MAC: dropped');
  t.is(cached('fd00:100::8b'), fake, 'behind an extension header, even at its own MAC: dropped');

  // Proof the checks can fail: a port without port security is not protected.
  await send(
    loose,
    "an unprotected port's lies",
    advert(loose, 'fd00:100::87', [unknownOption(), linkLayerOption(2, b.mac)]),
    routerSolicit({ from: loose.mac, src: 'fd00:100::88', lladdr: b.mac }),
    neighbourAdvert({
      from: loose.mac,
      src: loose.ip6,
      dst: v.ip6,
      toMac: v.mac,
      target: 'fd00:100::8c',
      lladdr: b.mac,
      flags: NA_OVERRIDE,
      hopByHop: true,
    }),
  );
  t.is(cached('fd00:100::87'), b.mac, 'unprotected port: the lie gets through');
  t.is(cached('fd00:100::88'), b.mac, 'unprotected port: a router solicitation teaches it too');
  t.is(cached('fd00:100::8c'), b.mac, 'unprotected port: and an advertisement behind an extension header');
});

onBothBackends("a port of as many MACs as a port may have (its own and its pairs') is filtered whole", async (t, backend) => {
  const c = await firewallHost(t, backend);
  if (!c) return;
  const { topo, fw } = c;
  const [a, v] = [topo.addVm(1), topo.addVm(2)];
  // LIMITS.macsPerPort: every check that names the port's MACs (the bridge's source MAC check, the
  // neighbour discovery guard) names them all, in one kernel rule.
  const pairs = Array.from({ length: LIMITS.macsPerPort - 1 }, (_, i) => ({
    ipAddress: `fd00:100::1:${i.toString(16)}`,
    macAddress: `02:00:00:01:00:${i.toString(16).padStart(2, '0')}`,
  }));
  fw.setGroup(selfGroup('default'));
  fw.setGroup({ id: 'open', rules: [{ id: 'in6', direction: 'ingress', ethertype: 'IPv6' }, ...egressAll] });
  fw.setPort(vmPort(a, ['default'], { allowedAddressPairs: pairs }));
  fw.setPort(vmPort(v, ['open']));
  await fw.flush();
  t.deepEqual(fw.status().quarantined, [], 'nothing quarantined');
  await applied(t, fw, a, v);
  const [first, last] = [pairs[0]!, pairs.at(-1)!];
  const fake = '02:00:00:00:ee:ee';
  for (const ip of [first.ipAddress, last.ipAddress, a.ip6])
    v.ns.exec('ip', ['-6', 'neigh', 'replace', ip, 'lladdr', fake, 'dev', 'eth0', 'nud', 'stale']);
  const advert = (src: string, mac: string, lladdr: string) =>
    neighbourAdvert({ from: mac, src, dst: v.ip6, toMac: v.mac, target: src, lladdr, flags: NA_OVERRIDE });
  // A lie from the first pair, the last pair's address at its own MAC, then (the filter passes it) a's
  // own: once the victim has learnt a's, the frames before it were delivered or dropped.
  sendFrames(a.ns, 'eth0', [
    advert(first.ipAddress, first.macAddress, '02:00:00:00:ee:01'),
    advert(last.ipAddress, last.macAddress, last.macAddress),
    advert(a.ip6, a.mac, a.mac),
  ]);
  await waitFor("a's own advertisement", () => topo.neighbour(v, a.ip6) === a.mac, 20_000);
  t.is(topo.neighbour(v, last.ipAddress), last.macAddress, "the last pair's address, at its MAC");
  t.is(topo.neighbour(v, first.ipAddress), fake, 'a MAC not among the 16 is refused');
});

onBothBackends('IPv6 neighbour discovery, duplicate address detection and ping between allowed VMs still work', async (t, backend) => {
  const c = await firewallHost(t, backend);
  if (!c) return;
  const { topo, fw } = c;
  const [a, b, quiet, fresh] = [topo.addVm(1), topo.addVm(2), topo.addVm(3), topo.addVm(4)];
  topo.serve(b, 7000);
  fw.setGroup(selfGroup('default'));
  // Egress rules that admit no ICMPv6: neighbour discovery is not theirs to admit, an echo request is.
  fw.setGroup({ id: 'quiet', rules: [{ id: 'q', direction: 'egress', ethertype: 'IPv6', protocol: 'tcp' }] });
  // An address two ports may hold (a virtual IP moving between them, as keepalived's).
  const vip = 'fd00:100::99';
  fw.setPort(vmPort(a, ['default']));
  fw.setPort(vmPort(b, ['default'], { allowedAddressPairs: [{ ipAddress: vip }] }));
  fw.setPort(vmPort(quiet, ['quiet']));
  fw.setPort(vmPort(fresh, ['default'], { allowedAddressPairs: [{ ipAddress: vip }] }));
  fw.setGroupMembers('default', [a.ip6, b.ip6, quiet.ip6, fresh.ip6]);
  await applied(t, fw, a, b, quiet, fresh);
  for (const vm of [a, b, quiet]) vm.ns.exec('ip', ['-6', 'neigh', 'flush', 'dev', 'eth0']);
  t.true(topo.ping(a, b.ip6), 'members ping each other over IPv6');
  t.is(topo.neighbour(a, b.ip6), b.mac, 'a resolved b');
  t.is(topo.neighbour(b, a.ip6), a.mac, 'and b learnt a from its solicitation');
  t.true(topo.tcp(quiet, b.ip6, 7000), 'a port whose egress rules admit no ICMPv6 still resolves its neighbours');
  t.is(topo.neighbour(quiet, b.ip6), b.mac);
  t.false(topo.ping(quiet, b.ip6), 'but sends no echo request');
  // Duplicate address detection: a VM taking the virtual IP while b holds it hears b defend it (a
  // solicitation from :: to the solicited-node group, an advertisement from b back to all nodes).
  topo.addAddress(b, `${vip}/64`);
  fresh.ns.exec('sysctl', ['-qw', 'net.ipv6.conf.eth0.accept_dad=1']);
  fresh.ns.exec('ip', ['addr', 'add', `${vip}/64`, 'dev', 'eth0']);
  const flags = () => fresh.ns.exec('ip', ['-6', 'addr', 'show', 'dev', 'eth0', 'to', `${vip}/128`]);
  await waitFor('the duplicate found', () => flags().includes('dadfailed'), 20_000, flags);
  t.pass('duplicate address detection found the address in use');
});

onBothBackends('stateless groups: no connection tracking for the port, replies must be admitted by rules', async (t, backend) => {
  const c = await firewallHost(t, backend);
  const { topo, fw } = c;
  const [srv, cli, cli2] = [topo.addVm(1), topo.addVm(2), topo.addVm(3)];
  topo.serve(srv, 7000);
  fw.setGroup({
    id: 'srv',
    stateful: false,
    rules: [{ id: 'i', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', portRangeMin: 7000, portRangeMax: 7000 }, ...egressAll],
  });
  // A stateless client that admits nothing in: the server's replies (SYN-ACK) are dropped.
  fw.setGroup({ id: 'cli', stateful: false, rules: egressAll });
  // A stateless client whose rules admit the replies explicitly: works, as with Neutron.
  fw.setGroup({
    id: 'cli2',
    stateful: false,
    rules: [...egressAll, { id: 'back', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', remoteIpPrefix: `${srv.ip4}/32` }],
  });
  fw.setPort(vmPort(srv, ['srv']));
  fw.setPort(vmPort(cli, ['cli']));
  fw.setPort(vmPort(cli2, ['cli2']));
  await applied(t, fw, srv, cli, cli2);
  t.false(topo.tcp(cli, srv.ip4, 7000), 'no return-traffic shortcut for a stateless port');
  t.true(topo.tcp(cli2, srv.ip4, 7000), 'replies admitted by a rule');
  const tracked = topo.host.run('conntrack', ['-L', '-p', 'tcp', '--dport', '7000']).stdout;
  t.false(tracked.includes(srv.ip4), `nothing of the stateless port is tracked: ${tracked}`);
  // The same client made stateful is tracked and gets its replies without a rule.
  fw.setGroup({ id: 'cli', stateful: true, rules: egressAll });
  fw.setGroup({
    id: 'srv',
    stateful: true,
    rules: [{ id: 'i', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', portRangeMin: 7000, portRangeMax: 7000 }, ...egressAll],
  });
  await applied(t, fw, srv, cli);
  t.true(topo.tcp(cli, srv.ip4, 7000), 'stateful: the reply is admitted as part of the connection');
  t.true(topo.host.run('conntrack', ['-L', '-p', 'tcp', '--dport', '7000']).stdout.includes(srv.ip4), 'and tracked');
});

onBothBackends("a stateless port's allowed pair never stops the tracking of traffic to the host's own addresses", async (t, backend) => {
  // An allowed pair may be any network; the host's own connections (and what it NATs) stay tracked.
  const c = await firewallHost(t, backend);
  const { topo, fw } = c;
  const [s, v] = [topo.addVm(1), topo.addVm(2)];
  const host = topo.hostAddress('10.100.0.254/24');
  topo.serveOnHost(7300);
  fw.setGroup({ id: 'loose', stateful: false, rules: [...egressAll, { id: 'in', direction: 'ingress', ethertype: 'IPv4' }] });
  fw.setGroup({ id: 'egress', rules: egressAll });
  fw.setPort(vmPort(s, ['loose'], { allowedAddressPairs: [{ ipAddress: '10.100.0.128/25' }] }));
  fw.setPort(vmPort(v, ['egress']));
  await applied(t, fw, s, v);
  const tracked = (dst: string, port: number) =>
    topo.host.run('conntrack', ['-L', '-p', 'tcp', '-d', dst, '--dport', String(port)]).stdout.includes(`dport=${port}`);
  t.true(topo.tcp(v, host, 7300), 'a VM reaches the host');
  t.true(tracked(host, 7300), "traffic to the host's address inside the pair is tracked");
});

onBothBackends("a stateless port's allowed pair never stops the tracking of traffic to another VM's address in it", async (t, backend) => {
  await statelessPairKeepsOthersTracked(t, backend);
});

kernelTest('iptables › with another mark bit set, traffic to a stateless port is still told apart by its MAC', async (t) => {
  const c = await statelessPairKeepsOthersTracked(t, 'iptables', { markBit: 3 });
  const raw = c.topo.host.exec('iptables-save', ['-t', 'raw']);
  t.true(raw.includes('-m mark --mark 0x8/0x8') && !raw.includes('0x2000'), raw);
  t.true(c.topo.host.exec('ebtables-save', ['-t', 'nat']).includes('--mark-or 0x8 '));
  t.deepEqual(await c.fw.reconcile(), { setsRepaired: 0, chainsRepaired: 0, staleRemoved: 0 }, 'written as the tools read it back');
});

/** A pair may be a network holding other VMs' addresses (another tenant's, on this host). Their
 *  traffic must stay tracked, or the replies to their own connections are dropped as unrelated. */
async function statelessPairKeepsOthersTracked(t: ExecutionContext, backend: Backend, opts: EngineOptions = {}): Promise<FirewallHost> {
  const c = await firewallHost(t, backend, opts);
  const { topo, fw } = c;
  const [s, v, srv] = [topo.addVm(1), topo.addVm(2), topo.addVm(3)];
  topo.serve(srv, 7400);
  fw.setGroup({ id: 'loose', stateful: false, rules: [...egressAll, { id: 'in', direction: 'ingress', ethertype: 'IPv4' }] });
  fw.setGroup({ id: 'egress', rules: egressAll });
  fw.setGroup({
    id: 'srv',
    rules: [{ id: 'i', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', portRangeMin: 7400, portRangeMax: 7400 }, ...egressAll],
  });
  fw.setPort(vmPort(s, ['loose'], { allowedAddressPairs: [{ ipAddress: '10.100.0.0/24' }] }));
  fw.setPort(vmPort(v, ['egress']));
  fw.setPort(vmPort(srv, ['srv']));
  await applied(t, fw, s, v, srv);
  t.true(topo.tcp(v, srv.ip4, 7400), "a stateful VM's connection inside the pair's network gets its replies");
  const tracked = topo.host.run('conntrack', ['-L', '-p', 'tcp', '-d', srv.ip4, '--dport', '7400']).stdout;
  t.true(tracked.includes('dport=7400'), `and is tracked: ${tracked}`);
  // The stateless port's own traffic is still untracked, both ways: its connection's replies are
  // admitted by its rules (it admits all in), and no entry is made.
  t.true(topo.tcp(s, srv.ip4, 7400), 'the stateless port reaches the server');
  const untracked = topo.host.run('conntrack', ['-L', '-p', 'tcp', '-s', s.ip4]).stdout;
  t.false(untracked.includes('dport=7400'), `nothing of the stateless port's traffic is tracked: ${untracked}`);
  return c;
}

kernelTest('nftables › a MAC two stateless ports share stays in the stateless-MAC set until the last of them goes', async (t) => {
  // Two VMs of a VRRP pair share a virtual MAC (an allowed pair of both).
  const c = await firewallHost(t, 'nftables');
  const { topo, fw, k } = c;
  const [a, b] = [topo.addVm(1), topo.addVm(2)];
  const shared = '02:00:00:00:00:aa';
  fw.setGroup({ id: 'loose', stateful: false, rules: egressAll });
  for (const vm of [a, b]) fw.setPort(vmPort(vm, ['loose'], { allowedAddressPairs: [{ ipAddress: '10.100.0.200', macAddress: shared }] }));
  await applied(t, fw, a, b);
  const macs = () => {
    const out = topo.host.exec(NFT, ['-j', 'list', 'set', 'inet', k.nft.table, 'stateless-mac']);
    const set = (JSON.parse(out) as { nftables: { set?: { elem?: string[] } }[] }).nftables.find((o) => o.set)?.set;
    return [...(set?.elem ?? [])].sort();
  };
  t.deepEqual(macs(), [a.mac, b.mac, shared].sort());
  fw.removePort(`port-${a.name}`);
  await fw.flush();
  t.deepEqual(macs(), [b.mac, shared].sort(), 'the shared MAC stays for b');
  fw.removePort(`port-${b.name}`);
  await fw.flush();
  t.deepEqual(macs(), [], 'and goes with it');
  t.is(fw.stats.applyErrors, 0, 'no transaction was refused');
});

onBothBackends('a port with no fixed IP may send from any address of its own MAC, as Neutron has it', async (t, backend) => {
  // A VM on a network without subnets sets its addresses itself.
  const c = await firewallHost(t, backend);
  const { topo, fw } = c;
  const [a, srv] = [topo.addVm(1), topo.addVm(2)];
  topo.serve(srv, 7500);
  fw.setGroup({ id: 'egress', rules: egressAll });
  fw.setGroup({
    id: 'srv',
    rules: [{ id: 'i', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', portRangeMin: 7500, portRangeMax: 7500 }, ...egressAll],
  });
  fw.setPort(vmPort(a, ['egress'], { fixedIps: [] }));
  fw.setPort(vmPort(srv, ['srv']));
  await applied(t, fw, a, srv);
  t.true(topo.tcp(a, srv.ip4, 7500), 'from the address it set itself');
  topo.addAddress(a, '10.100.0.99/24');
  t.true(topo.tcp(a, srv.ip4, 7500, '10.100.0.99'), 'and from any other, with its MAC');
});

onBothBackends('a port leaves a multicast group (MLD done) without an egress rule, as it joins one', async (t, backend) => {
  const c = await firewallHost(t, backend);
  const { topo, fw } = c;
  const [a, b] = [topo.addVm(1), topo.addVm(2)];
  // No IPv6 egress rule at all: only the fixed policy can let the message out.
  fw.setGroup({ id: 'v4only', rules: [{ id: 'e4', direction: 'egress', ethertype: 'IPv4' }] });
  fw.setPort(vmPort(a, ['v4only']));
  fw.setPort(vmPort(b, ['v4only']));
  await applied(t, fw, a, b);
  // b hears what the bridge floods to it (all-routers is link-local multicast: always flooded).
  const heard = await icmp6Listener(b.ns, 'eth0', 132);
  t.teardown(() => heard.close());
  sendFrames(a.ns, 'eth0', [mldDone({ from: a.mac, src: linkLocalFromMac(a.mac), group: 'ff02::1:3' })]);
  const group = 'ff020000000000000000000000010003';
  await waitFor("a's MLD done heard by b", () => heard.heard(132).includes(group), 10_000);
  t.deepEqual(heard.heard(132), [group], 'once, with the group it leaves');
});

onBothBackends('router advertisements reach only ports with an IPv6 fixed IP, as Neutron has it', async (t, backend) => {
  const c = await firewallHost(t, backend);
  const { topo, fw } = c;
  const [router, a, b] = [topo.addVm(1), topo.addVm(2), topo.addVm(3)];
  fw.setGroup({ id: 'open', rules: egressAll });
  fw.setPort(vmPort(router, [], { portSecurityEnabled: false }));
  fw.setPort(vmPort(a, ['open']));
  fw.setPort(vmPort(b, ['open'], { fixedIps: [b.ip4] }));
  await applied(t, fw, router, a, b);
  const RA = 134;
  const NS = 135;
  const [heardA, heardB] = await Promise.all([icmp6Listener(a.ns, 'eth0', RA, NS), icmp6Listener(b.ns, 'eth0', RA, NS)]);
  t.teardown(() => {
    heardA.close();
    heardB.close();
  });
  const src = linkLocalFromMac(router.mac);
  // The solicitation after the advertisement, on one socket: once b heard it, b would have heard
  // the advertisement before it.
  sendFrames(router.ns, 'eth0', [
    routerAdvert({ from: router.mac, src }),
    neighbourSolicit({ from: router.mac, src, dst: 'ff02::1', target: b.ip6, lladdr: router.mac }),
  ]);
  await waitFor('the solicitation heard by both', () => heardA.heard(NS).length > 0 && heardB.heard(NS).length > 0, 10_000);
  await waitFor('the advertisement heard by a', () => heardA.heard(RA).length > 0, 10_000);
  t.deepEqual(heardB.heard(RA), [], 'not by b, which has only an IPv4 fixed IP');
});

onBothBackends(
  'DHCP replies reach a port only at its fixed IPs and broadcast (IPv6: link-local), as Neutron has it',
  async (t, backend) => {
    // A server that is not Neutron's offering an address Neutron did not give: its replies go nowhere.
    const c = await firewallHost(t, backend);
    const { topo, fw } = c;
    const [server, a] = [topo.addVm(1), topo.addVm(2)];
    fw.setGroup({ id: 'open', rules: egressAll });
    fw.setPort(vmPort(server, [], { portSecurityEnabled: false }));
    fw.setPort(vmPort(a, ['open']));
    await applied(t, fw, server, a);
    // The VM takes the rogue addresses, so that only the filter can keep their replies from it.
    topo.addAddress(a, '10.100.0.77/24');
    topo.addAddress(a, 'fd00:100::77/64');
    const [v4, v6] = await Promise.all([udpListener(a.ns, 68), udpListener(a.ns, 546, 6)]);
    t.teardown(() => {
      v4.close();
      v6.close();
    });
    const reply4 = (dst: string, toMac: string, payload: string) =>
      udpFrame({ fromMac: server.mac, toMac, src: server.ip4, dst, sport: 67, dport: 68, payload });
    const reply6 = (dst: string, payload: string) =>
      udp6Frame({ fromMac: server.mac, toMac: a.mac, src: linkLocalFromMac(server.mac), dst, sport: 547, dport: 546, payload });
    sendFrames(server.ns, 'eth0', [
      reply4('10.100.0.77', a.mac, 'rogue'),
      reply6('fd00:100::77', 'rogue6'),
      reply4(a.ip4, a.mac, 'own'),
      reply4('255.255.255.255', 'ff:ff:ff:ff:ff:ff', 'broadcast'),
      reply6(a.ip6, 'own6'),
      reply6(linkLocalFromMac(a.mac), 'link-local6'),
    ]);
    await waitFor('the replies to its own addresses heard', () => v4.heard().length >= 2 && v6.heard().length >= 2, 10_000);
    t.deepEqual(v4.heard().sort(), ['broadcast', 'own'], 'its fixed IP and broadcast; not the rogue address');
    t.deepEqual(v6.heard().sort(), ['link-local6', 'own6'], 'its fixed IP and link-local address; not the rogue address');
  },
);

onBothBackends('a port that leaves a group loses the connections only that group admitted', async (t, backend) => {
  const c = await firewallHost(t, backend);
  const { topo, fw } = c;
  const [srv, cli] = [topo.addVm(1), topo.addVm(2)];
  topo.serve(srv, 1080);
  fw.setGroup({
    id: 'web',
    rules: [{ id: 'w', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', portRangeMin: 1080, portRangeMax: 1080 }, ...egressAll],
  });
  fw.setGroup({ id: 'app', rules: egressAll });
  fw.setPort(vmPort(srv, ['web']));
  fw.setPort(vmPort(cli, ['app']));
  await applied(t, fw, srv, cli);
  const conn = await topo.longConnection(cli, srv.ip4, 1080);
  t.true(await conn.alive(), 'connection carries data');
  fw.setPort(vmPort(srv, ['app']));
  await applied(t, fw, srv);
  t.false(topo.tcp(cli, srv.ip4, 1080), 'new connections are refused');
  t.false(await conn.alive(), 'and the open one no longer carries data');
  conn.close();
});

onBothBackends('connections to and from allowed-pair addresses are cut like those of fixed IPs', async (t, backend) => {
  const c = await firewallHost(t, backend);
  const { topo, fw } = c;
  const [srv, cli] = [topo.addVm(1), topo.addVm(2)];
  const pairCli = '10.100.0.77';
  const pairSrv = '10.100.0.88';
  topo.addAddress(cli, `${pairCli}/24`);
  topo.addAddress(srv, `${pairSrv}/24`);
  topo.serve(srv, 1080);
  const G: SecurityGroupInput = { id: 'clients', rules: egressAll };
  const S = (admit: boolean): SecurityGroupInput => ({
    id: 'srv',
    rules: [
      ...egressAll,
      ...(admit
        ? [
            {
              id: 'in',
              direction: 'ingress' as const,
              ethertype: 'IPv4' as const,
              protocol: 'tcp',
              portRangeMin: 1080,
              portRangeMax: 1080,
              remoteGroupId: 'clients',
            },
          ]
        : []),
    ],
  });
  fw.setGroup(G);
  fw.setGroup(S(true));
  fw.setPort(vmPort(srv, ['srv'], { allowedAddressPairs: [{ ipAddress: pairSrv }] }));
  fw.setPort(vmPort(cli, ['clients'], { allowedAddressPairs: [{ ipAddress: pairCli }] }));
  // Membership as the controller derives it: the pair address is a member of the client's group.
  fw.setGroupMembers('clients', [cli.ip4, pairCli]);
  await applied(t, fw, srv, cli);
  // 1. A client using its pair address as source; the address leaves the group.
  const viaPair = await topo.longConnection(cli, srv.ip4, 1080, pairCli);
  t.true(await viaPair.alive());
  fw.applyMemberDelta('clients', [], [pairCli]);
  await fw.flush();
  t.false(await viaPair.alive(), 'cut when the pair address left the group');
  viaPair.close();
  // 2. A connection to the server's own pair address; the rule admitting it goes.
  fw.applyMemberDelta('clients', [pairCli], []);
  await fw.flush();
  const toPair = await topo.longConnection(cli, pairSrv, 1080, pairCli);
  t.true(await toPair.alive());
  fw.setGroup(S(false));
  await applied(t, fw, srv);
  t.false(await toPair.alive(), "cut when the rule went, on the server's pair address too");
  toPair.close();
});

kernelTest(
  'iptables › objects of other programs that look like ours are never touched; cleanup leaves a referenced chain emptied and says so',
  async (t) => {
    const c = await firewallHost(t, 'iptables');
    const { topo, fw, k } = c;
    const [a, b] = [topo.addVm(1), topo.addVm(2)];
    const h = topo.host;
    const names = k.ipt;
    // Another program's objects, named like ours.
    h.exec('ipset', ['create', 'sg-admin-allow', 'hash:ip']);
    h.exec('ipset', ['create', 'sgtmp-0123456789abcdef', 'hash:ip']);
    h.exec('ipset', ['create', 'sg4-custom', 'hash:ip']);
    h.exec('iptables', ['-N', 'sg-custom']);
    h.exec('iptables', ['-A', 'sg-custom', '-j', 'RETURN']);
    fw.setGroup(selfGroup('default'));
    fw.setPort(vmPort(a, ['default']));
    fw.setPort(vmPort(b, ['default']));
    fw.setGroupMembers('default', [a.ip4, b.ip4]);
    await applied(t, fw, a, b);
    await fw.reconcile();
    // Another program's chain jumps to one of ours.
    h.exec('iptables', ['-N', 'other-fw']);
    h.exec('iptables', ['-A', 'other-fw', '-j', names.fallbackChain]);
    // A second engine on the same namespace (a restart) starts and cleans up what it does not know.
    const fw2 = await openEngine('iptables', h, { coalesceMs: 5 });
    fw2.setGroup(selfGroup('default'));
    fw2.setPort(vmPort(a, ['default']));
    await fw2.flush();
    const foreignSets = () =>
      h
        .exec('ipset', ['list', '-n'])
        .split('\n')
        .filter((n) => ['sg-admin-allow', 'sgtmp-0123456789abcdef', 'sg4-custom'].includes(n))
        .sort();
    t.deepEqual(foreignSets(), ['sg-admin-allow', 'sg4-custom', 'sgtmp-0123456789abcdef'], 'foreign sets survive start-up');
    t.regex(h.exec('iptables-save', ['-t', 'filter']), /^:sg-custom /m, 'a foreign chain survives start-up');
    const r = await fw2.cleanup();
    t.true(r.removed > 0);
    t.deepEqual(r.left.length, 1, JSON.stringify(r.left));
    t.regex(r.left[0]!, new RegExp(names.fallbackChain));
    const saved = h.exec('iptables-save', ['-t', 'filter']);
    t.deepEqual(
      saved.split('\n').filter((l) => names.owns(l.slice(1).split(' ')[0]!) && l.startsWith(':')),
      [`:${names.fallbackChain} - [0:0]`],
      'only the referenced chain is left, emptied',
    );
    t.regex(saved, /^:sg-custom /m, 'a foreign chain survives cleanup');
    t.deepEqual(foreignSets(), ['sg-admin-allow', 'sg4-custom', 'sgtmp-0123456789abcdef'], 'foreign sets survive cleanup');
    t.false(
      h
        .exec('ipset', ['list', '-n'])
        .split('\n')
        .some((n) => names.owns(n)),
      'our sets are gone',
    );
  },
);

kernelTest(
  'nftables › objects of other programs that look like ours are never touched; cleanup leaves a referenced chain emptied and says so',
  async (t) => {
    const c = await firewallHost(t, 'nftables');
    const { topo, fw, k } = c;
    const [a, b] = [topo.addVm(1), topo.addVm(2)];
    const h = topo.host;
    const T = k.nft.table;
    const nft = (...args: string[]) => h.exec(NFT, args);
    const tables = () => nft('list', 'tables').split('\n').filter(Boolean).sort();
    // Other programs' tables, named like ours (another prefix, another hash).
    nft('add', 'table', 'inet', 'sg-admin');
    nft('add', 'table', 'inet', 'sg-t-0123456789abcdef');
    nft('add', 'table', 'bridge', 'sg-t-0123456789abcdef');
    fw.setGroup(selfGroup('default'));
    fw.setPort(vmPort(a, ['default']));
    fw.setPort(vmPort(b, ['default']));
    fw.setGroupMembers('default', [a.ip4, b.ip4]);
    await applied(t, fw, a, b);
    await fw.reconcile();
    // Another program puts a chain and a set into our table, its chain jumping to one of ours.
    nft('add', 'set', 'inet', T, 'their-allow', '{ type ipv4_addr; }');
    nft('add', 'chain', 'inet', T, 'other-fw');
    nft('add', 'rule', 'inet', T, 'other-fw', 'jump', k.nft.ingressChain(`port-${a.name}`));
    // A second engine on the same namespace (a restart) starts: our table is kept for their objects,
    // ours are written afresh, and what it does not know (b's chains) goes.
    const fw2 = await openEngine('nftables', h, { coalesceMs: 5 });
    fw2.setGroup(selfGroup('default'));
    fw2.setPort(vmPort(a, ['default']));
    await fw2.flush();
    const foreign = ['table bridge sg-t-0123456789abcdef', 'table inet sg-admin', 'table inet sg-t-0123456789abcdef'];
    t.deepEqual(
      tables().filter((l) => foreign.includes(l)),
      foreign,
      'foreign tables survive start-up',
    );
    const inOurs = () => nft('list', 'table', 'inet', T);
    t.regex(inOurs(), /chain other-fw/, 'a foreign chain in our table survives start-up');
    t.regex(inOurs(), /set their-allow/);
    t.false(k.hasPortChains(`port-${b.name}`), "the departed port's chains went");
    const r = await fw2.cleanup();
    t.true(r.removed > 0);
    t.is(r.left.length, 2, JSON.stringify(r.left));
    t.regex(r.left.join('\n'), new RegExp(`chain ${k.nft.ingressChain(`port-${a.name}`)} \\(referenced`));
    t.regex(r.left.join('\n'), /holds other-fw, their-allow/);
    const left = nft('list', 'table', 'inet', T);
    t.regex(left, new RegExp(`chain ${k.nft.ingressChain(`port-${a.name}`)} \\{\\s*\\}`), 'only the referenced chain is left, emptied');
    t.false(left.includes(k.nft.egressChain(`port-${a.name}`)), 'our other chains are gone');
    t.false(left.includes(k.setName('default', 4)), 'our sets are gone');
    t.regex(left, /chain other-fw/, 'a foreign chain survives cleanup');
    t.deepEqual(
      tables().filter((l) => foreign.includes(l)),
      foreign,
      'foreign tables survive cleanup',
    );
    t.false(tables().includes(`table bridge ${T}`), 'our bridge table, all ours, is gone');
  },
);

/** Admits UDP to port 7100 (udpListener's) from anywhere, and nothing else. */
const openUdp: SecurityGroupInput = {
  id: 'open',
  rules: [{ id: 'u', direction: 'ingress', ethertype: 'IPv4', protocol: 'udp', portRangeMin: 7100, portRangeMax: 7100 }],
};

onBothBackends('frames with VLAN tags neither leave nor reach a port: their IP inside would pass no filter', async (t, backend) => {
  // The bridge hands a tagged frame's IP to no iptables or inet hook (bridge-nf-filter-vlan-tagged
  // is off by default), and a VM's kernel takes a frame tagged with VLAN 0 as untagged: a port is an
  // access port, as in Neutron.
  const c = await firewallHost(t, backend);
  const { topo, fw } = c;
  const [a, open, closed] = [topo.addVm(1), topo.addVm(2), topo.addVm(3)];
  fw.setGroup({ id: 'src', rules: egressAll });
  fw.setGroup(openUdp);
  fw.setGroup({ id: 'closed', rules: [] });
  fw.setPort(vmPort(a, ['src']));
  fw.setPort(vmPort(open, ['open']));
  fw.setPort(vmPort(closed, ['closed']));
  await applied(t, fw, a, open, closed);
  const listeners = [await udpListener(open.ns, 7100), await udpListener(closed.ns, 7100)];
  t.teardown(() => listeners.forEach((l) => l.close()));
  const to = (vm: Vm, payload: string, tags?: { tpid: number; vid: number }[], src = a.ip4) =>
    udpFrame({ fromMac: a.mac, toMac: vm.mac, src, dst: vm.ip4, sport: 40000, dport: 7100, payload, ...(tags ? { tags } : {}) });
  const kinds = {
    'vlan 0': [{ tpid: 0x8100, vid: 0 }],
    'vlan 5': [{ tpid: 0x8100, vid: 5 }],
    'q-in-q': [
      { tpid: 0x88a8, vid: 0 },
      { tpid: 0x8100, vid: 0 },
    ],
  };
  const tagged = (vm: Vm, src?: string) =>
    Object.entries(kinds).map(([k, tags]) => to(vm, `${k}${src ? ' spoofed' : ''} to ${vm.name}`, tags, src));
  // In one go, in order: the closed port's, then the open port's, a plain datagram it admits last:
  // once that one is heard, everything before it has been through the bridge.
  sendFrames(a.ns, 'eth0', [
    to(closed, `plain to ${closed.name}`),
    ...tagged(closed),
    to(open, `plain spoofed to ${open.name}`, undefined, '10.100.0.99'),
    ...tagged(open, '10.100.0.99'),
    ...tagged(open),
    to(open, `plain to ${open.name}`),
  ]);
  await waitFor('the plain datagram admitted', () => listeners[0]!.heard().includes(`plain to ${open.name}`));
  t.deepEqual(listeners[1]!.heard(), [], 'nothing reached the closed port');
  t.deepEqual(
    listeners[0]!.heard(),
    [`plain to ${open.name}`],
    'no tagged frame, and nothing from a spoofed source, reached the open port',
  );
  // From a device that is not a port (an uplink): dropped on the way to the port.
  const uplink = topo.addVm(9);
  const from = (vm: Vm, payload: string, tags?: { tpid: number; vid: number }[]) =>
    udpFrame({
      fromMac: uplink.mac,
      toMac: vm.mac,
      src: uplink.ip4,
      dst: vm.ip4,
      sport: 40000,
      dport: 7100,
      payload,
      ...(tags ? { tags } : {}),
    });
  sendFrames(uplink.ns, 'eth0', [
    ...Object.entries(kinds).map(([k, tags]) => from(closed, `${k} from the uplink`, tags)),
    from(open, 'plain from the uplink'),
  ]);
  await waitFor('the uplink datagram admitted', () => listeners[0]!.heard().includes('plain from the uplink'));
  t.deepEqual(listeners[1]!.heard(), [], 'no tagged frame from the uplink reached the closed port');
});

onBothBackends(
  'a frame from a port with a source MAC not its own is dropped before the bridge learns where that MAC is',
  async (t, backend) => {
    // Otherwise a VM sending one frame from its neighbour's MAC is sent the neighbour's traffic.
    const c = await firewallHost(t, backend);
    const { topo, fw } = c;
    const [a, b, open] = [topo.addVm(1), topo.addVm(2), topo.addVm(3)];
    fw.setGroup({ id: 'src', rules: egressAll });
    fw.setGroup(openUdp);
    fw.setPort(vmPort(a, ['src']));
    fw.setPort(vmPort(b, ['src']));
    fw.setPort(vmPort(open, ['open']));
    await applied(t, fw, a, b, open);
    const listener = await udpListener(open.ns, 7100);
    t.teardown(() => listener.close());
    const learnt = (mac: string) =>
      topo.host
        .exec('bridge', ['fdb', 'show', 'br', 'br0'])
        .split('\n')
        .find((l) => l.startsWith(`${mac} dev `));
    // b speaks, so the bridge learns where its MAC is.
    topo.ping(b, open.ip4);
    await waitFor("b's MAC learnt on b's port", () => learnt(b.mac)?.includes(`dev ${b.device} `));
    const frame = (fromMac: string, payload: string) =>
      udpFrame({ fromMac, toMac: open.mac, src: a.ip4, dst: open.ip4, sport: 40000, dport: 7100, payload });
    // a sends from b's MAC (an IPv4 frame, and one of a type no IP hook sees), then from its own: once
    // the last is heard, the others have been through.
    sendFrames(a.ns, 'eth0', [frame(b.mac, "from b's MAC"), otherFrame(b.mac), frame(a.mac, 'from its own MAC')]);
    await waitFor('the frame from its own MAC heard', () => listener.heard().includes('from its own MAC'));
    t.false(listener.heard().includes("from b's MAC"), 'the frame with the other MAC was dropped');
    t.true(learnt(b.mac)?.includes(`dev ${b.device} `), `b's MAC still on b's port: ${learnt(b.mac)}`);
  },
);
