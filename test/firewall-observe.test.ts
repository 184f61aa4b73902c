// What the firewall can tell about itself, with real packets on both backends: the packets and
// bytes each rule of a port counted.
import { firewallHost, onBothBackends, vmPort, egressAll } from './helpers/firewall.js';

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
  t.true(other[0]!.rules.find((r) => r.ruleId === 'e4')!.packets >= 5, 'the client\'s egress rule counted what it sent');
});
