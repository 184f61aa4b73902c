// Conntrack zones per bridge (`firewall.conntrackZoneBridges`, src/firewall/zones.ts), on both
// backends, with real packets: two tenants' networks on one host, bridges br0 and br1, both
// 10.100.0.0/24. Without zones they share one connection table (a packet of one network passes as
// the reply of the other's connection, and a cut in one ends the other's); with zones each bridge
// tracks in its own.
import type { ExecutionContext } from 'ava';
import type { SecurityGroupInput } from '../src/domain/model.js';
import { KernelNames } from '../src/firewall/iptables/names.js';
import { NftNames } from '../src/firewall/nftables/names.js';
import { NFT, openEngine, type Backend } from './helpers/backends.js';
import { defaultGroup, egressAll, firewallHost, onBothBackends, vmPort } from './helpers/firewall.js';
import { Netns } from './helpers/netns.js';
import { Topology } from './helpers/topology.js';
import { waitFor } from './helpers/wait.js';
import { FirewallEngine } from '../src/firewall/engine.js';
import { openDataplane } from '../src/firewall/select.js';
import { kernelTest } from './helpers/gate.js';
import { agentConnected, startAgent, startController, testBed } from './helpers/sg.js';

/** The zone the kernel tracks a bridge's traffic in: its device index's low 16 bits. */
function zoneOfDevice(topo: Topology, dev: string): number {
  return topo.host.ifindex(dev) & 0xffff;
}

/** VMs 1 and 2 on br0 (tenant A, Neutron's default group) and on br1 (tenant B, TCP from each other
 *  only). A1 sends a datagram from port 4000 to A2's port 5000, so the table holds that connection;
 *  B2, whose address is A2's, then can send from port 5000 to B1's port 4000: the reply direction of
 *  A's connection, in another network. Whether B1's echo server answers it (its rules admit no UDP)
 *  is whether the networks share the table. */
async function overlappingTenants(t: ExecutionContext, backend: Backend, zones: boolean) {
  const h = await firewallHost(t, backend, zones ? { conntrackZoneBridges: ['br'] } : {});
  h.topo.addBridge('br1');
  const [a1, a2, b1, b2] = [h.topo.addVm(1), h.topo.addVm(2), h.topo.addVm(1, 'br1'), h.topo.addVm(2, 'br1')];
  const tenantB: SecurityGroupInput = {
    id: 'tenant-b',
    stateful: true,
    rules: [{ id: 'b-tcp', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', remoteGroupId: 'tenant-b' }, ...egressAll],
  };
  h.fw.setGroup(defaultGroup());
  h.fw.setGroup(tenantB);
  for (const vm of [a1, a2]) h.fw.setPort(vmPort(vm, ['default']));
  for (const vm of [b1, b2]) h.fw.setPort(vmPort(vm, ['tenant-b']));
  h.fw.setGroupMembers('default', [a1.ip4, a2.ip4]);
  h.fw.setGroupMembers('tenant-b', [b1.ip4, b2.ip4]);
  await h.fw.flush();
  h.topo.serve(b1, 4000);
  h.topo.serve(a2, 4100);
  h.topo.serve(b1, 4100);
  // Each network's own traffic, admitted by its rules, passes both ways (the replies found in its zone).
  t.true(h.topo.tcp(a1, a2.ip4, 4100), 'A1 to A2');
  t.true(h.topo.tcp(b2, b1.ip4, 4100), 'B2 to B1');
  t.false(h.topo.udp(b2, b1.ip4, 4000), "B1's rules admit no UDP");
  // A's connection, from 10.100.0.1:4000 to 10.100.0.2:5000 (nothing listens: it stays unreplied).
  a1.ns.run(process.execPath, [
    '-e',
    `const u = require('dgram').createSocket('udp4'); u.bind(4000, () => u.send('x', 5000, '${a2.ip4}', () => u.close()));`,
  ]);
  const entry = await waitFor("A's connection in the table", () =>
    h.topo.host.run('conntrack', ['-L', '-p', 'udp', '--orig-port-src', '4000', '--orig-port-dst', '5000']).stdout.trim(),
  );
  return { h, a1, a2, b1, b2, entry, lookalikeAnswered: () => h.topo.udp(b2, b1.ip4, 4000, 5000) };
}

/** What the backend wrote for the zones, as the tools print it. */
function zoneRules(topo: Topology, backend: Backend): string {
  if (backend === 'nftables') return topo.host.exec(NFT, ['list', 'chain', 'inet', new NftNames('sg').table, 'untracked']);
  const chain = new KernelNames('sg').rawChain;
  return ['iptables-save', 'ip6tables-save']
    .map((tool) => topo.host.exec(tool, ['-t', 'raw']))
    .join('')
    .split('\n')
    .filter((l) => l.startsWith(`-A ${chain} `) && l.includes('--zone'))
    .join('\n');
}

onBothBackends(
  'conntrack zones: each bridge tracks in its own zone, so another network cannot answer for a connection',
  async (t, backend) => {
    const s = await overlappingTenants(t, backend, true);
    const topo = s.h.topo;
    t.regex(s.entry, new RegExp(`zone=${zoneOfDevice(topo, 'br0')}\\b`), "A's connection is in br0's zone");
    t.false(s.lookalikeAnswered(), "B2's datagram is not taken for the reply of A's connection");
    t.deepEqual(await s.h.fw.reconcile(), { setsRepaired: 0, chainsRepaired: 0, staleRemoved: 0 }, 'the zone rules read back as written');
    if (backend === 'nftables') {
      t.regex(zoneRules(topo, backend), /iifkind "bridge" iifname "br\*" ct zone set iif/);
      topo.host.exec(NFT, ['flush', 'chain', 'inet', new NftNames('sg').table, 'untracked']);
      t.like(await s.h.fw.reconcile(), { chainsRepaired: 1 }, 'a flushed chain is repaired');
      t.regex(zoneRules(topo, backend), /iifkind "bridge" iifname "br\*" ct zone set iif/);
    } else {
      // A rule per bridge, for each family. A bridge made later gets its own as soon as the agent
      // hears of it (no periodic check runs here), and one removed loses it.
      for (const br of ['br0', 'br1']) t.regex(zoneRules(topo, backend), new RegExp(`-i ${br} -j CT --zone ${zoneOfDevice(topo, br)}\\b`));
      t.is(zoneRules(topo, backend).split('\n').length, 4, 'two bridges, two families');
      topo.addBridge('br2');
      const br2Rule = new RegExp(`-i br2 -j CT --zone ${zoneOfDevice(topo, 'br2')}\\b`);
      await waitFor('the new bridge zoned, in both families', () => zoneRules(topo, backend).match(new RegExp(br2Rule, 'g'))?.length === 2);
      topo.host.exec('ip', ['link', 'del', 'br2']);
      await waitFor("the removed bridge's rules gone", () => !zoneRules(topo, backend).includes('-i br2 '));
      t.like(await s.h.fw.reconcile(), { chainsRepaired: 0 }, 'nothing was left for the check to do');
    }
    t.true(topo.tcp(s.b2, s.b1.ip4, 4100), 'B still reaches B1 where its rules admit it');
    const zonesOfB = topo.host.run('conntrack', ['-L', '-p', 'tcp', '--orig-port-dst', '4100', '-s', s.b2.ip4]).stdout;
    t.regex(zonesOfB, new RegExp(`zone=${zoneOfDevice(topo, 'br1')}\\b`), "B's connections are in br1's zone");
    // A stateless port on a zoned bridge stays untracked: no zone is set on what the notrack rules took.
    const b3 = topo.addVm(3, 'br1');
    s.h.fw.setGroup({
      id: 'b-stateless',
      stateful: false,
      rules: [{ id: 'bs-in', direction: 'ingress', ethertype: 'IPv4' }, ...egressAll],
    });
    s.h.fw.setPort(vmPort(b3, ['b-stateless']));
    s.h.fw.setGroupMembers('tenant-b', [s.b1.ip4, s.b2.ip4, b3.ip4]);
    await s.h.fw.flush();
    t.true(topo.tcp(b3, s.b1.ip4, 4100), 'the stateless port reaches B1, and its replies come back');
    t.is(topo.host.run('conntrack', ['-L', '-s', b3.ip4]).stdout.trim(), '', 'nothing of it is tracked, in any zone');
    t.is(topo.host.run('conntrack', ['-L', '-d', b3.ip4]).stdout.trim(), '');
    // A device named like a zoned bridge that is not a Linux bridge (an Open vSwitch bridge's port,
    // often holding the host's own address) is not zoned: the host's own traffic through it stays in
    // the zone 0.
    const outside = Netns.create('sgzv');
    t.teardown(() => outside.destroy());
    topo.host.exec('ip', ['link', 'add', 'brv0', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', outside.name]);
    topo.host.exec('ip', ['addr', 'add', '10.250.0.1/24', 'dev', 'brv0']);
    topo.host.exec('ip', ['link', 'set', 'brv0', 'up']);
    outside.exec('ip', ['addr', 'add', '10.250.0.2/24', 'dev', 'eth0']);
    outside.exec('ip', ['link', 'set', 'eth0', 'up']);
    await s.h.fw.reconcile();
    t.notRegex(zoneRules(topo, backend), /brv0/);
    t.is(outside.run('ping', ['-c1', '-W2', '10.250.0.1']).status, 0, 'the host answers through brv0');
    const own = topo.host.exec('conntrack', ['-L', '-p', 'icmp', '-s', '10.250.0.2']);
    t.regex(own, /src=10\.250\.0\.2/);
    t.notRegex(own, /zone=/, "the host's own connection is in the zone 0");
  },
);

onBothBackends('conntrack zones: a cut in one network leaves the same connection in another', async (t, backend) => {
  const s = await overlappingTenants(t, backend, true);
  // Without loose pickup a connection whose entry is gone is dead, whatever the rules still admit.
  s.h.topo.host.exec('sysctl', ['-qw', 'net.netfilter.nf_conntrack_tcp_loose=0']);
  const a = await s.h.topo.longConnection(s.a1, s.a2.ip4, 4100);
  const b = await s.h.topo.longConnection(s.b2, s.b1.ip4, 4100);
  t.teardown(() => (a.close(), b.close()));
  t.true(await a.alive());
  t.true(await b.alive());
  // Tenant A's group loses its IPv4 ingress rule: what it admitted between 10.100.0.1 and 10.100.0.2
  // is cut, and B's connection runs between those addresses too, in br1.
  s.h.fw.setGroup({ ...defaultGroup(), rules: defaultGroup().rules.filter((r) => r.id !== 'default-i4') });
  await s.h.fw.flush();
  t.false(await a.alive(), "A's connection is cut");
  t.true(await b.alive(), "B's connection, between the same addresses in another network, is not");
});

onBothBackends('conntrack zones turned on under a live connection: it goes on, its entry now in the zone', async (t, backend) => {
  const topo = new Topology();
  t.teardown(() => topo.destroy());
  const [a, b] = [topo.addVm(1), topo.addVm(2)];
  const state = (fw: FirewallEngine) => {
    fw.setGroup(defaultGroup());
    for (const vm of [a, b]) fw.setPort(vmPort(vm, ['default']));
    fw.setGroupMembers('default', [a.ip4, b.ip4]);
    return fw.flush();
  };
  const before = await openEngine(backend, topo.host, { coalesceMs: 5 });
  await state(before);
  topo.serve(b, 4100);
  const c = await topo.longConnection(a, b.ip4, 4100);
  t.teardown(() => c.close());
  t.true(await c.alive());
  await before.close();
  // The agent restarted with the setting: the same ports, the rules rewritten with the zone's.
  const after = await openEngine(backend, topo.host, { coalesceMs: 5, conntrackZoneBridges: ['br'] });
  t.teardown(() => after.close());
  await state(after);
  t.true(await c.alive(), "the kernel's loose TCP pickup takes the connection up again in the zone, its rules admitting it");
  t.regex(topo.host.exec('conntrack', ['-L', '-p', 'tcp', '--dport', '4100']), new RegExp(`zone=${zoneOfDevice(topo, 'br0')}\\b`));
});

onBothBackends('without conntrack zones (the default), networks with overlapping addresses share the table', async (t, backend) => {
  // What the setting is for, and that the scene above tells it: the same datagram passes as a reply.
  const s = await overlappingTenants(t, backend, false);
  t.notRegex(s.entry, /zone=/);
  t.true(s.lookalikeAnswered(), "B2's datagram passes as the reply of A's connection, and B1 answers");
});

kernelTest(
  'conntrack zones: a switch of backend keeps each connection in its zone, and the connection alive; a bridge made after it is zoned',
  async (t) => {
    const topo = new Topology();
    t.teardown(() => topo.destroy());
    const [a, b] = [topo.addVm(1), topo.addVm(2)];
    // Without loose pickup a connection looked up in another zone than its entry's is dead.
    topo.host.exec('sysctl', ['-qw', 'net.netfilter.nf_conntrack_tcp_loose=0']);
    const state = {
      ports: [vmPort(a, ['default']), vmPort(b, ['default'])],
      groups: [defaultGroup()],
      members: { default: [a.ip4, b.ip4] },
    };
    const first = await openEngine('iptables', topo.host, { coalesceMs: 5, conntrackZoneBridges: ['br'] });
    first.replaceAll(state);
    await first.flush();
    await first.close();
    topo.serve(b, 4100);
    const c = await topo.longConnection(a, b.ip4, 4100);
    t.teardown(() => c.close());
    t.true(await c.alive());
    for (const to of ['nftables', 'iptables'] as const) {
      const { dataplane } = await openDataplane(to, { netns: topo.host.path, mode: 'bridged', conntrackZoneBridges: ['br'] });
      const fw = new FirewallEngine(dataplane, { coalesceMs: 5 });
      fw.replaceAll(state);
      await fw.flush();
      t.true(await c.alive(), `on ${to}: the connection goes on`);
      t.regex(
        topo.host.exec('conntrack', ['-L', '-p', 'tcp', '--dport', '4100']),
        new RegExp(`zone=${zoneOfDevice(topo, 'br0')}\\b`),
        `on ${to}: in br0's zone`,
      );
      if (to === 'iptables') {
        // Opened as the agent opens it (openDataplane's wrapper): a bridge made now is heard and zoned.
        topo.addBridge('br5');
        await waitFor('a bridge made later zoned, through the wrapper', () => zoneRules(topo, 'iptables').includes('-i br5 '));
      }
      await fw.close();
    }
  },
);

kernelTest.serial(
  'an iptables agent zones a bridge made after its ports were bound (as os-vif plugs a VM), as the bridge appears',
  async (t) => {
    const bed = await testBed(t, { topology: true, prefix: 'sgzone' });
    const topo = bed.topo;
    const ctl = bed.track(await startController({ amqpUrl: bed.vhost.url(), key: bed.key, token: bed.token, dataDir: bed.dataDir }));
    const agent = bed.track(
      await startAgent({
        host: `zones-${bed.vhost.name}`,
        amqpUrl: bed.vhost.url(),
        trustedKeys: bed.key.publicKeyFile,
        netns: topo.host.path,
        // No periodic check: only the device watch can zone the bridge.
        env: { SG_DATAPLANE: 'iptables', SG_RECONCILE_INTERVAL_MS: '0', SG_CONNTRACK_ZONE_BRIDGES: 'brq' },
      }),
    );
    await agentConnected(agent);
    await ctl.call('PUT', '/groups/web', {
      rules: [
        { id: 'from-web', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'web' },
        { id: 'out4', direction: 'egress', ethertype: 'IPv4' },
      ],
    });
    // Both ports bound first, on a bridge that does not exist yet.
    for (const n of [1, 2]) {
      await ctl.call('PUT', `/ports/p${n}`, {
        host: agent.host,
        device: topo.vmDevice(n, 'brq1'),
        mac: `02:00:00:00:00:0${n}`,
        fixedIps: [`10.100.0.${n}`],
        securityGroups: ['web'],
      });
    }
    await waitFor('both ports filtered', async () => {
      const s = await agent.status();
      return ['p1', 'p2'].every((id) => s.ports.some((p) => p.id === id && p.inKernel));
    });
    const zoneRule = () => topo.host.exec('iptables-save', ['-t', 'raw']).match(/-i brq1 -j CT --zone (\d+)/)?.[1];
    t.is(zoneRule(), undefined, 'no bridge, no zone rule');
    // Then the VMs are plugged: the bridge, and a VM on it each.
    topo.addBridge('brq1');
    const [vm1, vm2] = [topo.addVm(1, 'brq1'), topo.addVm(2, 'brq1')];
    const zone = topo.host.ifindex('brq1') & 0xffff;
    t.is(await waitFor("brq1's zone rule", zoneRule), String(zone));
    await waitFor('vm1 reaches vm2', () => topo.ping(vm1, vm2.ip4));
    t.regex(
      topo.host.exec('conntrack', ['-L', '-p', 'icmp', '-s', vm1.ip4]),
      new RegExp(`zone=${zone}\\b`),
      "the ping tracked in brq1's zone",
    );
    t.deepEqual((await agent.status()).conntrackZones, [{ bridge: 'brq1', zone }], 'status lists the zoned bridge');
  },
);
