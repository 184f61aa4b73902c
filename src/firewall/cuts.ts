// Which connections a change stops admitting, and so must be cut: conntrack would otherwise keep an
// established connection alive after the rule, membership or port address that admitted it went
// (Neutron bug 1580377). Decided here, on the model alone; the dataplane deletes the entries.
//
// A connection is named by its two ends: a local port address (fixed IP or allowed-pair network) and a
// remote address or network. The kernel's table is cut by address pair, whatever the protocol, so a
// pair is cut only when no rule left on the port still admits what the removed one did (same
// direction and family, a protocol and ports at least as wide, and the remote covered): what stays
// admitted is left alone, what only the removed rule admitted is cut.
import type { Port, SecurityGroup, SecurityGroupRule } from '../domain/model.js';
import { contains, isCatchAll, parseCidr } from '../domain/address.js';
import { isIcmp } from '../domain/protocols.js';
import { portMemberAddresses } from '../domain/validate.js';
import type { StateView } from './state.js';

export interface AddressPair {
  /** The local end: an address or network of the port. */
  a: string;
  b: string;
  /** The port's device: with conntrack zones, the cut is in the zone of the bridge it is in. */
  device: string;
}

const ANY: Record<'IPv4' | 'IPv6', string> = { IPv4: '0.0.0.0/0', IPv6: '::/0' };

function v6(addr: string): boolean {
  return addr.includes(':');
}

/** Local ends of a port's connections: its fixed IPs and allowed-pair networks (catch-alls aside). */
function localAddresses(port: Port): string[] {
  return portMemberAddresses(port);
}

/** The rules a port is under once a group is replaced by `override` (or none at all). */
function rulesOf(
  view: StateView,
  port: Port,
  override?: { id: string; group: SecurityGroup | undefined },
  groups = port.securityGroups,
): SecurityGroupRule[] {
  const out: SecurityGroupRule[] = [];
  for (const gid of groups) {
    const g = override && override.id === gid ? override.group : view.group(gid);
    if (g) out.push(...g.rules);
  }
  return out;
}

function portsCover(q: SecurityGroupRule, r: SecurityGroupRule): boolean {
  if (q.portRangeMin === null) return true;
  if (r.portRangeMin === null) return false;
  if (isIcmp(q.protocol)) return q.portRangeMin === r.portRangeMin && (q.portRangeMax === null || q.portRangeMax === r.portRangeMax);
  return q.portRangeMin <= r.portRangeMin && (q.portRangeMax ?? q.portRangeMin) >= (r.portRangeMax ?? r.portRangeMin);
}

function remoteCovered(
  view: StateView,
  q: SecurityGroupRule,
  remote: string,
  membersOverride?: { id: string; ips: ReadonlySet<string> },
): boolean {
  if (q.remoteIpPrefix === null && q.remoteGroupId === null) return true;
  if (isCatchAll(remote)) return false;
  if (q.remoteIpPrefix !== null) return contains(parseCidr(q.remoteIpPrefix), parseCidr(remote));
  const ips = membersOverride && membersOverride.id === q.remoteGroupId ? membersOverride.ips : view.membersOf(q.remoteGroupId!);
  return ips.has(remote);
}

/** Whether some rule of `rules` admits what `r` admitted from or to `remote`. */
function stillAdmitted(
  view: StateView,
  rules: SecurityGroupRule[],
  r: SecurityGroupRule,
  remote: string,
  membersOverride?: { id: string; ips: ReadonlySet<string> },
): boolean {
  return rules.some(
    (q) =>
      q.direction === r.direction &&
      q.ethertype === r.ethertype &&
      (q.protocol === null || (q.protocol === r.protocol && portsCover(q, r))) &&
      remoteCovered(view, q, remote, membersOverride),
  );
}

function pairsFor(port: Port, r: SecurityGroupRule, remote: string): AddressPair[] {
  const six = r.ethertype === 'IPv6';
  return localAddresses(port)
    .filter((a) => v6(a) === six && v6(remote) === six)
    .map((a) => ({ a, b: remote, device: port.device }));
}

/** Addresses that left group `groupId` (its members are now `remaining`): cut them from the local
 *  ports whose rules named the group, where nothing else admits them. */
export function cutsForDepartedMembers(
  view: StateView,
  groupId: string,
  departed: string[],
  remaining: ReadonlySet<string>,
): AddressPair[] {
  if (departed.length === 0) return [];
  const out: AddressPair[] = [];
  const override = { id: groupId, ips: remaining };
  for (const port of view.allPorts()) {
    if (!port.portSecurityEnabled) continue;
    const rules = rulesOf(view, port);
    for (const r of rules) {
      if (r.remoteGroupId !== groupId) continue;
      for (const ip of departed) {
        if (isCatchAll(ip) || stillAdmitted(view, rules, r, ip, override)) continue;
        out.push(...pairsFor(port, r, ip));
      }
    }
  }
  return out;
}

/** Rules taken out of a group (changed or deleted): cut what they alone admitted on its ports. */
export function cutsForRemovedRules(view: StateView, old: SecurityGroup, next: SecurityGroup): AddressPair[] {
  const kept = new Set(next.rules.map(ruleKey));
  const removed = old.rules.filter((r) => !kept.has(ruleKey(r)));
  if (removed.length === 0) return [];
  const out: AddressPair[] = [];
  for (const portId of view.portIdsIn(old.id)) {
    const port = view.port(portId);
    if (!port?.portSecurityEnabled) continue;
    out.push(...cutRules(view, port, removed, rulesOf(view, port, { id: old.id, group: next })));
  }
  return out;
}

/** A port changed: addresses it no longer holds lose every connection (anti-spoofing), and the rules
 *  of groups it left lose what only they admitted. */
export function cutsForPortChange(view: StateView, old: Port, next: Port): AddressPair[] {
  const out: AddressPair[] = [];
  const nextAddrs = new Set(localAddresses(next));
  for (const a of localAddresses(old)) if (!nextAddrs.has(a)) out.push({ a, b: v6(a) ? ANY.IPv6 : ANY.IPv4, device: old.device });
  if (!old.portSecurityEnabled || !next.portSecurityEnabled) return out;
  const left = old.securityGroups.filter((g) => !next.securityGroups.includes(g));
  if (left.length === 0) return out;
  const removed = rulesOf(view, old, undefined, left);
  out.push(
    ...cutRules(
      view,
      {
        ...old,
        fixedIps: old.fixedIps.filter((a) => nextAddrs.has(a)),
        allowedAddressPairs: old.allowedAddressPairs.filter((p) => nextAddrs.has(p.ipAddress)),
      },
      removed,
      rulesOf(view, next),
    ),
  );
  return out;
}

function cutRules(view: StateView, port: Port, removed: SecurityGroupRule[], remainingRules: SecurityGroupRule[]): AddressPair[] {
  const out: AddressPair[] = [];
  for (const r of removed) {
    const remotes = r.remoteGroupId ? [...view.membersOf(r.remoteGroupId)] : [r.remoteIpPrefix ?? ANY[r.ethertype]];
    for (const remote of remotes) {
      if (stillAdmitted(view, remainingRules, r, remote)) continue;
      out.push(...pairsFor(port, r, remote));
    }
  }
  return out;
}

function ruleKey(r: SecurityGroupRule): string {
  return `${r.direction}|${r.ethertype}|${r.protocol}|${r.portRangeMin}|${r.portRangeMax}|${r.remoteIpPrefix}|${r.remoteGroupId}`;
}

/** Each pair once. */
export function dedupePairs(pairs: AddressPair[]): AddressPair[] {
  const seen = new Set<string>();
  return pairs.filter((p) => {
    const k = `${p.a}|${p.b}|${p.device}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
