// What the packet tests of the firewall stand on, written once: a bridged host with an engine on
// either backend and an oracle reading what it put in the kernel, the same test declared for both
// backends, a port for a VM, the groups most tests use, and the common three-VM scene (two members
// of the default group and a stranger).
import type { ExecutionContext } from 'ava';
import type { FirewallEngine } from '../../src/firewall/engine.js';
import type { PortInput, SecurityGroupInput, SecurityGroupRuleInput } from '../../src/domain/model.js';
import { BACKENDS, openEngine, Oracle, type Backend, type EngineOptions } from './backends.js';
import { kernelTest } from './gate.js';
import { Topology, type Vm } from './topology.js';

/** A bridged host namespace, its engine and the oracle reading its kernel; torn down with the test. */
export interface FirewallHost {
  topo: Topology;
  fw: FirewallEngine;
  k: Oracle;
}

export async function firewallHost(t: ExecutionContext, backend: Backend, opts: EngineOptions = {}): Promise<FirewallHost> {
  const topo = new Topology();
  const fw = await openEngine(backend, topo.host, { coalesceMs: 5, ...opts });
  t.teardown(async () => {
    await fw.close();
    topo.destroy();
  });
  return { topo, fw, k: new Oracle(backend, topo.host) };
}

/** The same kernel test on both backends, titled `<backend> › <title>`. */
export function onBothBackends(title: string, body: (t: ExecutionContext, backend: Backend) => Promise<void>): void {
  for (const b of BACKENDS) kernelTest(`${b} › ${title}`, (t) => body(t, b));
}

/** The port of a VM (id `port-<vm name>`), with both its addresses. */
export function vmPort(vm: Vm, groups: string[], extra: Partial<PortInput> = {}): PortInput {
  return {
    id: `port-${vm.name}`,
    host: 'host-1',
    device: vm.device,
    mac: vm.mac,
    fixedIps: [vm.ip4, vm.ip6],
    securityGroups: groups,
    ...extra,
  };
}

export const egressAll: SecurityGroupRuleInput[] = [
  { id: 'e4', direction: 'egress', ethertype: 'IPv4' },
  { id: 'e6', direction: 'egress', ethertype: 'IPv6' },
];

/** Neutron's default group: ingress from members of itself, egress anywhere. */
export function defaultGroup(id = 'default'): SecurityGroupInput {
  return {
    id,
    stateful: true,
    rules: [
      { id: `${id}-i4`, direction: 'ingress', ethertype: 'IPv4', remoteGroupId: id },
      { id: `${id}-i6`, direction: 'ingress', ethertype: 'IPv6', remoteGroupId: id },
      ...egressAll,
    ],
  };
}

/** Egress anywhere, nothing in. */
export const egressOnly: SecurityGroupInput = { id: 'egress-only', stateful: true, rules: egressAll };

/** The common scene: VMs 1 and 2 (a, b) in the default group and members of it (their IPv4 address;
 *  IPv6 too with `ipv6`), VM 3 (x) only in egress-only; applied. */
export async function membersAndStranger(h: FirewallHost, o: { ipv6?: boolean } = {}): Promise<{ a: Vm; b: Vm; x: Vm }> {
  const { topo, fw } = h;
  const [a, b, x] = [topo.addVm(1), topo.addVm(2), topo.addVm(3)];
  fw.setGroup(defaultGroup());
  fw.setGroup(egressOnly);
  fw.setPort(vmPort(a, ['default']));
  fw.setPort(vmPort(b, ['default']));
  fw.setPort(vmPort(x, ['egress-only']));
  fw.setGroupMembers('default', o.ipv6 ? [a.ip4, a.ip6, b.ip4, b.ip6] : [a.ip4, b.ip4]);
  await fw.flush();
  return { a, b, x };
}
