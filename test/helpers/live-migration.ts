// A live migration of a VM between two compute hosts of test/helpers/openstack-env.ts, in Nova's order
// (multiple port bindings), for the tests and bench/openstack.ts alike.
import type { ComputeHost, OsVm, PortSpec } from './compute-host.js';
import type { OpenStackEnv } from './openstack-env.js';

export interface LiveMigrationHooks {
  /** The destination's VIF is plugged and its binding is inactive: the VM has not moved yet. */
  beforeMove?: () => Promise<void>;
  /** The VM runs on the destination (announced by a gratuitous ARP); its binding is not yet moved. */
  arrived?: () => Promise<void>;
}

/** Up to the move: the destination's binding (inactive), `migrating_to`, its VIF plugged and wired. */
async function prepareLiveMigration(env: OpenStackEnv, port: PortSpec, vm: OsVm, to: ComputeHost): Promise<void> {
  // The conductor: an inactive binding on the destination.
  await env.asNova('POST', `ports/${port.id}/bindings`, { binding: { host: to.name } });
  // pre_live_migration on the destination: `migrating_to` in the active binding's profile (so the
  // destination's OVS agent wires the port before the VM arrives), then os-vif plugs its VIF there.
  await env.asNova('PUT', `ports/${port.id}`, { port: { 'binding:profile': { migrating_to: to.name } } });
  to.prepare(port, vm.instance);
  // Nova starts moving the VM once Neutron says the destination's VIF is plugged (wired by its agent).
  await to.wired(port.id);
}

export async function liveMigrate(
  env: OpenStackEnv,
  port: PortSpec,
  vm: OsVm,
  from: ComputeHost,
  to: ComputeHost,
  hooks: LiveMigrationHooks = {},
): Promise<void> {
  await prepareLiveMigration(env, port, vm, to);
  await hooks.beforeMove?.();
  // The VM moves: gone from the source, running on the destination (QEMU announces it with a
  // gratuitous ARP). Its namespace, sockets and all, goes with it.
  from.detach(port.id);
  to.attach(port, vm.instance, vm);
  vm.ns.run('arping', ['-c', '1', '-U', '-I', 'eth0', vm.ip4]);
  await hooks.arrived?.();
  // post_live_migration on the source: the destination's binding activated, the VIF unplugged, the
  // source's binding deleted; then on the destination the profile's `migrating_to` cleared.
  await env.asNova('PUT', `ports/${port.id}/bindings/${to.name}/activate`);
  from.release(port, { keepVm: true });
  await env.asNova('DELETE', `ports/${port.id}/bindings/${from.name}`);
  await env.asNova('PUT', `ports/${port.id}`, { port: { 'binding:profile': {} } });
}

/** A live migration that fails before the VM moves, and Nova's rollback of it: the destination's VIF
 *  unplugged, its binding deleted, `migrating_to` cleared. `prepared` runs before the rollback. */
export async function abortedLiveMigration(
  env: OpenStackEnv,
  port: PortSpec,
  vm: OsVm,
  to: ComputeHost,
  prepared?: () => Promise<void>,
): Promise<void> {
  await prepareLiveMigration(env, port, vm, to);
  await prepared?.();
  to.release(port);
  await env.asNova('DELETE', `ports/${port.id}/bindings/${to.name}`);
  await env.asNova('PUT', `ports/${port.id}`, { port: { 'binding:profile': {} } });
}
