// sg-agent on real OpenStack compute hosts (test/helpers/openstack-env.ts): Keystone, neutron-server
// behind it, and two hosts each with its own Open vSwitch, Neutron's real OVS agent (firewall driver:
// ours, or Neutron's iptables_hybrid) and sg-agent, joined by a flat provider network. VMs boot as
// Nova boots them: a port bound to the host through Neutron's API, os-vif plugging it hybrid, a tap on
// qbr…. Host a runs sg-agent on nftables, host b on iptables. The stack is started once for the file;
// the tests run in order, each leaving the hosts as it found them.
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { canUseNetns } from './helpers/netns.js';
import { testsNeeding } from './helpers/gate.js';
import { devName, type ComputeHost, type OsVm } from './helpers/compute-host.js';
import { OpenStackEnv } from './helpers/openstack-env.js';
import { startProbe, type Flow, type Probe } from './helpers/vm-probe.js';
import { waitFor } from './helpers/wait.js';
import type { PortSpec } from './helpers/compute-host.js';
import type { Body } from './helpers/neutron-env.js';

const hasOvs = spawnSync('sh', ['-c', 'command -v ovs-vswitchd && command -v ovsdb-server && command -v ethtool'], { stdio: 'ignore' }).status === 0;
const openstackTest = testsNeeding(
  !canUseNetns() ? 'root and the ip(8) tool, to create network namespaces'
    : !hasOvs ? 'Open vSwitch and ethtool (scripts/setup.sh installs openvswitch-switch and ethtool)' : undefined,
);

const tag = randomBytes(3).toString('hex');
const TOKEN_EXPIRATION_S = 70;
let env: OpenStackEnv;
let a: ComputeHost;
let b: ComputeHost;
const groups: Record<string, string> = {};
interface Booted { port: PortSpec; vm: OsVm; host: ComputeHost }
const vms: Record<string, Booted> = {};

/** Ports the tests serve on: web answers on 8080 (from web), db on 5432 (from web); 5433 is served
 *  by db but allowed to nobody until a rule says so. */
const WEB = 8080;
const DB = 5432;
const DB_CLOSED = 5433;

async function group(name: string, rules: (id: string) => Body[]): Promise<string> {
  const g = await env.create('security_group', { name: `${name}-${tag}` });
  groups[name] = g.id;
  for (const r of rules(g.id)) await env.create('security_group_rule', { security_group_id: g.id, ...r });
  return g.id;
}

const both = (r: Body): Body[] => [{ ...r, ethertype: 'IPv4' }, { ...r, ethertype: 'IPv6' }];

/** A VM booted on `host` as Nova boots one: the port bound there, os-vif, the tap; echo servers on it. */
async function boot(name: string, host: ComputeHost, n: number, groupNames: string[]): Promise<Booted> {
  const port = await env.port(host.name, n, groupNames.map((g) => groups[g]!));
  const vm = host.plug(port);
  for (const p of [WEB, DB, DB_CLOSED]) host.traffic.serve(vm, p);
  vms[name] = { port, vm, host };
  return vms[name];
}

test.before(async () => {
  if (!openstackTest.runs) return;
  env = await OpenStackEnv.start({
    hosts: [{ name: `compute-a-${tag}`, dataplane: 'nftables' }, { name: `compute-b-${tag}`, dataplane: 'iptables' }],
    tokenExpiration: TOKEN_EXPIRATION_S,
  });
  [a, b] = env.hosts as [ComputeHost, ComputeHost];
  await group('web', (id) => [...both({ direction: 'ingress', remote_group_id: id }), ...both({ direction: 'ingress', protocol: 'tcp', port_range_min: WEB, port_range_max: WEB, remote_group_id: id })]);
  await group('db', () => both({ direction: 'ingress', protocol: 'tcp', port_range_min: DB, port_range_max: DB, remote_group_id: groups.web }));
  await group('iso', () => []);
});

test.after.always(async () => {
  await env?.stop();
});

openstackTest.serial('ports created through Neutron with Keystone auth become ACTIVE, hybrid-plugged by os-vif, and are filtered as their groups say, within and across hosts, IPv4 and IPv6', async (t) => {
  const w1 = await boot('w1', a, 11, ['web']);
  const d1 = await boot('d1', a, 12, ['db']);
  const w2 = await boot('w2', b, 21, ['web']);
  const d2 = await boot('d2', b, 22, ['db']);
  const x = await boot('x', b, 23, ['iso']);
  await env.waitActive(...Object.values(vms).map((v) => v.port.id));
  const bound = (await env.neutron.call<{ port: Body }>('GET', `ports/${w1.port.id}`)).port;
  t.like(bound, { 'binding:host_id': a.name, 'binding:vif_type': 'ovs', 'binding:vif_details': { ovs_hybrid_plug: true, datapath_type: 'netdev' } });
  t.true(a.vsctl('list-ports', 'br-int').includes(devName('qvo', w1.port.id)), 'qvo… on br-int, as os-vif plugs it');
  await a.filtered(w1.port.id, d1.port.id);
  await b.filtered(w2.port.id, d2.port.id, x.port.id);

  const ta = a.traffic;
  const tb = b.traffic;
  // Within a host and across, both families.
  await waitFor('web reaches web across hosts', () => ta.ping(w1.vm, w2.vm.ip4), 30_000);
  t.true(ta.ping(w1.vm, w2.vm.ip6), 'IPv6 across hosts');
  t.true(ta.tcp(w1.vm, d1.vm.ip4, DB), 'web → db within host a');
  t.true(ta.tcp(w1.vm, d2.vm.ip6, DB), 'web → db across hosts, IPv6');
  t.true(tb.tcp(w2.vm, d1.vm.ip4, DB), 'web → db from b to a');
  t.true(tb.tcp(w2.vm, w1.vm.ip6, WEB), 'web → web');
  t.false(ta.tcp(w1.vm, d1.vm.ip4, DB_CLOSED), 'db only on its port');
  t.false(ta.tcp(w1.vm, d2.vm.ip6, DB_CLOSED), 'db only on its port, across hosts');
  t.false(tb.tcp(x.vm, d2.vm.ip4, DB), 'iso is not web');
  t.false(tb.tcp(x.vm, d1.vm.ip6, DB), 'iso is not web, across hosts');
  t.false(tb.ping(x.vm, w2.vm.ip4), 'iso is not web: no ping');
  t.false(ta.ping(d1.vm, w1.vm.ip6), 'db is not web');

  // A rule through the API opens db's closed port to web on both hosts; its deletion closes it again.
  const rules = await Promise.all(both({ direction: 'ingress', protocol: 'tcp', port_range_min: DB_CLOSED, port_range_max: DB_CLOSED, remote_group_id: groups.web })
    .map((r) => env.create('security_group_rule', { security_group_id: groups.db, ...r })));
  await waitFor('the new rule on host a', () => ta.tcp(w1.vm, d1.vm.ip4, DB_CLOSED), 30_000);
  await waitFor('the new rule across hosts', () => tb.tcp(w2.vm, d1.vm.ip6, DB_CLOSED) && ta.tcp(w1.vm, d2.vm.ip4, DB_CLOSED), 30_000);
  t.false(tb.tcp(x.vm, d2.vm.ip4, DB_CLOSED), 'still only from web');
  for (const r of rules) await env.neutron.remove('security_group_rule', r.id);
  await waitFor('the rule gone on both hosts', () => !ta.tcp(w1.vm, d1.vm.ip4, DB_CLOSED) && !tb.tcp(w2.vm, d2.vm.ip6, DB_CLOSED), 30_000);
});
