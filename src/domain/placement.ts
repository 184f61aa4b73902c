// Where a port is filtered. On its host, and while a live migration moves it, on the destination
// too: Nova plugs the destination's VIF and then moves the VM, and only once the VM runs there does
// it activate the destination's binding. A port filtered on its active binding's host alone would
// reach the destination's agent after its tap carried traffic.
//
// Each host is told of the port as its own (`host` is that host, no `migratingTo`): an agent needs no
// notion of a migration, and agents of any version take the messages.

import type { Port } from './model.js';

/** The hosts that filter the port: none for an unbound port, two during a live migration. */
export function portHosts(port: Pick<Port, 'host' | 'migratingTo'>): string[] {
  const hosts = port.host ? [port.host] : [];
  if (port.migratingTo && port.migratingTo !== port.host) hosts.push(port.migratingTo);
  return hosts;
}

/** The port as `host` is told of it. */
export function portAsSeenBy<P extends Port>(port: P, host: string): P {
  const { migratingTo: _to, ...rest } = port;
  return { ...rest, host } as P;
}
