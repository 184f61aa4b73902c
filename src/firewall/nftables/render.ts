// Port filters as nf_tables rules, with the semantics of the iptables backend's rendering
// (../iptables/render.ts: Neutron's iptables + ipset driver), rule for rule. Pure. docs/firewall.md
// lists every rule and why.
//
// One inet chain covers both families: every family-specific rule starts with `meta nfproto`, so
// the IPv4 and IPv6 rules of a chain keep the order they have in iptables' two tables and never
// match each other's packets. A port's chains are reached through verdict maps (./backend.ts): in
// bridged mode by the port's mark, set from the bridge port in the bridge table; in routed mode by
// its device.
import { familyOf, isCatchAll } from '../../domain/address.js';
import { isIcmp, takesPorts } from '../../domain/protocols.js';
import type { FilterRule, Mode, PortFilter } from '../dataplane.js';
import type { Stmt } from './native.js';
import { INET, type NftNames } from './names.js';

export type Rules = Stmt[][];

/** The mark bits the backend owns: a port's id shifted into them; the others are kept. */
export const MARK_MASK = 0xffff0000;
export const MARK_SHIFT = 16;
export const MAX_MARK_ID = 0xffff;

export function markOf(id: number): number {
  return (id << MARK_SHIFT) >>> 0;
}

const RETURN: Stmt = { m: 'verdict', v: 'return' };
const DROP: Stmt = { m: 'verdict', v: 'drop' };
/** Stateful ports: established and related packets return, invalid ones are dropped — one rule,
 *  through the shared map of state bits to verdicts (a packet's state is one bit). */
const STATE: Rules = [[{ m: 'ctStateVmap', map: INET.ctState }]];
/** The map's elements: conntrack state bit → verdict. */
export const CT_STATE_VERDICTS: { key: number; verdict: 'return' | 'drop' }[] = [
  { key: 1 << 1, verdict: 'return' }, // established
  { key: 1 << 2, verdict: 'return' }, // related
  { key: 1, verdict: 'drop' }, // invalid
];

type V = 4 | 6;

function udp(v: V, sport: number, dport: number, verdict: Stmt): Stmt[] {
  return [{ m: 'nfproto', v }, { m: 'l4proto', v: 17 }, { m: 'port', dir: 'sport', min: sport, max: sport }, { m: 'port', dir: 'dport', min: dport, max: dport }, verdict];
}

function icmp6(type: number, verdict: Stmt): Stmt[] {
  return [{ m: 'nfproto', v: 6 }, { m: 'l4proto', v: 58 }, { m: 'icmp', type }, verdict];
}

/** ICMPv6 neighbour discovery, MLD and router advertisements reach the VM for IPv6 to work. */
export const ICMP6_TO_PORT = [130, 131, 132, 134, 135, 136, 143];
/** MLD reports a port sends from :: during duplicate address detection, before the anti-spoof check. */
export const ICMP6_DAD = [131, 143];
/** MLD reports, router and neighbour solicitations, from the port's own addresses. */
export const ICMP6_FROM_PORT = [131, 133, 135, 143];

function icmp6In(set: string, verdict: Stmt): Stmt[] {
  return [{ m: 'nfproto', v: 6 }, { m: 'l4proto', v: 58 }, { m: 'icmpIn', set }, verdict];
}

/** One security-group rule: remote prefix, protocol, remote group's set, then ports or ICMP type. */
export function sgRule(r: FilterRule, v: V, names: NftNames): Stmt[] {
  const dir = r.direction === 'ingress' ? 'saddr' : 'daddr';
  const out: Stmt[] = [{ m: 'nfproto', v }];
  if (r.remoteIpPrefix && !isCatchAll(r.remoteIpPrefix)) out.push({ m: 'addr', family: v, dir, cidr: r.remoteIpPrefix });
  const p = r.protocol;
  let tail: Stmt[] = [];
  if (p !== null) {
    if (isIcmp(p)) {
      out.push({ m: 'l4proto', v: v === 6 ? 58 : 1 });
      if (r.portRangeMin !== null) tail = [r.portRangeMax === null ? { m: 'icmp', type: r.portRangeMin } : { m: 'icmp', type: r.portRangeMin, code: r.portRangeMax }];
    } else {
      out.push({ m: 'l4proto', v: p });
      if (takesPorts(p) && r.portRangeMin !== null && r.portRangeMax !== null) tail = [{ m: 'port', dir: 'dport', min: r.portRangeMin, max: r.portRangeMax }];
    }
  }
  if (r.remoteGroupId) out.push({ m: 'addrIn', family: v, dir, set: names.groupSet(r.remoteGroupId, v) });
  out.push(...tail, RETURN);
  return out;
}

function appendRules(into: Rules, f: PortFilter, direction: 'ingress' | 'egress', v: V, names: NftNames, seen: Set<string>): void {
  const ethertype = v === 6 ? 'IPv6' : 'IPv4';
  for (const r of f.rules) {
    if (r.direction !== direction || r.ethertype !== ethertype) continue;
    const rule = sgRule(r, v, names);
    const k = JSON.stringify(rule);
    if (seen.has(k)) continue;
    seen.add(k);
    into.push(rule);
  }
}

/** Traffic to the port: state, DHCP replies and (IPv6) neighbour discovery, the ingress rules, drop. */
export function ingressRules(f: PortFilter, names: NftNames): Rules {
  const rules: Rules = f.stateful ? [...STATE] : [];
  const seen = new Set<string>();
  rules.push(udp(4, 67, 68, RETURN));
  appendRules(rules, f, 'ingress', 4, names, seen);
  rules.push(icmp6In(INET.icmp6ToPort, RETURN));
  rules.push(udp(6, 547, 546, RETURN));
  appendRules(rules, f, 'ingress', 6, names, seen);
  rules.push([DROP]);
  return rules;
}

/** Traffic from the port: DHCP discover and duplicate address detection, anti-spoofing, the DHCP,
 *  neighbour-advertisement and router guards, neighbour discovery, state, the egress rules, drop. */
export function egressRules(f: PortFilter, names: NftNames): Rules {
  const rules: Rules = [
    [{ m: 'nfproto', v: 4 }, { m: 'addr', family: 4, dir: 'saddr', cidr: '0.0.0.0/32' }, { m: 'addr', family: 4, dir: 'daddr', cidr: '255.255.255.255/32' }, { m: 'l4proto', v: 17 }, { m: 'port', dir: 'sport', min: 68, max: 68 }, { m: 'port', dir: 'dport', min: 67, max: 67 }, RETURN],
  ];
  // Before the anti-spoof check only duplicate address detection (from :: to a link-local group,
  // before the port may use any address), and that only for its own addresses.
  const dad: Stmt[] = [{ m: 'nfproto', v: 6 }, { m: 'addr', family: 6, dir: 'saddr', cidr: '::/128' }, { m: 'addr', family: 6, dir: 'daddr', cidr: 'ff02::/16' }, { m: 'l4proto', v: 58 }];
  rules.push([...dad, { m: 'icmpIn', set: INET.icmp6Dad }, RETURN]);
  rules.push(...ownTargets(f, [...dad, { m: 'icmp', type: 135 }]));
  rules.push([{ m: 'verdict', v: { jump: names.spoofChain(f.portId) } }]);
  rules.push(udp(4, 68, 67, RETURN), udp(4, 67, 68, DROP));
  // Neighbour advertisements only for the port's own addresses (its IPv6 ARP protection).
  rules.push(...ownTargets(f, [{ m: 'nfproto', v: 6 }, { m: 'l4proto', v: 58 }, { m: 'icmp', type: 136 }]));
  rules.push(icmp6(136, DROP), icmp6(134, DROP));
  rules.push(icmp6In(INET.icmp6FromPort, RETURN), udp(6, 546, 547, RETURN), udp(6, 547, 546, DROP));
  if (f.stateful) rules.push(...STATE);
  const seen = new Set<string>();
  appendRules(rules, f, 'egress', 4, names, seen);
  appendRules(rules, f, 'egress', 6, names, seen);
  rules.push([DROP]);
  return rules;
}

/** `match` (a neighbour solicitation or advertisement) returns when its target is one of the port's
 *  own IPv6 addresses or networks: one rule each (none to check for a `::/0` pair). */
function ownTargets(f: PortFilter, match: Stmt[]): Rules {
  const rules: Rules = [];
  const seen = new Set<string>();
  for (const { ip } of f.sources) {
    if (familyOf(ip) !== 6) continue;
    const rule: Stmt[] = [...match, ...(isCatchAll(ip) ? [] : [{ m: 'ndTarget', cidr: ip } as Stmt]), RETURN];
    const k = JSON.stringify(rule);
    if (!seen.has(k)) (seen.add(k), rules.push(rule));
  }
  return rules;
}

/** Only the port's own (address, MAC) pairs leave it. */
export function spoofRules(f: PortFilter): Rules {
  const rules: Rules = [];
  const seen = new Set<string>();
  for (const { ip, mac } of f.sources) {
    const v = familyOf(ip);
    const rule: Stmt[] = [{ m: 'nfproto', v }];
    if (!isCatchAll(ip)) rule.push({ m: 'addr', family: v, dir: 'saddr', cidr: ip });
    rule.push({ m: 'etherSaddr', mac: mac.toLowerCase() }, RETURN);
    const k = JSON.stringify(rule);
    if (!seen.has(k)) (seen.add(k), rules.push(rule));
  }
  rules.push([DROP]);
  return rules;
}

/** Bridge table, a frame from the port: the port's mark, then ARP only for its own IPv4 addresses
 *  and MACs (Neutron's ARP spoofing protection). */
export function fromDevRules(f: PortFilter, id: number): Rules {
  const rules: Rules = [[{ m: 'markSet', mask: MARK_MASK, id: markOf(id) }]];
  const seen = new Set<string>();
  for (const { ip, mac } of f.sources) {
    if (familyOf(ip) !== 4) continue;
    const rule: Stmt[] = [{ m: 'ethertype', v: 0x0806 }, isCatchAll(ip) ? { m: 'arpSender', mac: mac.toLowerCase() } : { m: 'arpSender', mac: mac.toLowerCase(), cidr: ip }, RETURN];
    const k = JSON.stringify(rule);
    if (!seen.has(k)) (seen.add(k), rules.push(rule));
  }
  rules.push([{ m: 'ethertype', v: 0x0806 }, DROP]);
  return rules;
}

/** Bridge table, a frame to the port: the port's mark. */
export function toDevRules(id: number): Rules {
  return [[{ m: 'markSet', mask: MARK_MASK, id: markOf(id) }]];
}

/** Every chain of a filtered port, by table family and name. */
export function portChains(f: PortFilter, names: NftNames, mode: Mode, id: number | undefined): { inet: Map<string, Rules>; bridge: Map<string, Rules> } {
  const inet = new Map<string, Rules>([
    [names.ingressChain(f.portId), ingressRules(f, names)],
    [names.egressChain(f.portId), egressRules(f, names)],
    [names.spoofChain(f.portId), spoofRules(f)],
  ]);
  const bridge = new Map<string, Rules>();
  if (mode === 'bridged' && id !== undefined) {
    bridge.set(names.fromDevChain(f.portId), fromDevRules(f, id));
    bridge.set(names.toDevChain(f.portId), toDevRules(id));
  }
  return { inet, bridge };
}

/** Addresses whose traffic is not tracked for a stateless port (those it may send from, as the
 *  iptables backend's raw table has them: no catch-all, no link-local). */
export function untrackedAddresses(f: PortFilter): { 4: string[]; 6: string[] } {
  const out: { 4: string[]; 6: string[] } = { 4: [], 6: [] };
  if (!f.filtered || f.stateful) return out;
  for (const { ip } of f.sources) {
    if (isCatchAll(ip) || ip.toLowerCase().startsWith('fe80:')) continue;
    const list = out[familyOf(ip)];
    if (!list.includes(ip)) list.push(ip);
  }
  return out;
}
