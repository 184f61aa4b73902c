// Planning: the desired state and what the kernel holds (the applied view) → the change set of one
// apply. Pure. A structural plan looks only at the ports the work names (and the ports of the groups it
// names), so binding one port costs O(that port), not O(host); a membership plan touches only the sets
// of the groups whose members changed.
import { familyOf, type Family } from '../domain/address.js';
import { linkLocalFromMac } from '../domain/mac.js';
import type { Port, SecurityGroup } from '../domain/model.js';
import { familyOfEthertype, setKey, type AppliedView, type ChangeSet, type FilterRule, type PortFilter, type SetRef } from './dataplane.js';
import { dedupePairs } from './cuts.js';
import type { HostState, Work } from './state.js';

/** Sets that failed and wait for their retry: rules naming them are left out until they exist
 *  (fail-closed: such a rule admits nothing rather than blocking the port's whole filter). */
export interface Holds {
  failedSets: ReadonlySet<string>;
  /** Failed sets whose retry is due and that some port's rules still name. */
  retrySets: SetRef[];
}

/** What security-group logging asks of a port: the groups whose rules' accepted connections are
 *  logged, and whether its drops are. A group's log applies to every port of the group, or only to
 *  its target port (Neutron's `target_id`). */
export function portLogging(state: Partial<Pick<HostState, 'groupLogs'>>, port: Port): { acceptGroups: Set<string>; drop: boolean } {
  const acceptGroups = new Set<string>();
  let drop = false;
  for (const g of port.securityGroups) {
    for (const l of state.groupLogs?.(g)?.logs ?? []) {
      if (l.targetId !== null && l.targetId !== port.id) continue;
      if (l.event !== 'DROP') acceptGroups.add(g);
      if (l.event !== 'ACCEPT') drop = true;
    }
  }
  return { acceptGroups, drop };
}

/** A port's filter as the state wants it; with `logging` (the host logs), what its logs ask too. */
export function buildFilter(
  state: Pick<HostState, 'group'> & Partial<Pick<HostState, 'groupLogs'>>,
  port: Port,
  holds: Holds,
  logging = false,
): PortFilter {
  const groups = port.securityGroups.map((g) => state.group(g)).filter((g): g is SecurityGroup => !!g);
  const stateful = groups.length === 0 || groups.some((g) => g.stateful);
  const rules: FilterRule[] = [];
  const seen = new Map<string, FilterRule>();
  const sets = new Map<string, SetRef>();
  const logs = logging && port.portSecurityEnabled ? portLogging(state, port) : { acceptGroups: new Set<string>(), drop: false };
  if (port.portSecurityEnabled) {
    for (const g of groups) {
      const logged = logs.acceptGroups.has(g.id);
      for (const r of g.rules) {
        const { id, ...rule } = r;
        if (rule.remoteGroupId !== null) {
          const ref = { groupId: rule.remoteGroupId, family: familyOfEthertype(rule.ethertype) };
          // A rule naming a set that cannot be made admits nothing until it can (fail-closed).
          if (holds.failedSets.has(setKey(ref))) continue;
          sets.set(setKey(ref), ref);
        }
        const k = JSON.stringify(rule);
        const same = seen.get(k);
        if (same) {
          if (!same.ruleIds.includes(id)) same.ruleIds.push(id);
          if (logged) same.logged = true;
          continue;
        }
        const kept: FilterRule = logged ? { ...rule, ruleIds: [id], logged } : { ...rule, ruleIds: [id] };
        seen.set(k, kept);
        rules.push(kept);
      }
    }
  }
  const sources: { ip: string; mac: string }[] = [];
  for (const ip of port.fixedIps) sources.push({ ip, mac: port.mac });
  for (const p of port.allowedAddressPairs) sources.push({ ip: p.ipAddress, mac: p.macAddress ?? port.mac });
  // A port with no fixed IP may send from any address of its MAC, as Neutron's anti-spoofing has it
  // (an address the VM configures itself, on a network without subnets): else it could send nothing.
  if (port.fixedIps.length === 0) sources.push({ ip: '0.0.0.0/0', mac: port.mac }, { ip: '::/0', mac: port.mac });
  // Neighbour discovery leaves from the link-local address of each MAC the port may send from
  // (validated MACs are lower case: one spelling each).
  const macs = new Set([port.mac, ...port.allowedAddressPairs.map((p) => p.macAddress ?? port.mac)]);
  for (const mac of macs) sources.push({ ip: linkLocalFromMac(mac), mac });
  const log = logs.acceptGroups.size || logs.drop ? { log: { accept: logs.acceptGroups.size > 0, drop: logs.drop } } : {};
  const body = {
    portId: port.id,
    device: port.device,
    filtered: port.portSecurityEnabled,
    mac: port.mac,
    stateful,
    fixedIps: port.fixedIps,
    sources,
    rules,
    sets: [...sets.values()],
    ...log,
  };
  return { ...body, key: JSON.stringify(body) };
}

/** Members of a group in one family. */
export function familyMembers(ips: Iterable<string>, family: Family): string[] {
  const out: string[] = [];
  for (const ip of ips) if (familyOf(ip) === family) out.push(ip);
  return out;
}

/**
 * The structural plan: filters of the ports the work touches, sets they start or stop naming, and
 * membership work for every set. `refs` counts, per set key, the applied filters naming the set.
 */
export function planStructure(
  state: HostState,
  applied: AppliedView,
  refs: ReadonlyMap<string, number>,
  work: Work,
  holds: Holds,
  retryPorts: Iterable<string>,
  logging = false,
): ChangeSet {
  const affected = new Set<string>(work.ports);
  for (const g of work.groups) for (const id of state.portIdsIn(g)) affected.add(id);
  for (const id of retryPorts) affected.add(id);
  const upsert: PortFilter[] = [];
  const remove: { portId: string; device: string }[] = [];
  const refDelta = new Map<string, number>();
  const bump = (ref: SetRef, by: number) => refDelta.set(setKey(ref), (refDelta.get(setKey(ref)) ?? 0) + by);
  const refOf = new Map<string, SetRef>();
  for (const id of affected) {
    const port = state.port(id);
    const had = applied.filters.get(id);
    if (!port) {
      if (had) {
        remove.push({ portId: id, device: had.device });
        for (const s of had.sets) bump(s, -1);
      }
      continue;
    }
    const f = buildFilter(state, port, holds, logging);
    if (had?.key === f.key) continue;
    // A port that moved to another device: the old device's dispatch goes with the old filter.
    if (had && had.device !== f.device) remove.push({ portId: id, device: had.device });
    upsert.push(f);
    for (const s of had?.sets ?? []) bump(s, -1);
    for (const s of f.sets) {
      bump(s, +1);
      refOf.set(setKey(s), s);
    }
  }
  const fill: { groupId: string; family: Family; members: string[] }[] = [];
  const destroy: SetRef[] = [];
  const created = new Set<string>();
  // A set is made when a filter starts naming it, and goes when none does (sets whose last filter
  // failed to go in are swept here too).
  for (const [key, d] of refDelta) {
    if ((refs.get(key) ?? 0) + d > 0 && !applied.sets.has(key) && !holds.failedSets.has(key)) {
      const ref = refOf.get(key)!;
      fill.push({ ...ref, members: familyMembers(state.membersOf(ref.groupId), ref.family) });
      created.add(key);
    }
  }
  for (const [key, ref] of applied.sets) if ((refs.get(key) ?? 0) + (refDelta.get(key) ?? 0) <= 0) destroy.push(ref);
  // Failed sets due for a retry, while something still names them, are tried again, whole.
  for (const ref of holds.retrySets) {
    const key = setKey(ref);
    if (created.has(key) || applied.sets.has(key)) continue;
    fill.push({ ...ref, members: familyMembers(state.membersOf(ref.groupId), ref.family) });
    created.add(key);
  }
  const members = planMembers(state, applied, work, created, new Set(destroy.map(setKey)));
  return {
    sets: { fill: [...fill, ...members.fill], delta: members.delta, destroy },
    filters: { upsert, remove },
    cuts: dedupePairs(work.cuts),
  };
}

/** Membership work for sets that exist (or are being made whole in this plan, which covers it). */
export function planMembers(
  state: HostState,
  applied: AppliedView,
  work: Pick<Work, 'deltas' | 'resync'>,
  skip: ReadonlySet<string> = new Set(),
  gone: ReadonlySet<string> = new Set(),
): Pick<ChangeSet['sets'], 'fill' | 'delta'> {
  const fill: ChangeSet['sets']['fill'] = [];
  const delta: ChangeSet['sets']['delta'] = [];
  for (const family of [4, 6] as const) {
    for (const groupId of work.resync) {
      const key = setKey({ groupId, family });
      if (skip.has(key) || gone.has(key) || !applied.sets.has(key)) continue;
      fill.push({ groupId, family, members: familyMembers(state.membersOf(groupId), family) });
    }
    for (const [groupId, d] of work.deltas) {
      const key = setKey({ groupId, family });
      if (skip.has(key) || gone.has(key) || !applied.sets.has(key)) continue;
      const add = familyMembers(d.add, family);
      const del = familyMembers(d.del, family);
      if (add.length === 0 && del.length === 0) continue;
      delta.push({ groupId, family, add, del, members: () => familyMembers(state.membersOf(groupId), family) });
    }
  }
  return { fill, delta };
}
