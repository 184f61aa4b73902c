// Drift the periodic check must find on both backends, whatever it is: a member swapped for a
// foreign address (the set's count unchanged), a host with no port yet (nothing of ours to compare,
// and the check must not fail), and what a replace killed half-way left behind.
import { Writable } from 'node:stream';
import pino from 'pino';
import { tempSetName } from '../src/addon/ipset.js';
import type { SecurityGroupInput } from '../src/domain/model.js';
import { NFT, openEngine, Oracle } from './helpers/backends.js';
import { firewallHost, membersAndStranger, onBothBackends, vmPort } from './helpers/firewall.js';
import { kernelTest } from './helpers/gate.js';
import { ipsetSave } from './helpers/ipset-oracle.js';
import { Topology } from './helpers/topology.js';
import { waitFor } from './helpers/wait.js';

const web: SecurityGroupInput = {
  id: 'web',
  rules: [
    { id: 'i4', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'web' },
    { id: 'e4', direction: 'egress', ethertype: 'IPv4' },
  ],
};

/** A logger whose errors the test can read (the periodic check logs its failures). */
function recordingLogger(): { logger: pino.Logger; errors: string[] } {
  const errors: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        const o = JSON.parse(line) as { level: number; msg: string; err?: { message?: string } };
        if (o.level >= 50) errors.push(`${o.msg}: ${o.err?.message ?? ''}`);
      }
      done();
    },
  });
  return { logger: pino({ level: 'warn' }, sink), errors };
}

onBothBackends(
  'a member swapped for a foreign address, the count unchanged, is found and put back by the quick check',
  async (t, backend) => {
    const topo = new Topology();
    const fw = await openEngine(backend, topo.host, { coalesceMs: 5 });
    t.teardown(async () => {
      await fw.close();
      topo.destroy();
    });
    const k = new Oracle(backend, topo.host);
    const [a, b, x] = [topo.addVm(1), topo.addVm(2), topo.addVm(3)];
    fw.setGroup(web);
    fw.setGroup({ id: 'other', rules: [{ id: 'e4', direction: 'egress', ethertype: 'IPv4' }] });
    fw.setPort(vmPort(a, ['web']));
    fw.setPort(vmPort(b, ['web']));
    fw.setPort(vmPort(x, ['other']));
    fw.setGroupMembers('web', [a.ip4, b.ip4]);
    await fw.flush();
    t.true(topo.ping(a, b.ip4), 'a member reaches b');
    t.false(topo.ping(x, b.ip4), 'x is no member');
    // By hand: a's address out of the set, x's in; the set still holds two.
    const set = k.setName('web', 4);
    if (backend === 'iptables') {
      topo.host.exec('ipset', ['del', set, a.ip4]);
      topo.host.exec('ipset', ['add', set, x.ip4]);
    } else {
      topo.host.exec(NFT, ['delete', 'element', 'inet', k.nft.table, set, `{ ${a.ip4} }`]);
      topo.host.exec(NFT, ['add', 'element', 'inet', k.nft.table, set, `{ ${x.ip4} }`]);
    }
    t.is(k.setMembers('web', 4)?.size, 2, 'the count is as it was');
    t.true(topo.ping(x, b.ip4), 'drift: x gets in');
    const r = await fw.reconcile({ full: false });
    t.is(r.setsRepaired, 1, JSON.stringify(r));
    t.deepEqual([...(k.setMembers('web', 4) ?? [])].sort(), [a.ip4, b.ip4].sort());
    t.false(topo.ping(x, b.ip4), 'x is out again');
    t.true(topo.ping(a, b.ip4), 'a is in again');
    t.deepEqual(await fw.reconcile({ full: false }), { setsRepaired: 0, chainsRepaired: 0, staleRemoved: 0 }, 'nothing left to repair');
  },
);

onBothBackends('a host with no port: the periodic check runs without failing, and the first port goes in beside it', async (t, backend) => {
  const topo = new Topology();
  const { logger, errors } = recordingLogger();
  // A check every 50 ms: many of them run before, around and after the first port's apply.
  const fw = await openEngine(backend, topo.host, { coalesceMs: 5, reconcileIntervalMs: 50, logger });
  t.teardown(async () => {
    await fw.close();
    topo.destroy();
  });
  // Start-up as the agent's: the first full sync finds nothing for this host.
  fw.replaceAll({ ports: [], groups: [], members: {} });
  await fw.flush();
  t.deepEqual(await fw.reconcile({ full: false }), { setsRepaired: 0, chainsRepaired: 0, staleRemoved: 0 });
  t.deepEqual(await fw.reconcile({ full: true }), { setsRepaired: 0, chainsRepaired: 0, staleRemoved: 0 });
  // Counted where the engine's periodic timer calls the dataplane.
  let periodic = 0;
  const dp = fw.dataplane;
  const inner = dp.reconcile.bind(dp);
  dp.reconcile = (view, o) => (periodic++, inner(view, o));
  await waitFor('periodic checks with no port', () => periodic >= 5);
  // The first port, while the checks go on.
  const [a, b] = [topo.addVm(1), topo.addVm(2)];
  fw.setGroup(web);
  fw.setPort(vmPort(a, ['web']));
  fw.setPort(vmPort(b, ['web']));
  fw.setGroupMembers('web', [a.ip4, b.ip4]);
  await waitFor('both ports filtered', () => fw.portInKernel('port-vm1') && fw.portInKernel('port-vm2'));
  t.true(topo.ping(a, b.ip4), 'the members reach each other');
  const seen = periodic;
  await waitFor('periodic checks after the first port', () => periodic >= seen + 5);
  t.deepEqual(await fw.reconcile({ full: true }), { setsRepaired: 0, chainsRepaired: 0, staleRemoved: 0 }, 'the first port went in whole');
  t.deepEqual(errors, [], 'no check and no apply failed');
  t.is(fw.stats.applyErrors, 0);
});

kernelTest(
  'iptables › a temp set a killed replace left behind goes with the full check, its set kept; others are not touched',
  async (t) => {
    const { topo, fw, k } = await firewallHost(t, 'iptables');
    const { a, b } = await membersAndStranger({ topo, fw, k });
    const set = k.setName('default', 4);
    // What a process killed between filling a replace's temp set and the swap leaves: the temp set.
    topo.host.exec('ipset', ['create', tempSetName(set), 'hash:net']);
    // Another program's sets, one named like a temp set of ours would be but not derived from a name of ours.
    topo.host.exec('ipset', ['create', 'theirs', 'hash:net']);
    topo.host.exec('ipset', ['create', 'sg4-theirs.t', 'hash:net']);
    const r = await fw.reconcile({ full: true });
    t.is(r.staleRemoved, 1, JSON.stringify(r));
    const left = ipsetSave(topo.host);
    t.false(left.has(tempSetName(set)), 'the temp set is gone');
    t.true(left.has(set), 'its set stays');
    t.true(left.has('theirs') && left.has('sg4-theirs.t'), "another program's sets stay");
    t.true(topo.ping(a, b.ip4), 'the members still reach each other');
  },
);

kernelTest('iptables › a stale chain of ours another program jumps to stays, and does not stop the repair of the rest', async (t) => {
  const { topo, fw, k } = await firewallHost(t, 'iptables');
  const { a, b } = await membersAndStranger({ topo, fw, k });
  // Chains of our shape no port of this run owns: one another program's chain jumps to, one not.
  const [held, loose] = [k.ipt.ingressChain('port-gone-1'), k.ipt.ingressChain('port-gone-2')];
  topo.host.exec(
    'iptables-restore',
    ['--noflush'],
    `*filter\n:${held} - [0:0]\n:${loose} - [0:0]\n:OTHER - [0:0]\n-A OTHER -j ${held}\nCOMMIT\n`,
  );
  // And drift: a's ingress chain emptied by hand.
  const mine = k.ipt.ingressChain(`port-${b.name}`);
  topo.host.exec('iptables', ['-F', mine]);
  const r = await fw.reconcile({ full: true });
  t.true(r.chainsRepaired >= 1, JSON.stringify(r));
  t.is(r.staleRemoved, 1, JSON.stringify(r));
  const rules = topo.host.exec('iptables-save', ['-t', 'filter']);
  t.true(rules.includes(`-A ${mine} `), 'the emptied chain is written again');
  t.false(rules.includes(`:${loose} `), 'the stale chain nobody jumps to is gone');
  t.true(rules.includes(`:${held} `) && rules.includes(`-A OTHER -j ${held}`), 'the one another program jumps to stays, and its rule');
  t.true(topo.ping(a, b.ip4), 'the members reach each other');
});
