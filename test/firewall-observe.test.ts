// What the firewall can tell about itself, with real packets on both backends: the packets and
// bytes each rule of a port counted, a live trace naming the rule that decided, and explain giving
// the same answer from the desired state alone.
import type { PacketInfo } from '../src/addon/nftables.js';
import { NftNames } from '../src/firewall/nftables/names.js';
import { PortTrace, type TraceStep } from '../src/firewall/trace.js';
import { NFT } from './helpers/backends.js';
import { firewallHost, onBothBackends, vmPort, egressAll } from './helpers/firewall.js';
import { rng } from './helpers/seeded.js';
import type { Vm } from './helpers/topology.js';
import { waitFor } from './helpers/wait.js';

onBothBackends('each rule of a port counts the packets it admitted, and the default drop those it dropped', async (t, backend) => {
  const { topo, fw } = await firewallHost(t, backend);
  const [a, b] = [topo.addVm(1), topo.addVm(2)];
  fw.setGroup({ id: 'web', rules: [{ id: 'web-ping', direction: 'ingress', ethertype: 'IPv4', protocol: 'icmp' }, ...egressAll] });
  fw.setGroup({ id: 'client', rules: egressAll });
  fw.setPort(vmPort(a, ['client']));
  fw.setPort(vmPort(b, ['web']));
  topo.serve(b, 7001);
  await fw.flush();
  t.true(fw.portInKernel('port-vm2'));
  const before = await fw.counters(['port-vm2']);
  t.is(before.length, 1);
  t.is(before[0]!.rules.find((r) => r.ruleId === 'web-ping')?.packets, 0, 'nothing counted yet');
  for (let i = 0; i < 3; i++) t.true(topo.ping(a, b.ip4), `ping ${i}`);
  for (let i = 0; i < 2; i++) t.false(topo.udp(a, b.ip4, 7001), `udp probe ${i} is dropped`);
  const [c] = await fw.counters(['port-vm2']);
  const ping = c!.rules.find((r) => r.ruleId === 'web-ping');
  t.like(ping, { chain: 'ingress', packets: 3 }, 'each echo request is a new connection: the rule admitted 3 packets');
  t.true(ping!.bytes >= 3 * 84, `bytes counted too (${ping!.bytes})`);
  const drop = c!.fixed.find((f) => f.name === 'default drop' && f.chain === 'ingress');
  t.true((drop?.packets ?? 0) >= 2, `the ingress default drop counted the probes (${drop?.packets})`);
  const egress = c!.rules.find((r) => r.ruleId === 'e4');
  t.like(egress, { chain: 'egress', packets: 0 }, 'the port itself started nothing (replies are established)');
  const other = await fw.counters(['port-vm1']);
  t.true(other[0]!.rules.find((r) => r.ruleId === 'e4')!.packets >= 5, "the client's egress rule counted what it sent");
});

/** Whether a step can decide a packet: one in the port's chains whose rule is known, other than the
 *  jump to the anti-spoof check and that check's return (a security-group rule's return, a fixed
 *  rule's drop, the conntrack state, or the jump to the default drop). */
function deciding(s: TraceStep): boolean {
  if (!s.portChain || !s.rule || s.kind !== 'rule') return false;
  return !('fixed' in s.rule) || (s.rule.fixed !== 'anti-spoofing' && s.rule.fixed !== 'anti-spoofing: own source');
}

/** Trace steps as they come, and a wait for the first deciding step of a packet that fits. */
function collector() {
  let steps: TraceStep[] = [];
  return {
    onStep: (s: TraceStep) => steps.push(s),
    decided: (what: string, fits: (p: PacketInfo) => boolean) =>
      waitFor(
        `the trace of ${what}`,
        () => steps.find((s) => s.packetInfo && fits(s.packetInfo) && deciding(s)),
        20_000,
        () => JSON.stringify(steps.slice(-12), null, 1).slice(0, 4000),
      ),
    clear: () => (steps = []),
  };
}

/** A connection's first packet: SYN alone. */
const SYN = 0x02;
const verdictOf = (s: TraceStep) => (s.verdict === 'return' ? 'accept' : 'drop');

onBothBackends(
  'trace names the rule that admitted a packet, the fixed rule or default drop that dropped others, and explain agrees',
  async (t, backend) => {
    const { topo, fw } = await firewallHost(t, backend);
    const [a, b, x] = [topo.addVm(1), topo.addVm(2), topo.addVm(3)];
    fw.setGroup({
      id: 'web',
      rules: [
        {
          id: 'web-tcp',
          direction: 'ingress',
          ethertype: 'IPv4',
          protocol: 'tcp',
          portRangeMin: 7000,
          portRangeMax: 7000,
          remoteGroupId: 'client',
        },
        {
          id: 'web-dns',
          direction: 'ingress',
          ethertype: 'IPv4',
          protocol: 'udp',
          portRangeMin: 53,
          portRangeMax: 53,
          remoteIpPrefix: '10.100.0.0/30',
        },
        { id: 'web-ping', direction: 'ingress', ethertype: 'IPv4', protocol: 'icmp' },
        ...egressAll,
      ],
    });
    fw.setGroup({ id: 'client', rules: egressAll });
    fw.setPort(vmPort(a, ['client']));
    fw.setPort(vmPort(b, ['web']));
    fw.setPort(vmPort(x, ['client']));
    fw.setGroupMembers('client', [a.ip4]);
    topo.serve(b, 7000);
    topo.serve(b, 53);
    await fw.flush();
    t.true(fw.portInKernel('port-vm2') && fw.portInKernel('port-vm1'));
    const target = async (port: string, vm: Vm) => ({
      netns: topo.host.path,
      prefix: 'sg',
      mode: 'bridged' as const,
      portId: port,
      device: vm.device,
      map: (await fw.portRules(port))!,
    });

    // Into b: what its rules admit and what they drop.
    const c = collector();
    const ingress = await PortTrace.start(await target('port-vm2', b), { direction: 'ingress', dst: b.ip4 }, c.onStep);
    try {
      t.true(topo.tcp(a, b.ip4, 7000), 'a member of client reaches tcp 7000');
      const admitted = await c.decided('tcp 7000 from a', (p) => p.dport === 7000 && p.src === a.ip4 && p.tcpFlags === SYN);
      t.like(admitted, { portChain: 'ingress', rule: { rule: ['web-tcp'] }, verdict: 'return' });
      t.false(topo.udp(a, b.ip4, 7000), 'udp 7000 is not admitted');
      const dropped = await c.decided('udp 7000 from a', (p) => p.proto === 17 && p.dport === 7000);
      t.like(dropped, { portChain: 'ingress', rule: { fixed: 'default drop' } });

      // Random cases: explain, from the desired state alone, names what the kernel's trace names.
      const random = rng(0x5eed + (backend === 'nftables' ? 1 : 0));
      const kinds = [
        { what: 'tcp 7000', send: (v: Vm) => topo.tcp(v, b.ip4, 7000), proto: 6, dport: 7000 },
        { what: 'tcp 22', send: (v: Vm) => topo.tcp(v, b.ip4, 22), proto: 6, dport: 22 },
        { what: 'udp 53', send: (v: Vm) => topo.udp(v, b.ip4, 53), proto: 17, dport: 53 },
        { what: 'udp 7001', send: (v: Vm) => topo.udp(v, b.ip4, 7001), proto: 17, dport: 7001 },
        { what: 'ping', send: (v: Vm) => topo.ping(v, b.ip4), proto: 1, icmpType: 8 },
      ];
      for (let i = 0; i < 6; i++) {
        const kind = kinds[Math.floor(random() * kinds.length)]!;
        const from = random() < 0.5 ? a : x;
        c.clear();
        kind.send(from);
        const traced = await c.decided(
          `${kind.what} from ${from.name}`,
          (p) =>
            p.src === from.ip4 &&
            p.proto === kind.proto &&
            (kind.dport === undefined || p.dport === kind.dport) &&
            (p.proto !== 6 || p.tcpFlags === SYN),
        );
        const explained = fw.explain('port-vm2', {
          direction: 'ingress',
          src: from.ip4,
          dst: b.ip4,
          proto: kind.proto,
          ...(kind.dport ? { dport: kind.dport } : { icmpType: kind.icmpType! }),
        });
        t.true(explained !== undefined && explained !== 'unfiltered');
        if (explained === undefined || explained === 'unfiltered') return;
        t.deepEqual(explained.decidedBy.rule, traced.rule, `${kind.what} from ${from.name}: explain and trace name the same rule`);
        t.is(explained.verdict, verdictOf(traced), `${kind.what} from ${from.name}: and the same verdict`);
      }
    } finally {
      await ingress.stop();
    }

    // From a: a spoofed source, and a DHCP server's reply, each dropped by its fixed rule.
    const e = collector();
    topo.addAddress(a, '10.100.0.99/24');
    const egress = await PortTrace.start(await target('port-vm1', a), { direction: 'egress', dst: b.ip4 }, e.onStep);
    try {
      t.false(topo.tcp(a, b.ip4, 7000, '10.100.0.99'), 'a spoofed source is dropped');
      const spoofed = await e.decided('the spoofed packet', (p) => p.src === '10.100.0.99');
      t.like(spoofed, { portChain: 'anti-spoofing', rule: { fixed: 'anti-spoofing: drop' }, verdict: 'drop' });
      t.deepEqual(fw.explain('port-vm1', { direction: 'egress', src: '10.100.0.99', dst: b.ip4, proto: 6, dport: 7000 }), {
        verdict: 'drop',
        decidedBy: { chain: 'anti-spoofing', rule: { fixed: 'anti-spoofing: drop' }, verdict: 'drop' },
        steps: [
          { chain: 'egress', rule: { fixed: 'anti-spoofing' }, verdict: 'jump' },
          { chain: 'anti-spoofing', rule: { fixed: 'anti-spoofing: drop' }, verdict: 'drop' },
        ],
      });
      t.false(topo.udp(a, b.ip4, 68, 67), 'a VM answering as a DHCP server is dropped');
      const dhcp = await e.decided('the DHCP server reply', (p) => p.sport === 67 && p.dport === 68);
      t.like(dhcp, { portChain: 'egress', rule: { fixed: 'DHCP guard' }, verdict: 'drop' });
    } finally {
      await egress.stop();
    }
    t.false(
      topo.host.run(NFT, ['list', 'tables']).stdout.includes(new NftNames('sg').traceTable),
      'the tracing table is gone with the trace',
    );
  },
);
