// Routed mode on both backends: each VM on its own point-to-point link to the host, which routes
// between them; ports are told apart by their device (no bridge, no br_netfilter).
import type { ExecutionContext } from 'ava';
import { kernelTest } from './helpers/gate.js';
import { Netns } from './helpers/netns.js';
import { BACKENDS, openEngine } from './helpers/backends.js';
import type { PortInput, SecurityGroupInput, SecurityGroupRuleInput } from '../src/domain/model.js';
import { Topology } from './helpers/topology.js';

interface RoutedVm {
  name: string;
  ns: Netns;
  device: string;
  mac: string;
  ip4: string;
  gw4: string;
  ip6: string;
  gw6: string;
}

let counter = 0;

function routedHost(t: ExecutionContext): { host: Netns; vms: RoutedVm[]; add: (n: number) => RoutedVm } {
  const host = Netns.create('sgrt');
  const vms: RoutedVm[] = [];
  const tag = `${process.pid % 1000}${counter++}`;
  host.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1', 'net.ipv6.conf.all.forwarding=1']);
  // A router asks for a neighbour on behalf of a packet it forwards from its device's link-local
  // address, and sends no solicitation while that address is tentative: with duplicate address
  // detection on, an IPv6 packet routed in the first second or two of a link waited for nothing
  // and was lost (seen in CI). `nodad` on the global addresses does not cover the link-local ones.
  host.exec('sysctl', ['-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
  t.teardown(() => {
    for (const v of vms) v.ns.destroy();
    host.destroy();
  });
  return {
    host,
    vms,
    add(n: number): RoutedVm {
      const ns = Netns.create('sgrtvm');
      const device = `r${tag}v${n}`.slice(0, 15);
      const mac = `02:00:00:00:01:${n.toString(16).padStart(2, '0')}`;
      const net6 = `fd00:200:${n.toString(16)}::`;
      const vm: RoutedVm = {
        name: `vm${n}`,
        ns,
        device,
        mac,
        ip4: `10.200.${n}.2`,
        gw4: `10.200.${n}.1`,
        ip6: `${net6}2`,
        gw6: `${net6}1`,
      };
      host.exec('ip', ['link', 'add', device, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name]);
      host.exec('ip', ['addr', 'add', `${vm.gw4}/24`, 'dev', device]);
      host.exec('ip', ['addr', 'add', `${vm.gw6}/64`, 'dev', device, 'nodad']);
      host.exec('ip', ['link', 'set', device, 'up']);
      ns.exec('ip', ['link', 'set', 'eth0', 'address', mac]);
      ns.exec('ip', ['addr', 'add', `${vm.ip4}/24`, 'dev', 'eth0']);
      ns.exec('ip', ['addr', 'add', `${vm.ip6}/64`, 'dev', 'eth0', 'nodad']);
      ns.exec('ip', ['link', 'set', 'eth0', 'up']);
      ns.exec('ip', ['route', 'add', 'default', 'via', vm.gw4]);
      ns.exec('ip', ['-6', 'route', 'add', 'default', 'via', vm.gw6]);
      vms.push(vm);
      return vm;
    },
  };
}

function ping(from: RoutedVm, to: string, source?: string): boolean {
  return from.ns.run('ping', ['-c1', '-W2', ...(source ? ['-I', source] : []), to]).status === 0;
}

function port(vm: RoutedVm, groups: string[]): PortInput {
  return { id: `port-${vm.name}`, host: 'h', device: vm.device, mac: vm.mac, fixedIps: [vm.ip4, vm.ip6], securityGroups: groups };
}

const egressAll = [{ id: 'e4', direction: 'egress' as const, ethertype: 'IPv4' as const }];
const selfGroup: SecurityGroupInput = {
  id: 'default',
  rules: [{ id: 'i4', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'default' }, ...egressAll],
};
const quiet: SecurityGroupInput = { id: 'quiet', rules: [{ id: 'o', direction: 'egress', ethertype: 'IPv4', protocol: 'tcp' }] };

for (const backend of BACKENDS) {
  kernelTest(
    `${backend} › routed ports: members admitted, others dropped, spoofing dropped, traffic to the host through the egress rules`,
    async (t) => {
      const r = routedHost(t);
      const [a, b, x] = [r.add(1), r.add(2), r.add(3)];
      const fw = await openEngine(backend, r.host, { coalesceMs: 5, mode: 'routed' });
      t.teardown(() => fw.close());
      fw.setGroup(selfGroup);
      fw.setGroup(quiet);
      fw.setPort(port(a, ['default']));
      fw.setPort(port(b, ['default']));
      fw.setPort(port(x, ['quiet']));
      fw.setGroupMembers('default', [a.ip4, b.ip4]);
      await fw.flush();
      for (const vm of [a, b, x]) t.true(fw.portInKernel(`port-${vm.name}`));
      t.true(ping(a, b.ip4), 'member a -> b, routed');
      t.false(ping(x, b.ip4), 'non-member x -> b');
      t.true(ping(a, a.gw4), 'a reaches the host: its egress rules admit ICMP');
      t.false(ping(x, x.gw4), 'x does not: its egress rules admit only TCP (INPUT goes through them)');
      a.ns.exec('ip', ['addr', 'add', '10.200.1.50/24', 'dev', 'eth0']);
      t.false(ping(a, b.ip4, '10.200.1.50'), 'a spoofed source is dropped');
      // x moves into default and becomes a member: it reaches b, and b reaches it.
      fw.setPort(port(x, ['default']));
      fw.applyMemberDelta('default', [x.ip4], []);
      await fw.flush();
      t.true(ping(x, b.ip4), 'x, now a member, reaches b');
      t.true(ping(b, x.ip4), 'and b reaches x');
    },
  );
}

for (const backend of BACKENDS) {
  kernelTest(`${backend} › routed: a device named like a VM port that the agent does not know is dropped (opt-in)`, async (t) => {
    const r = routedHost(t);
    const [a, b, u] = [r.add(1), r.add(2), r.add(3)];
    const prefix = a.device.slice(0, a.device.lastIndexOf('v'));
    const fw = await openEngine(backend, r.host, { coalesceMs: 5, mode: 'routed', unknownDevicePrefixes: [prefix] });
    t.teardown(() => fw.close());
    fw.setGroup(selfGroup);
    fw.setPort(port(a, ['default']));
    fw.setPort(port(b, ['default']));
    fw.setGroupMembers('default', [a.ip4, b.ip4, u.ip4]);
    await fw.flush();
    for (const vm of [a, b]) t.true(fw.portInKernel(`port-${vm.name}`));
    t.true(ping(a, b.ip4), 'known ports as their rules say');
    t.false(ping(u, b.ip4), 'the unknown device sends nothing through the host');
    t.false(ping(u, u.gw4), 'nor to the host itself');
    fw.setPort(port(u, ['default']));
    await fw.flush();
    t.true(fw.portInKernel(`port-${u.name}`));
    t.true(ping(u, b.ip4), 'once known, filtered like the rest');
  });
}

for (const backend of BACKENDS) {
  kernelTest(
    `${backend} › routed: a stateless port's allowed pair never stops the tracking of traffic to another VM's address in it`,
    async (t) => {
      // Routed, there is no destination MAC to tell the port by (bridged mode: firewall-parity): traffic
      // to it is what the host routes out of its device. nftables asks the route; iptables, which has no
      // route lookup before conntrack, excepts the other ports' more specific addresses (docs/firewall.md).
      const r = routedHost(t);
      const [s, v, srv] = [r.add(1), r.add(2), r.add(3)];
      const topo = new Topology(r.host);
      t.teardown(() => topo.destroy());
      topo.serve(srv, 7400);
      const fw = await openEngine(backend, r.host, { coalesceMs: 5, mode: 'routed' });
      t.teardown(() => fw.close());
      const both = (r: Omit<SecurityGroupRuleInput, 'ethertype' | 'id'> & { id: string }): SecurityGroupRuleInput[] => [
        { ...r, id: `${r.id}4`, ethertype: 'IPv4' },
        { ...r, id: `${r.id}6`, ethertype: 'IPv6' },
      ];
      const out = both({ id: 'e', direction: 'egress' });
      fw.setGroup({ id: 'loose', stateful: false, rules: [...out, ...both({ id: 'in', direction: 'ingress' })] });
      fw.setGroup({ id: 'egress', rules: out });
      fw.setGroup({
        id: 'srv',
        rules: [...both({ id: 'i', direction: 'ingress', protocol: 'tcp', portRangeMin: 7400, portRangeMax: 7400 }), ...out],
      });
      // The pair covers every VM of the host, and the host routes it to s; each VM's own network is
      // more specific.
      r.host.exec('ip', ['route', 'add', '10.200.0.0/16', 'dev', s.device]);
      r.host.exec('ip', ['-6', 'route', 'add', 'fd00:200::/40', 'dev', s.device]);
      fw.setPort({ ...port(s, ['loose']), allowedAddressPairs: [{ ipAddress: '10.200.0.0/16' }, { ipAddress: 'fd00:200::/40' }] });
      fw.setPort(port(v, ['egress']));
      fw.setPort(port(srv, ['srv']));
      await fw.flush();
      for (const x of [s, v, srv]) t.true(fw.portInKernel(`port-${x.name}`), `${x.name} filtered`);
      t.true(topo.tcp(v, srv.ip4, 7400), "a stateful VM's connection inside the pair's network gets its replies");
      const tracked = r.host.run('conntrack', ['-L', '-p', 'tcp', '-d', srv.ip4, '--dport', '7400']).stdout;
      t.true(tracked.includes('dport=7400'), `and is tracked: ${tracked}`);
      t.true(topo.tcp(s, srv.ip4, 7400), 'the stateless port reaches the server');
      const untracked = r.host.run('conntrack', ['-L', '-p', 'tcp', '-s', s.ip4]).stdout;
      t.false(untracked.includes('dport=7400'), `nothing of the stateless port's traffic is tracked, either way: ${untracked}`);
      // The same over IPv6 (the route lookup of the other family).
      t.true(topo.tcp(v, srv.ip6, 7400), 'IPv6: the stateful VM gets its replies');
      const tracked6 = r.host.run('conntrack', ['-L', '-f', 'ipv6', '-p', 'tcp', '-d', srv.ip6, '--dport', '7400']).stdout;
      t.true(tracked6.includes('dport=7400'), `and is tracked: ${tracked6}`);
      t.true(topo.tcp(s, srv.ip6, 7400), 'IPv6: the stateless port reaches the server');
      const untracked6 = r.host.run('conntrack', ['-L', '-f', 'ipv6', '-p', 'tcp', '-s', s.ip6]).stdout;
      t.false(untracked6.includes('dport=7400'), `IPv6: nothing of the stateless port's traffic is tracked: ${untracked6}`);
    },
  );
}
