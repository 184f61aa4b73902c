// Which groups this host needs: the rules of every group its ports are in, and the members of every
// group those rules name as remote group. The agent binds one routing key per needed group and
// unbinds it when the need ends — never per port.
import type { Port } from '../domain/model.js';

export interface Needs {
  rules: Set<string>;
  members: Set<string>;
  /** rules ∪ members: the group keys to be bound. */
  all: Set<string>;
}

export function computeNeeds(
  ports: Iterable<Pick<Port, 'securityGroups'>>,
  groups: ReadonlyMap<string, { rules: readonly { remoteGroupId?: string | null }[] }>,
): Needs {
  const rules = new Set<string>();
  for (const p of ports) for (const g of p.securityGroups) rules.add(g);
  const members = new Set<string>();
  for (const g of rules) for (const r of groups.get(g)?.rules ?? []) if (r.remoteGroupId) members.add(r.remoteGroupId);
  return { rules, members, all: new Set([...rules, ...members]) };
}
