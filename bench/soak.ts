// A host left running: one agent on the nftables backend (or SOAK_DATAPLANE) through start-up with no
// port, its first ports, SOAK_MINUTES (default 10) of periodic full syncs every 10 s that change
// nothing, a member change now and then, and a reconnect half-way. Prints what the agent counted: a
// healthy host has no failed apply and no drift repaired.
//
//   node --import tsx bench/soak.ts        (root; a throwaway namespace; RabbitMQ as the tests use it)
import { closeConnections } from '../test/helpers/broker.js';
import { waitFor } from '../test/helpers/wait.js';
import { agentConnected, startAgent, startController, testBed } from '../test/helpers/sg.js';

const minutes = Number(process.env.SOAK_MINUTES ?? 10);
const dataplane = process.env.SOAK_DATAPLANE ?? 'nftables';

(async () => {
  const teardowns: (() => Promise<void> | void)[] = [];
  const t = { teardown: (f: () => Promise<void> | void) => teardowns.push(f) } as unknown as Parameters<typeof testBed>[0];
  try {
    const bed = await testBed(t, { topology: true, prefix: 'sgsoak' });
    const [a, b] = [bed.topo.addVm(1), bed.topo.addVm(2)];
    const ctl = bed.track(await startController({ amqpUrl: bed.vhost.url(), key: bed.key, token: bed.token, dataDir: bed.dataDir }));
    const agent = bed.track(
      await startAgent({
        host: `soak-${bed.vhost.name}`,
        amqpUrl: bed.vhost.url(),
        trustedKeys: bed.key.publicKeyFile,
        netns: bed.topo.host.path,
        env: { SG_DATAPLANE: dataplane, SG_FULL_SYNC_INTERVAL_MS: '10000', SG_LOG_LEVEL: 'warn' },
      }),
    );
    await agentConnected(agent);
    await ctl.call('PUT', '/groups/web', {
      rules: [
        { id: 'in', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'web' },
        { id: 'out', direction: 'egress', ethertype: 'IPv4' },
      ],
    });
    for (const [id, vm] of [
      ['p1', a],
      ['p2', b],
    ] as const) {
      await ctl.call('PUT', `/ports/${id}`, {
        host: agent.host,
        device: vm.device,
        mac: vm.mac,
        fixedIps: [vm.ip4],
        securityGroups: ['web'],
      });
    }
    await waitFor('both ports filtered', async () => (await agent.status()).ports.filter((p) => p.inKernel).length === 2);
    const end = Date.now() + minutes * 60_000;
    let reconnected = false;
    let changes = 0;
    while (Date.now() < end) {
      // A member elsewhere comes and goes once a minute.
      await ctl.call('PUT', '/ports/elsewhere', {
        host: 'other-host',
        device: 'tap9',
        mac: '02:00:00:00:00:99',
        fixedIps: [`10.100.9.${(changes % 200) + 1}`],
        securityGroups: ['web'],
      });
      changes++;
      if (!reconnected && Date.now() > end - (minutes * 60_000) / 2) {
        closeConnections(bed.vhost, `sg-agent ${agent.host}`);
        reconnected = true;
      }
      await new Promise((r) => setTimeout(r, Math.min(60_000, Math.max(0, end - Date.now()))));
      if (agent.exited) throw new Error(`agent exited:\n${agent.dump()}`);
    }
    const m = async (name: string) => agent.metric(name);
    const ping = bed.topo.ping(a, b.ip4);
    console.log(
      `soak.${dataplane} minutes=${minutes} full_syncs=${await m('sg_agent_resyncs_total{scope="host"}')} reconnects=${await m('sg_agent_reconnects_total')} member_changes=${changes} ` +
        `apply_errors=${await m('sg_agent_apply_errors_total')} drift_repaired=${await m('sg_agent_drift_repaired_total')} handler_errors=${await m('sg_agent_handler_errors_total')} members_reach_each_other=${ping}`,
    );
    // The agent logs at warn and above here: errors are what matters (a reconnect is a warning).
    const errors = agent.lines.filter((l) => /"level":(50|60)/.test(l));
    console.log(`soak.${dataplane}.log errors=${errors.length}${errors.length ? `\n${errors.slice(0, 20).join('\n')}` : ''}`);
  } finally {
    for (const f of teardowns.reverse()) await f();
  }
})().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
