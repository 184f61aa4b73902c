// The iptables backend's dispatch chains are edited in place, not rewritten: binding or removing a
// port deletes and inserts its own rules, so the other ports' rules stay (with their counters), the
// chains read back exactly as the backend says it wrote them, and an edit that the kernel refuses
// (a rule changed behind our back) falls back to a rewrite instead of failing the port. The pure
// planning of the edits first, then the real kernel, with packets.
import test from 'ava';
import { editInPlace } from '../src/firewall/iptables/edit.js';
import { KernelNames } from '../src/firewall/iptables/names.js';
import { defaultGroup, firewallHost, vmPort } from './helpers/firewall.js';
import { kernelTest } from './helpers/gate.js';

test('an edit in place deletes what went, inserts what came at its section, and keeps the rest where it is', (t) => {
  const had = ['in a', 'in b', 'out a', 'out b', '-j ACCEPT'];
  const e = editInPlace('c', had, [['in b', 'in c'], ['out b', 'out c'], ['-j ACCEPT']])!;
  t.deepEqual(e.commands, ['-D c in a', '-D c out a', '-I c 2 in c', '-I c 4 out c']);
  t.deepEqual(e.lines, ['in b', 'in c', 'out b', 'out c', '-j ACCEPT']);
  // A rule's place within its section is free: the same rules in another order need no command.
  t.deepEqual(editInPlace('c', ['in b', 'in a', '-j ACCEPT'], [['in a', 'in b'], ['-j ACCEPT']]), {
    commands: [],
    lines: ['in b', 'in a', '-j ACCEPT'],
  });
  // The last section grows by appending; an empty chain's first rules too.
  t.deepEqual(editInPlace('c', ['x'], [['x', 'y']])!.commands, ['-A c y']);
  t.deepEqual(editInPlace('c', [], [['x'], ['y']])!.commands, ['-A c x', '-A c y']);
});

test('a chain that cannot be edited safely is rewritten: a rule twice, rules out of their sections, or as many commands as rules', (t) => {
  t.is(editInPlace('c', ['a', 'a', 'z'], [['a'], ['z']]), undefined, 'a delete would take the first of two');
  t.is(editInPlace('c', ['a', 'z'], [['a', 'a'], ['z']]), undefined);
  t.is(editInPlace('c', ['z', 'a'], [['a'], ['z']]), undefined, 'a kept rule is out of its section');
  t.is(editInPlace('c', ['a', 'b', 'c'], [['x', 'y']]), undefined, 'five commands for two rules');
});

/** iptables-save of our filter table, one family: rule lines of `chain` with their counters. */
function counted(save: string, chain: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of save.matchAll(new RegExp(`^\\[(\\d+):\\d+\\] -A ${chain} (.*)$`, 'gm'))) out.set(m[2]!, Number(m[1]));
  return out;
}

kernelTest(
  'iptables › binding and removing ports edits the dispatch chains in place: the other ports keep their rules and counters',
  async (t) => {
    const h = await firewallHost(t, 'iptables');
    const { topo, fw } = h;
    const n = new KernelNames('sg');
    const [a, b, c] = [topo.addVm(1), topo.addVm(2), topo.addVm(3)];
    fw.setGroup(defaultGroup());
    fw.setPort(vmPort(a, ['default']));
    fw.setPort(vmPort(b, ['default']));
    fw.setGroupMembers('default', [a.ip4, b.ip4, c.ip4]);
    await fw.flush();
    t.true(topo.ping(a, b.ip4), 'a reaches b');
    const saved = () => topo.host.exec('iptables-save', ['-c', '-t', 'filter']);
    const aRule = (chain: string) => [...counted(saved(), chain)].find(([r]) => r.includes(`--physdev-in ${a.device} `));
    const before = aRule(n.portsChain);
    t.truthy(before && before[1] > 0, `a's dispatch rule counted its packets: ${JSON.stringify(before)}`);

    // c comes: its rules go in, a's are not touched (a rewrite would have set its counter to 0).
    fw.setPort(vmPort(c, ['default']));
    await fw.flush();
    t.true(aRule(n.portsChain)![1] >= before![1], "a's counter is kept");
    t.true(topo.ping(a, c.ip4) && topo.ping(c, b.ip4), "c's filter is in, both ways");
    topo.addAddress(c, '10.100.0.77/24');
    t.false(topo.ping(c, a.ip4, { source: '10.100.0.77' }), "c's anti-spoofing is in");
    t.deepEqual(
      await fw.reconcile({ full: true }),
      { setsRepaired: 0, chainsRepaired: 0, staleRemoved: 0 },
      'the chains read back as the backend wrote them',
    );

    // b goes: its rules and chains go, the rest stays.
    fw.removePort(vmPort(b, []).id);
    await fw.flush();
    const now = saved();
    t.false(now.includes(b.device), "no rule names b's device");
    t.false(now.includes(n.ingressChain(vmPort(b, []).id)), "b's chains are gone");
    t.true(aRule(n.portsChain)![1] >= before![1], "a's counter is still kept");
    t.true(topo.ping(a, c.ip4), 'a still reaches c');
    t.deepEqual(await fw.reconcile({ full: true }), { setsRepaired: 0, chainsRepaired: 0, staleRemoved: 0 });
  },
);

kernelTest('iptables › a dispatch rule changed behind our back: the edit falls back to a rewrite, and no port is refused', async (t) => {
  const h = await firewallHost(t, 'iptables');
  const { topo, fw } = h;
  const n = new KernelNames('sg');
  const [a, b, c] = [topo.addVm(1), topo.addVm(2), topo.addVm(3)];
  fw.setGroup(defaultGroup());
  for (const vm of [a, b, c]) fw.setPort(vmPort(vm, ['default']));
  fw.setGroupMembers('default', [a.ip4, b.ip4, c.ip4]);
  await fw.flush();
  // Someone deletes c's egress jump: removing c must delete it too, and that delete fails.
  const jump = [...counted(saved(), n.portsChain).keys()].find((r) => r.includes(`--physdev-in ${c.device} `))!;
  topo.host.exec('iptables', ['-D', n.portsChain, ...jump.split(' ')]);
  fw.removePort(vmPort(c, []).id);
  await fw.flush();
  t.deepEqual(fw.status().quarantined, [], 'nothing refused');
  t.false(saved().includes(c.device), "c's rules are gone");
  t.true(topo.ping(a, b.ip4) && topo.ping(b, a.ip4), 'a and b still reach each other');
  t.deepEqual(await fw.reconcile({ full: true }), { setsRepaired: 0, chainsRepaired: 0, staleRemoved: 0 });

  function saved(): string {
    return topo.host.exec('iptables-save', ['-c', '-t', 'filter']);
  }
});

kernelTest(
  'iptables › a dispatch rule deleted behind our back: the next binding rewrites the chain, its rules in their places',
  async (t) => {
    const h = await firewallHost(t, 'iptables');
    const { topo, fw } = h;
    const n = new KernelNames('sg');
    const [a, b, c, x] = [topo.addVm(1), topo.addVm(2), topo.addVm(3), topo.addVm(4)];
    fw.setGroup(defaultGroup());
    fw.setGroup({ id: 'other', rules: [{ id: 'e4', direction: 'egress', ethertype: 'IPv4' }] });
    for (const vm of [a, b]) fw.setPort(vmPort(vm, ['default']));
    fw.setPort(vmPort(x, ['other']));
    fw.setGroupMembers('default', [a.ip4, b.ip4, c.ip4]);
    await fw.flush();
    const rules = () =>
      topo.host
        .exec('iptables', ['-S', n.portsChain])
        .split('\n')
        .filter((l) => l.startsWith('-A '));
    // Someone deletes a's egress jump: every position after it moves up by one. An insertion at the
    // position the backend wrote would put c's ingress jump after the chain's final ACCEPT.
    const jump = rules().find((r) => r.includes(`--physdev-in ${a.device} `))!;
    topo.host.exec('iptables', ['-D', ...jump.split(' ').slice(1)]);
    fw.setPort(vmPort(c, ['default']));
    await fw.flush();
    const now = rules();
    const toC = now.findIndex((r) => r.includes(`--physdev-out ${c.device} `));
    t.true(toC >= 0 && toC < now.length - 1 && now.at(-1) === `-A ${n.portsChain} -j ACCEPT`, now.join('\n'));
    t.true(now.includes(jump), "a's jump is written again");
    t.false(topo.ping(x, c.ip4), 'traffic to c meets its ingress chain: x is no member');
    t.true(topo.ping(a, c.ip4), 'a member reaches c');
  },
);
