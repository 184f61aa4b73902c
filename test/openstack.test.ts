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
import { NFT } from './helpers/backends.js';
import { testsNeeding } from './helpers/gate.js';
import { devName, type ComputeHost, type OsVm } from './helpers/compute-host.js';
import { OpenStackEnv } from './helpers/openstack-env.js';
import { startProbe, type Flow, type Probe } from './helpers/vm-probe.js';
import { migrateToSgAgent, neutronChains, neutronIpsets, neutronJumps, rollBackToIptablesHybrid } from './helpers/host-migration.js';
import { waitFor } from './helpers/wait.js';
import { abortedLiveMigration, liveMigrate } from './helpers/live-migration.js';
import { holdsStore, type StoreView } from './helpers/converged.js';
import type { PortSpec } from './helpers/compute-host.js';
import type { Body } from './helpers/neutron-env.js';

const hasOvs =
  spawnSync('sh', ['-c', 'command -v ovs-vswitchd && command -v ovsdb-server && command -v ethtool'], { stdio: 'ignore' }).status === 0;
const openstackTest = testsNeeding(
  !canUseNetns()
    ? 'root and the ip(8) tool, to create network namespaces'
    : !hasOvs
      ? 'Open vSwitch and ethtool (scripts/setup.sh installs openvswitch-switch and ethtool)'
      : undefined,
);

const tag = randomBytes(3).toString('hex');
const TOKEN_EXPIRATION_S = 70;
let env: OpenStackEnv;
let a: ComputeHost;
let b: ComputeHost;
const groups: Record<string, string> = {};
interface Booted {
  port: PortSpec;
  vm: OsVm;
  host: ComputeHost;
}
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

const both = (r: Body): Body[] => [
  { ...r, ethertype: 'IPv4' },
  { ...r, ethertype: 'IPv6' },
];

/** A VM booted on `host` as Nova boots one: the port bound there, os-vif, the tap; echo servers on it. */
async function boot(name: string, host: ComputeHost, n: number, groupNames: string[]): Promise<Booted> {
  const port = await env.port(
    host.name,
    n,
    groupNames.map((g) => groups[g]!),
  );
  const vm = host.plug(port);
  for (const p of [WEB, DB, DB_CLOSED]) host.traffic.serve(vm, p);
  vms[name] = { port, vm, host };
  return vms[name];
}

test.before(async () => {
  if (!openstackTest.runs) return;
  env = await OpenStackEnv.start({
    hosts: [
      // Host a tracks each qbr bridge's traffic in a zone of its own (Neutron's hybrid driver: a zone per port).
      { name: `compute-a-${tag}`, dataplane: 'nftables', sgAgentEnv: { SG_DROP_UNKNOWN_DEVICES: 'tap', SG_CONNTRACK_ZONE_BRIDGES: 'qbr' } },
      { name: `compute-b-${tag}`, dataplane: 'iptables' },
    ],
    tokenExpiration: TOKEN_EXPIRATION_S,
  });
  [a, b] = env.hosts as [ComputeHost, ComputeHost];
  await group('web', (id) => [
    ...both({ direction: 'ingress', remote_group_id: id }),
    ...both({ direction: 'ingress', protocol: 'tcp', port_range_min: WEB, port_range_max: WEB, remote_group_id: id }),
  ]);
  await group('db', () =>
    both({ direction: 'ingress', protocol: 'tcp', port_range_min: DB, port_range_max: DB, remote_group_id: groups.web }),
  );
  await group('iso', () => []);
  // The VMs every test uses, booted here so that each test runs on its own (`--match` one).
  await boot('w1', a, 11, ['web']);
  await boot('d1', a, 12, ['db']);
  await boot('w2', b, 21, ['web']);
  await boot('d2', b, 22, ['db']);
  await boot('x', b, 23, ['iso']);
});

test.after.always(async () => {
  await env?.stop();
});

openstackTest.serial(
  'ports created through Neutron with Keystone auth become ACTIVE, hybrid-plugged by os-vif, and are filtered as their groups say, within and across hosts, IPv4 and IPv6',
  async (t) => {
    const [w1, d1, w2, d2, x] = (['w1', 'd1', 'w2', 'd2', 'x'] as const).map((n) => vms[n]!) as [Booted, Booted, Booted, Booted, Booted];
    await env.waitActive(...Object.values(vms).map((v) => v.port.id));
    const bound = (await env.neutron.call<{ port: Body }>('GET', `ports/${w1.port.id}`)).port;
    t.like(bound, {
      'binding:host_id': a.name,
      'binding:vif_type': 'ovs',
      'binding:vif_details': { ovs_hybrid_plug: true, datapath_type: 'netdev' },
    });
    t.true(a.vsctl('list-ports', 'br-int').includes(devName('qvo', w1.port.id)), 'qvo… on br-int, as os-vif plugs it');
    await a.filtered(w1.port.id, d1.port.id);
    await b.filtered(w2.port.id, d2.port.id, x.port.id);

    const ta = a.traffic;
    const tb = b.traffic;
    // Within a host and across, both families.
    await waitFor('web reaches web across hosts', () => ta.ping(w1.vm, w2.vm.ip4), 30_000);
    t.true(ta.ping(w1.vm, w2.vm.ip6), 'IPv6 across hosts');
    t.true(ta.tcp(w1.vm, d1.vm.ip4, DB), 'web → db within host a');
    // The connection crossed two qbr bridges of host a, each tracking it in its own zone.
    const zone = (portId: string) => a.ns.ifindex(devName('qbr', portId)) & 0xffff;
    const tracked = a.ns.exec('conntrack', ['-L', '-p', 'tcp', '-d', d1.vm.ip4, '--dport', String(DB)]);
    for (const p of [w1, d1]) t.regex(tracked, new RegExp(`zone=${zone(p.port.id)}\\b`), `in the zone of ${devName('qbr', p.port.id)}`);
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
    const rules = await Promise.all(
      both({
        direction: 'ingress',
        protocol: 'tcp',
        port_range_min: DB_CLOSED,
        port_range_max: DB_CLOSED,
        remote_group_id: groups.web,
      }).map((r) => env.create('security_group_rule', { security_group_id: groups.db, ...r })),
    );
    await waitFor('the new rule on host a', () => ta.tcp(w1.vm, d1.vm.ip4, DB_CLOSED), 30_000);
    await waitFor('the new rule across hosts', () => tb.tcp(w2.vm, d1.vm.ip6, DB_CLOSED) && ta.tcp(w1.vm, d2.vm.ip4, DB_CLOSED), 30_000);
    t.false(tb.tcp(x.vm, d2.vm.ip4, DB_CLOSED), 'still only from web');
    for (const r of rules) await env.neutron.remove('security_group_rule', r.id);
    await rulesGone(
      groups.db!,
      rules.map((r) => r.id),
      a,
      b,
    );
    t.false(ta.tcp(w1.vm, d1.vm.ip4, DB_CLOSED), 'the rule gone on host a');
    t.false(tb.tcp(w2.vm, d2.vm.ip6, DB_CLOSED), 'and on host b');
  },
);

/** The controller's store, as its admin API shows it. */
const store: StoreView = {
  ports: () => env.controllerGet('/ports'),
  group: (id) => env.controllerGet<{ revision: number; membersRevision: number }>(`/groups/${id}`).catch(() => undefined),
};

/** Waits until Neutron's deletion of rules `ids` of group `groupId` reached the store, then until the
 *  hosts hold what the store says (helpers/converged.ts). A drop is asserted after this, never waited
 *  for: a probe failing for another reason would end such a wait before the agents acted. */
async function rulesGone(groupId: string, ids: string[], ...hs: ComputeHost[]): Promise<void> {
  await waitFor(
    'the deleted rules gone from the store',
    async () => !(await env.controllerGet<{ rules: { id: string }[] }>(`/groups/${groupId}`)).rules.some((r) => ids.includes(r.id)),
    30_000,
  );
  for (const h of hs)
    await waitFor(`${h.name} holding what the store says`, async () => holdsStore(await h.status(), h.name, store), 60_000);
}

/** Established allowed flows, across and within hosts (TCP, and UDP unless left out; both families),
 *  and attempts that are not allowed, all kept up while the hosts change. */
async function watch(opts: { udp?: boolean } = {}): Promise<Probe[]> {
  const [w1, d1, w2, d2, x] = (['w1', 'd1', 'w2', 'd2', 'x'] as const).map((n) => vms[n]!.vm) as [OsVm, OsVm, OsVm, OsVm, OsVm];
  const udp = (f: Flow): Flow[] => ((opts.udp ?? true) ? [f] : []);
  return Promise.all([
    startProbe(w1, [
      { id: 'w1→d2 tcp4', proto: 'tcp', host: d2.ip4, port: DB, open: true },
      { id: 'w1→d1 tcp6', proto: 'tcp', host: d1.ip6, port: DB, open: true },
      ...udp({ id: 'w1→w2 udp6', proto: 'udp', host: w2.ip6, port: WEB, open: true }),
      { id: 'w1→d2 closed port', proto: 'tcp', host: d2.ip4, port: DB_CLOSED, open: false },
    ]),
    startProbe(w2, [
      { id: 'w2→w1 tcp6', proto: 'tcp', host: w1.ip6, port: WEB, open: true },
      { id: 'w2→d2 tcp4', proto: 'tcp', host: d2.ip4, port: DB, open: true },
      ...udp({ id: 'w2→w1 udp4', proto: 'udp', host: w1.ip4, port: WEB, open: true }),
      { id: 'w2→d1 udp (db is tcp only)', proto: 'udp', host: d1.ip4, port: DB, open: false },
    ]),
    startProbe(x, [
      { id: 'x→d2 tcp4', proto: 'tcp', host: d2.ip4, port: DB, open: false },
      { id: 'x→d1 tcp6', proto: 'tcp', host: d1.ip6, port: DB, open: false },
      { id: 'x→w1 tcp6', proto: 'tcp', host: w1.ip6, port: WEB, open: false },
      { id: 'x→w2 udp4', proto: 'udp', host: w2.ip4, port: WEB, open: false },
    ]),
  ]);
}

/** Every open flow carries data again, none broke or lost a message, nothing closed passed. */
async function holds(t: ExecutionContext, probes: Probe[], when: string): Promise<void> {
  await Promise.all(probes.map((p) => p.carrying()));
  t.deepEqual((await Promise.all(probes.map((p) => p.violations()))).flat(), [], when);
}

const portsOn = (h: ComputeHost) =>
  Object.values(vms)
    .filter((v) => v.host === h)
    .map((v) => v.port.id);

/** Lines of the OVS agents' logs at ERROR or worse since they last started. */
const agentErrors = () =>
  env.hosts.flatMap((h) =>
    h
      .agentLog()
      .split('\n')
      .filter((l) => / (ERROR|CRITICAL) /.test(l))
      .map((l) => `${h.name}: ${l.slice(0, 300)}`),
  );

openstackTest.serial(
  'restarting the OVS agent, sg-agent, or both keeps every established allowed connection and admits nothing new that is not allowed',
  async (t) => {
    const probes = await watch();
    try {
      for (const what of ['OVS agent', 'sg-agent', 'both'] as const) {
        const ovs = what !== 'sg-agent';
        const sg = what !== 'OVS agent';
        await Promise.all(
          env.hosts.map(async (h) => {
            if (ovs) await h.stopOvsAgent();
            if (sg) await h.stopSgAgent();
            if (ovs) await h.startOvsAgent();
            if (sg) await h.startSgAgent();
          }),
        );
        await env.waitActive(...Object.values(vms).map((v) => v.port.id));
        for (const h of env.hosts) await h.filtered(...portsOn(h));
        await holds(t, probes, `${what} restarted on both hosts`);
        t.true(a.traffic.tcp(vms.w1!.vm, vms.d2!.vm.ip4, DB), `${what} restarted: a new allowed connection`);
        t.false(b.traffic.tcp(vms.x!.vm, vms.d1!.vm.ip4, DB), `${what} restarted: a new disallowed one refused`);
      }
      // The OVS agents take up their ports in a loop after their first (OVSDB lists them late): still holding then.
      for (const h of env.hosts) await h.agentLoopCompleted(3);
      await holds(t, probes, 'a few OVS agent loops later');
      t.deepEqual(agentErrors(), []);
    } finally {
      for (const p of probes) p.stop();
    }
  },
);

/** sg-agent's own objects on a host: its chains (both families) and sets. */
function sgObjects(h: ComputeHost): string[] {
  const chains = ['iptables', 'ip6tables'].flatMap((c) =>
    h.ns
      .exec(`${c}-save`, ['-t', 'filter'])
      .split('\n')
      .filter((l) => /^:sg-/.test(l)),
  );
  const sets = h.ns
    .exec('ipset', ['list', '-n'])
    .split('\n')
    .filter((l) => /^sg-/.test(l));
  return [...chains, ...sets];
}

openstackTest.serial(
  "a host moved from Neutron's iptables_hybrid firewall to sg-agent by docs/neutron.md's checklist, and rolled back by it: no established allowed connection breaks, nothing disallowed passes at any step, Neutron's chains and ipsets are gone",
  async (t) => {
    let probes = await watch();
    const stepsHold = (phase: string) => (step: string) => holds(t, probes, `${phase}, step ${step}`);
    try {
      // Host b becomes a host of Neutron's own firewall the way a rollback makes one, with connections
      // established through sg-agent's filter, then new ones through Neutron's alone.
      await rollBackToIptablesHybrid(env, b, stepsHold('to iptables_hybrid'));
      t.is(neutronJumps(b).length, 6, "Neutron's jumps (two in FORWARD, one in INPUT) in both families");
      t.true(
        portsOn(b).every((id) => neutronChains(b).some((c) => c.endsWith(`-i${id.slice(0, 10)}`))),
        "a Neutron chain for each port (named i + part of its device's name)",
      );
      t.deepEqual(sgObjects(b), [], 'sg-agent cleaned up');
      for (const p of probes) p.stop();
      probes = await watch();

      await migrateToSgAgent(env, b, stepsHold('migration'));
      t.deepEqual(neutronChains(b), [], "Neutron's chains gone");
      t.deepEqual(neutronIpsets(b), [], "Neutron's ipsets gone");

      await rollBackToIptablesHybrid(env, b, stepsHold('rollback'));
      t.is(neutronJumps(b).length, 6, "Neutron's jumps back");
      t.deepEqual(sgObjects(b), [], 'sg-agent cleaned up');

      // And forward again, leaving host b as the other tests found it.
      await migrateToSgAgent(env, b, stepsHold('second migration'));
      t.deepEqual([...neutronChains(b), ...neutronIpsets(b)], []);
      t.deepEqual(agentErrors(), []);
    } finally {
      for (const p of probes) p.stop();
    }
  },
);

openstackTest.serial(
  'a VM live-migrated between hosts as Nova does it: filtered on the destination before it arrives, its binding moves, its allowed connections resume, the old host keeps no trace of its port',
  async (t) => {
    const moving = vms.w2!;
    // Over TCP only: the VM has no network while it moves, and a datagram sent then is lost, as in a real migration.
    const probes = await watch({ udp: false });
    try {
      const { port, vm } = moving;
      await liveMigrate(env, port, vm, b, a, {
        // sg-controller places the port on the destination from `migrating_to`: its filter is in place
        // there before the VM arrives, and the source keeps filtering it meanwhile.
        beforeMove: async () => {
          await a.filtered(port.id);
          t.true(
            (await b.status()).ports.some((p) => p.id === port.id && p.inKernel),
            'still filtered on the source',
          );
        },
      });
      vms.w2 = { ...moving, host: a };

      await waitFor('binding:host_id on the destination', async () => (await env.portStatus(port.id)).host === a.name, 30_000);
      await env.waitActive(port.id);
      await a.filtered(port.id);
      await b.forgot(port.id);
      await holds(t, probes, 'after the live migration');
      t.deepEqual(b.traces(port.id), [], 'no device or OVS port of it left on the source');
      const tap = devName('tap', port.id);
      // Neutron's conntrack-zone rules in the raw table, left from the host's time on iptables_hybrid as
      // the migration checklist says (connections live in those zones), are Neutron's, not sg-agent's.
      const naming = [b.ns.exec('iptables-save', []), b.ns.exec('ip6tables-save', []), b.ns.exec(NFT, ['list', 'ruleset'])]
        .join('\n')
        .split('\n')
        .filter((l) => l.includes(tap) && !/^-A neutron-openvswi-(PREROUTING|OUTPUT) .* -j CT --zone /.test(l));
      t.deepEqual(naming, [], 'no rule of the source names its tap');
      t.true(a.traffic.tcp(vms.d1!.vm, vm.ip4, WEB) === false, 'db still may not reach web on its new host');
      t.true(a.traffic.tcp(vms.w1!.vm, vm.ip6, WEB), 'web reaches it on its new host');
      t.deepEqual(agentErrors(), []);
    } finally {
      for (const p of probes) p.stop();
    }
  },
);

openstackTest.serial(
  'a live migration rolled back before the VM moves: the destination forgets the port, the source keeps filtering it',
  async (t) => {
    const { port, vm, host } = vms.w2!;
    const to = host === a ? b : a;
    const probes = await watch();
    try {
      await abortedLiveMigration(env, port, vm, to, async () => {
        await to.filtered(port.id);
      });
      await to.forgot(port.id);
      t.true(
        (await host.status()).ports.some((p) => p.id === port.id && p.inKernel),
        'still filtered on its host',
      );
      t.is((await env.portStatus(port.id)).host, host.name, 'the binding stayed');
      t.deepEqual(to.traces(port.id), [], 'no device or OVS port of it left on the destination');
      await holds(t, probes, 'after the rolled-back migration');
      t.deepEqual(agentErrors(), []);
    } finally {
      for (const p of probes) p.stop();
    }
  },
);

openstackTest.serial('sg-controller renews its Keystone token as it expires and misses no change', async (t) => {
  type Stats = { reconciler: { apiErrors: number; lastError?: string } };
  const errorsBefore = (await env.controllerGet<Stats>('/neutron')).reconciler.apiErrors;
  const seen = env.controllerTokens.length;
  const current = env.controllerTokens.at(-1)!;
  const [w1, d1] = [vms.w1!.vm, vms.d1!.vm];
  let changes = 0;
  // Changes one after another until the token in use at the start has expired and another was issued:
  // each must reach the host's kernel.
  while (Date.now() < current.expiresAt + 2_000 || env.controllerTokens.length === seen) {
    const rule = await env.create('security_group_rule', {
      security_group_id: groups.db,
      direction: 'ingress',
      ethertype: 'IPv4',
      protocol: 'tcp',
      port_range_min: DB_CLOSED,
      port_range_max: DB_CLOSED,
      remote_group_id: groups.web,
    });
    await waitFor(`change ${changes + 1} (a rule added) on the host`, () => a.traffic.tcp(w1, d1.ip4, DB_CLOSED), 30_000);
    await env.neutron.remove('security_group_rule', rule.id);
    await rulesGone(groups.db!, [rule.id], a);
    t.false(a.traffic.tcp(w1, d1.ip4, DB_CLOSED), `change ${changes + 2} (the rule deleted) on the host`);
    changes += 2;
  }
  t.true(env.controllerTokens.length > seen, 'a new token was issued');
  t.true(changes >= 2);
  const ctl = (await env.controllerGet<Stats>('/neutron')).reconciler;
  t.is(ctl.apiErrors, errorsBefore, `no API call failed meanwhile (last error: ${ctl.lastError ?? 'none'})`);
});
