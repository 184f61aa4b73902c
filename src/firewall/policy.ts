// The fixed policy of a port's chains, backend-neutral: what every filtered port's ingress and egress
// chains hold besides its security-group rules (DHCP client yes, server no; neighbour discovery and
// MLD; no router advertisements; duplicate address detection before the anti-spoof check and nothing
// else), where the anti-spoof check, conntrack state and the group rules sit, and what the anti-spoof
// and ARP checks admit. The one home of these rules: the iptables and nftables renderers only lower
// each entry into their own form (iptables/render.ts: restore lines, one table per family;
// nftables/render.ts: statements, both families in one chain). docs/firewall.md says why each rule
// is there. Pure.
import { contains, familyOf, formatCidr, isCatchAll, parseCidr, type Family } from '../domain/address.js';
import type { PortFilter } from './dataplane.js';

export type FixedVerdict = 'return' | 'drop';

/** What an operator reads for a fixed rule: the counters, `sg-agent trace` and `explain` name each
 *  fixed rule so. */
export type FixedName =
  | 'conntrack state'
  | 'DHCP'
  | 'DHCP guard'
  | 'DHCPv6'
  | 'DHCPv6 guard'
  | 'neighbour discovery'
  | 'duplicate address detection'
  | 'neighbour advertisement'
  | 'neighbour advertisement guard'
  | 'neighbour link-layer address guard'
  | 'router advertisement guard'
  | 'anti-spoofing'
  | 'anti-spoofing: own source'
  | 'anti-spoofing: drop'
  | 'default drop';

/** What a rule of a port's chains is, for the counters, trace and explain: one or more security-group
 *  rules (identical rules of several groups are one rule in the kernel), a fixed rule of this
 *  policy, or the logging of accepted connections or drops (security-group logging). */
export type RuleTag = { rule: string[] } | { fixed: FixedName } | { log: 'ACCEPT' | 'DROP' };

const RS = 133;
const NS = 135;
const NA = 136;
const RA = 134;
/** Neighbour discovery and MLD: what every port receives. */
const TO_PORT = [130, 131, 132, NS, NA, 143] as const;

/** ICMPv6 types matched together: a renderer that can may match each list as one set. */
export const ICMP6_LISTS = {
  toPort: TO_PORT,
  /** The same and router advertisements: what a port with an IPv6 fixed IP receives (Neutron: a
   *  port without one is not to configure IPv6 from a router). One list rather than a rule more: a
   *  rule costs every later binding on the host (the kernel validates the whole table). */
  toPortWithRa: [...TO_PORT, RA],
  /** MLD reports a port sends from :: during duplicate address detection. */
  dad: [131, 143],
  /** MLD reports and done, router and neighbour solicitations: what a port sends from its own
   *  addresses (Neutron's iptables driver admits every ICMPv6 type but router advertisements, its
   *  OVS driver solicitations and MLD: the stricter is followed, docs/firewall.md; leaving a
   *  multicast group must not need a rule any more than joining one). */
  fromPort: [131, 132, RS, NS, 143],
} as const;
export type Icmp6List = keyof typeof ICMP6_LISTS;

/** What a fixed rule matches; every field given must match. */
export interface Match {
  family: Family;
  /** Source and destination networks, canonical. */
  src?: string;
  dst?: string;
  udp?: { sport: number; dport: number };
  /** One ICMPv6 type, or a named list of them. */
  icmp6?: number | Icmp6List;
  /** The target address of a neighbour solicitation or advertisement lies in this network. */
  ndTarget?: string;
  /** The message (of `icmp6`, one of ND_LINK_LAYER's types) carries options other than none or one
   *  link-layer address option naming one of these MACs. */
  ndLinkLayerOtherThan?: string[];
}

/** Neighbour discovery messages that tell their receivers at which MAC the sender (a solicitation)
 *  or the target (an advertisement) is, by a link-layer address option: for each ICMPv6 type, where
 *  its options start (the message's fixed part, RFC 4861 4.1–4.4) and the option's type. A message
 *  of its fixed part alone carries no option; one of exactly eight bytes more, one option. */
export const ND_LINK_LAYER: ReadonlyMap<number, { at: number; option: number }> = new Map([
  [RS, { at: 8, option: 1 }],
  [NS, { at: 24, option: 1 }],
  [NA, { at: 24, option: 2 }],
]);

/** Where the options of a neighbour discovery message of `icmp6` start, and its link-layer address
 *  option's type; throws for a type that has none (a policy entry naming it is a bug). */
export function ndLinkLayerOf(icmp6: Match['icmp6']): { at: number; option: number } {
  const nd = typeof icmp6 === 'number' ? ND_LINK_LAYER.get(icmp6) : undefined;
  if (!nd) throw new Error(`no link-layer address option in ICMPv6 type ${String(icmp6)}`);
  return nd;
}

/** One entry of a port chain, in order. Entries without a family apply to both. */
export type Entry =
  | { match: Match; verdict: FixedVerdict; name: FixedName }
  /** Stateful ports only: replies return, invalid packets are dropped. */
  | { state: true }
  /** The port's anti-spoof chain: what returns from it was sent from one of the port's own pairs. */
  | { spoofCheck: true }
  /** The port's security-group rules of this family and the chain's direction. */
  | { groupRules: Family }
  /** Deny by default. */
  | { deny: true };

const STATE: Entry[] = [{ state: true }];

function udp(family: Family, sport: number, dport: number, verdict: FixedVerdict, name: FixedName): Entry {
  return { match: { family, udp: { sport, dport } }, verdict, name };
}

function icmp6(type: number | Icmp6List, verdict: FixedVerdict, name: FixedName, extra: Omit<Match, 'family' | 'icmp6'> = {}): Entry {
  return { match: { family: 6, ...extra, icmp6: type }, verdict, name };
}

/** The port's own IPv6 addresses and networks (fixed IPs, allowed pairs, the link-local address of
 *  each of its MACs), each once; undefined for a `::/0` pair: any address. */
function ownTargets(f: PortFilter): (string | undefined)[] {
  const out = new Set<string | undefined>();
  for (const { ip } of f.sources) if (familyOf(ip) === 6) out.add(isCatchAll(ip) ? undefined : ip);
  return [...out];
}

/** Where a DHCP server's replies to the port may go, as Neutron has it (so that a lease never
 *  gives an address Neutron did not): its fixed IPs of the family, and broadcast (IPv4) or the
 *  link-local network (IPv6, where a client asks from its link-local address). An allowed pair is
 *  not a lease. */
function dhcpReplyTargets(f: PortFilter, family: Family): string[] {
  const own = f.fixedIps.filter((ip) => familyOf(ip) === family);
  return family === 4 ? [...own, '255.255.255.255/32'] : [...own, 'fe80::/64'];
}

/** Traffic to the port: state, DHCP replies to its own addresses, neighbour discovery, MLD, router
 *  advertisements if it has an IPv6 fixed IP, the ingress rules, deny. */
export function ingressPolicy(f: PortFilter): Entry[] {
  const dhcp = (family: Family, sport: number, dport: number, name: FixedName): Entry[] =>
    dhcpReplyTargets(f, family).map((dst) => ({ match: { family, dst, udp: { sport, dport } }, verdict: 'return', name }));
  const takesRa = f.fixedIps.some((ip) => familyOf(ip) === 6);
  return [
    ...(f.stateful ? STATE : []),
    ...dhcp(4, 67, 68, 'DHCP'),
    { groupRules: 4 },
    icmp6(takesRa ? 'toPortWithRa' : 'toPort', 'return', 'neighbour discovery'),
    ...dhcp(6, 547, 546, 'DHCPv6'),
    { groupRules: 6 },
    { deny: true },
  ];
}

/** Traffic from the port. Before the anti-spoof check only what a port sends before it may use an
 *  address: DHCP discover, and duplicate address detection (from :: to a link-local group) of its
 *  own addresses. After it: DHCP client but no server; solicitations and advertisements that name no
 *  MAC but the port's own (the anti-spoof check vouches for the frame's source MAC, not for the one
 *  the message tells its receivers to use); neighbour advertisements only for its own addresses (the
 *  IPv6 twin of ARP protection); no router advertisements; solicitations and MLD; state; the egress
 *  rules; deny. */
export function egressPolicy(f: PortFilter): Entry[] {
  const own = ownTargets(f);
  const macs = sourceMacs(f);
  const dad = { src: '::/128', dst: 'ff02::/16' };
  return [
    { match: { family: 4, src: '0.0.0.0/32', dst: '255.255.255.255/32', udp: { sport: 68, dport: 67 } }, verdict: 'return', name: 'DHCP' },
    icmp6('dad', 'return', 'duplicate address detection', dad),
    ...own.map((t) => icmp6(NS, 'return', 'duplicate address detection', t === undefined ? dad : { ...dad, ndTarget: t })),
    { spoofCheck: true },
    udp(4, 68, 67, 'return', 'DHCP'),
    udp(4, 67, 68, 'drop', 'DHCP guard'),
    ...[...ND_LINK_LAYER.keys()].map((type) => icmp6(type, 'drop', 'neighbour link-layer address guard', { ndLinkLayerOtherThan: macs })),
    ...own.map((t) => icmp6(NA, 'return', 'neighbour advertisement', t === undefined ? {} : { ndTarget: t })),
    icmp6(NA, 'drop', 'neighbour advertisement guard'),
    icmp6(RA, 'drop', 'router advertisement guard'),
    icmp6('fromPort', 'return', 'neighbour discovery'),
    udp(6, 546, 547, 'return', 'DHCPv6'),
    udp(6, 547, 546, 'drop', 'DHCPv6 guard'),
    ...(f.stateful ? STATE : []),
    { groupRules: 4 },
    { groupRules: 6 },
    { deny: true },
  ];
}

/** The anti-spoof chain returns these (source, MAC) pairs, each once, and drops the rest: the port's
 *  fixed IPs and allowed pairs (a catch-all pair: no source, any address from that MAC) and the
 *  link-local address of each MAC. */
export function spoofSources(f: PortFilter): { family: Family; src?: string; mac: string }[] {
  const out = new Map<string, { family: Family; src?: string; mac: string }>();
  for (const { ip, mac } of f.sources) {
    const s = isCatchAll(ip) ? { family: familyOf(ip), mac } : { family: familyOf(ip), src: ip, mac };
    out.set(`${s.family} ${s.src ?? ''} ${mac}`, s);
  }
  return [...out.values()];
}

/** Frames with a VLAN tag of these types (802.1Q; 802.1ad, outside one) neither leave nor reach a
 *  filtered port, on either backend: a bridge hands the IP inside a tagged frame to no iptables or
 *  inet hook (bridge-nf-filter-vlan-tagged is off by default), so it would pass every rule, anti-
 *  spoofing included, and a VM's kernel takes a frame tagged with VLAN 0 as untagged. A port is an
 *  access port, as in Neutron (its OVS port drops tagged frames). */
export const VLAN_TAG_TYPES: readonly number[] = [0x8100, 0x88a8];

/** The source MACs a port's frames may carry: its own and its allowed pairs'. A frame from another is
 *  dropped before the bridge learns from it (bridged mode, both backends), or a VM could take a
 *  neighbour's MAC and be sent the neighbour's traffic (Neutron's OVS agent drops it in br-int). */
export function sourceMacs(f: PortFilter): string[] {
  return [...new Set([f.mac, ...f.sources.map(({ mac }) => mac)].map((m) => m.toLowerCase()))];
}

/** ARP from the port is returned for these (sender MAC, sender IPv4 network) pairs, each once, and
 *  dropped otherwise (a catch-all pair: no network, any sender address from that MAC). */
export function arpSenders(f: PortFilter): { mac: string; src?: string }[] {
  return spoofSources(f)
    .filter((s) => s.family === 4)
    .map(({ mac, src }) => (src === undefined ? { mac } : { mac, src }));
}

/** Whether the port's traffic is not tracked: it is filtered and its groups are all stateless (an
 *  unfiltered port's traffic is tracked, as the host's). */
export function isUntracked(f: PortFilter): boolean {
  return f.filtered && !f.stateful;
}

/** Addresses whose traffic is not tracked for a stateless port: those it may send from, without a
 *  catch-all or a link-local address. Never to an address of the host itself, on either backend:
 *  an allowed pair may be any network (`10.0.0.0/8`, the host's own address), and the host's own
 *  connections, and what it NATs, must stay tracked whatever a tenant writes. */
export function untrackedAddresses(f: PortFilter): Record<Family, string[]> {
  const out: Record<Family, string[]> = { 4: [], 6: [] };
  if (!isUntracked(f)) return out;
  for (const { ip } of f.sources) {
    if (isCatchAll(ip) || ip.toLowerCase().startsWith('fe80:')) continue;
    const list = out[familyOf(ip)];
    if (!list.includes(ip)) list.push(ip);
  }
  return out;
}

/** Routed mode, for a backend that cannot look the route up before conntrack (iptables): the
 *  addresses of the host's other ports that lie inside a stateless port's untracked addresses and
 *  are more specific than them. The host routes each to its own port's device, not the stateless
 *  port's, so its traffic stays tracked (the nftables backend asks the route: `fib daddr oifname`).
 *  Each once, canonical. */
export function trackedInsideUntracked(filters: Iterable<PortFilter>): Record<Family, string[]> {
  const all = [...filters];
  const untracked = all.flatMap((f) => [...untrackedAddresses(f)[4], ...untrackedAddresses(f)[6]]).map((ip) => parseCidr(ip));
  const out: Record<Family, Set<string>> = { 4: new Set(), 6: new Set() };
  if (untracked.length) {
    for (const f of all) {
      if (isUntracked(f)) continue;
      for (const { ip } of f.sources) {
        if (isCatchAll(ip)) continue;
        const own = parseCidr(ip);
        if (untracked.some((u) => u.prefix < own.prefix && contains(u, own))) out[own.family].add(formatCidr(own));
      }
    }
  }
  return { 4: [...out[4]], 6: [...out[6]] };
}

/** The tag of an entry that is one fixed rule (not of the group rules, which are tagged by rule). */
export function fixedTag(e: Exclude<Entry, { groupRules: Family }>): RuleTag {
  if ('match' in e) return { fixed: e.name };
  if ('state' in e) return { fixed: 'conntrack state' };
  if ('spoofCheck' in e) return { fixed: 'anti-spoofing' };
  return { fixed: 'default drop' };
}

/** The entries of one family, for a renderer that writes each family apart. */
export function ofFamily(entries: Entry[], family: Family): Entry[] {
  return entries.filter((e) => ('match' in e ? e.match.family === family : 'groupRules' in e ? e.groupRules === family : true));
}
