// An agent on the nftables backend through the life of a host — start-up with no port, its first
// port, periodic full syncs that change nothing, a reconnect — with and without a bridge: no apply
// may fail on the way. A full sync whose members the kernel already holds once made a transaction
// of no message, which was taken for a refusal: the apply loop then backed off (up to 30 s) and held
// every later change of the host back behind its timer.
import type { ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { NFT, Oracle } from './helpers/backends.js';
import { closeConnections } from './helpers/broker.js';
import { kernelTest } from './helpers/gate.js';
import { Netns } from './helpers/netns.js';
import { waitFor } from './helpers/wait.js';
import { agentConnected, startAgent, startController, testBed, type AgentProc, type ControllerProc, type TestBed } from './helpers/sg.js';

const repo = path.resolve(__dirname, '..');

const rulesOf = (self: boolean) => [
  ...(self ? [{ id: 'from-web', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'web' }] : []),
  { id: 'out4', direction: 'egress', ethertype: 'IPv4' },
];

interface HostVm {
  device: string;
  mac: string;
  ip4: string;
  ping(to: string): boolean;
}

/** A host namespace and two VMs: on a bridge (bridged mode), or each on a routed link of its own. */
function host(t: ExecutionContext, bed: TestBed, mode: 'bridged' | 'routed'): { ns: Netns; vms: HostVm[] } {
  if (mode === 'bridged') {
    const vms = [bed.topo.addVm(1), bed.topo.addVm(2)];
    return { ns: bed.topo.host, vms: vms.map((v) => ({ device: v.device, mac: v.mac, ip4: v.ip4, ping: (to) => bed.topo.ping(v, to) })) };
  }
  const ns = Netns.create('sgrt');
  const made: Netns[] = [ns];
  t.teardown(() => made.forEach((n) => n.destroy()));
  ns.exec('sysctl', ['-qw', 'net.ipv4.ip_forward=1']);
  const vms = [1, 2].map((n): HostVm => {
    const vm = Netns.create('sgrtvm');
    made.push(vm);
    const device = `r${process.pid % 1000}a${n}`;
    const mac = `02:00:00:00:02:0${n}`;
    const [ip4, gw4] = [`10.201.${n}.2`, `10.201.${n}.1`];
    ns.exec('ip', ['link', 'add', device, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', vm.name]);
    ns.exec('ip', ['addr', 'add', `${gw4}/24`, 'dev', device]);
    ns.exec('ip', ['link', 'set', device, 'up']);
    vm.exec('ip', ['link', 'set', 'eth0', 'address', mac]);
    vm.exec('ip', ['addr', 'add', `${ip4}/24`, 'dev', 'eth0']);
    vm.exec('ip', ['link', 'set', 'eth0', 'up']);
    vm.exec('ip', ['route', 'add', 'default', 'via', gw4]);
    return { device, mac, ip4, ping: (to) => vm.run('ping', ['-c1', '-W2', to]).status === 0 };
  });
  return { ns, vms };
}

async function applyErrors(agent: AgentProc): Promise<number> {
  return agent.metric('sg_agent_apply_errors_total');
}

async function putPort(ctl: ControllerProc, agent: AgentProc, id: string, vm: HostVm): Promise<void> {
  await ctl.call('PUT', `/ports/${id}`, { host: agent.host, device: vm.device, mac: vm.mac, fixedIps: [vm.ip4], securityGroups: ['web'] });
}

async function filtered(agent: AgentProc, ids: string[]): Promise<void> {
  await waitFor(`${ids.join(', ')} filtered in the kernel`, async () => {
    if (agent.exited) throw new Error(`agent exited:\n${agent.dump()}`);
    const s = await agent.status();
    return ids.every((id) => s.ports.some((p) => p.id === id && p.inKernel));
  });
}

for (const mode of ['bridged', 'routed'] as const) {
  kernelTest.serial(
    `nftables, ${mode}: start-up, the first port, full syncs with no change and a reconnect make no failed apply`,
    async (t) => {
      const bed = await testBed(t, { topology: mode === 'bridged', prefix: 'sgnft' });
      const { ns, vms } = host(t, bed, mode);
      const [vm1, vm2] = [vms[0]!, vms[1]!];
      const ctl = bed.track(await startController({ amqpUrl: bed.vhost.url(), key: bed.key, token: bed.token, dataDir: bed.dataDir }));
      const agent = bed.track(
        await startAgent({
          host: `nft-${mode}-${bed.vhost.name}`,
          amqpUrl: bed.vhost.url(),
          trustedKeys: bed.key.publicKeyFile,
          netns: ns.path,
          // Full syncs every few hundred milliseconds: each one with nothing to change.
          // Bridged, with conntrack zones (the bridge is br0): the setting reaches the rules, and a
          // zone changes nothing of the rest.
          env: {
            SG_DATAPLANE: 'nftables',
            SG_FIREWALL_MODE: mode,
            SG_FULL_SYNC_INTERVAL_MS: '300',
            SG_RECONCILE_INTERVAL_MS: '1000',
            ...(mode === 'bridged' ? { SG_CONNTRACK_ZONE_BRIDGES: 'br' } : {}),
          },
        }),
      );
      await agentConnected(agent);
      t.is(await applyErrors(agent), 0, 'start-up with no port');

      // The first port of the host, in a group of its own making.
      await ctl.call('PUT', '/groups/web', { rules: rulesOf(false) });
      await putPort(ctl, agent, 'p1', vm1);
      await filtered(agent, ['p1']);
      const oracle = new Oracle('nftables', ns);
      t.true(oracle.hasPortChains('p1'), "the first port's chains are in the kernel");
      t.is(await applyErrors(agent), 0, 'the first port');

      // A second port, and the group admitting its own members: they reach each other.
      await putPort(ctl, agent, 'p2', vm2);
      await ctl.call('PUT', '/groups/web', { rules: rulesOf(true) });
      await filtered(agent, ['p1', 'p2']);
      const members = () => [...(oracle.setMembers('web', 4) ?? [])];
      await waitFor('both addresses in the set', () =>
        [vm1.ip4, vm2.ip4].every((ip) => members().some((m) => m === ip || m.startsWith(`${ip}/`))),
      );
      await waitFor('vm1 reaches vm2', () => vm1.ping(vm2.ip4));
      if (mode === 'bridged') {
        t.regex(ns.exec(NFT, ['list', 'ruleset']), /iifkind "bridge" iifname "br\*" ct zone set iif/);
        const zone = ns.ifindex('br0') & 0xffff;
        t.regex(ns.exec('conntrack', ['-L', '-p', 'icmp', '-s', vm1.ip4]), new RegExp(`zone=${zone}\\b`), "the ping tracked in br0's zone");
        t.deepEqual((await agent.status()).conntrackZones, [{ bridge: 'br0', zone }], 'status lists the zoned bridge');
        const cli = spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'src/cli/sg-agent.ts'), 'status'], {
          cwd: repo,
          env: { ...process.env, SG_METRICS_LISTEN: agent.metrics },
          encoding: 'utf8',
        });
        t.regex(cli.stdout, new RegExp(`conntrack zones \\(1 bridges\\):\\n\\s+br0\\s+zone=${zone}\\n`), cli.stderr);
      }

      // Full syncs that change nothing.
      const syncs = await agent.metric('sg_agent_resyncs_total{scope="host"}');
      await waitFor('five more full syncs', async () => (await agent.metric('sg_agent_resyncs_total{scope="host"}')) >= syncs + 5);
      t.is(await applyErrors(agent), 0, 'full syncs with no change');

      // A reconnect: a full sync on the new session, again with nothing to change.
      const reconnects = await agent.metric('sg_agent_reconnects_total');
      await waitFor('the agent connection found and closed', () => closeConnections(bed.vhost, `sg-agent ${agent.host}`) >= 1);
      await waitFor('reconnected', async () => (await agent.metric('sg_agent_reconnects_total')) > reconnects);
      await agentConnected(agent);
      const after = await agent.metric('sg_agent_resyncs_total{scope="host"}');
      await waitFor('a full sync after the reconnect', async () => (await agent.metric('sg_agent_resyncs_total{scope="host"}')) > after);

      // A revocation after all that is in the kernel with the next apply: nothing is held back.
      await ctl.call('PUT', '/groups/web', { rules: rulesOf(false) });
      await waitFor('the revocation in the kernel', () => !oracle.rules().includes(oracle.setName('web', 4)));
      t.false(vm1.ping(vm2.ip4), 'the revoked rule admits nothing');
      t.is(await applyErrors(agent), 0, 'no apply failed at any point');
      t.deepEqual(
        (await agent.status()).ports.filter((p) => !p.inKernel),
        [],
        'every port filtered',
      );
    },
  );
}
