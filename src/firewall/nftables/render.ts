// Port filters as nf_tables rules, with the semantics of the iptables backend's rendering
// (../iptables/render.ts: Neutron's iptables + ipset driver), rule for rule: the fixed policy of a
// port's chains (../policy.ts) lowered to statements, and the security-group rules. Pure.
// docs/firewall.md lists every rule and why.
//
// One inet chain covers both families: every family-specific rule starts with `meta nfproto`, so
// the IPv4 and IPv6 rules of a chain keep the order they have in iptables' two tables and never
// match each other's packets. A port's chains are reached through verdict maps (./backend.ts): in
// bridged mode by the port's mark, set from the bridge port in the bridge table; in routed mode by
// its device.
import { isCatchAll } from '../../domain/address.js';
import { isIcmp, takesPorts } from '../../domain/protocols.js';
import type { FilterRule, LogSettings, Mode, PortFilter } from '../dataplane.js';
import { arpSenders, egressPolicy, fixedTag, ingressPolicy, ndLinkLayerOf, sourceMacs, spoofSources, VLAN_TAG_TYPES } from '../policy.js';
import type { Entry, FixedVerdict, Icmp6List, Match, RuleTag } from '../policy.js';
import type { Stmt } from '../../addon/nftables.js';
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

/** Each list of ICMPv6 types of the policy is one shared set (the backend fills it): one rule
 *  instead of one per type. */
export const ICMP6_SETS: Record<Icmp6List, string> = {
  toPort: INET.icmp6ToPort,
  toPortWithRa: INET.icmp6ToPortWithRa,
  dad: INET.icmp6Dad,
  fromPort: INET.icmp6FromPort,
};

/** A fixed rule of the policy as rules of statements: one, or two for the check of a neighbour
 *  discovery message's link-layer address (nft has no "or": a message is dropped if it is neither its
 *  fixed part alone nor that and one option, or if its one option names another MAC). */
function fixedRules(m: Match, verdict: FixedVerdict): Stmt[][] {
  if (!m.ndLinkLayerOtherThan) return [fixedRule(m, verdict)];
  const { ndLinkLayerOtherThan: macs, ...rest } = m;
  const { at, option } = ndLinkLayerOf(m.icmp6);
  const head = fixedRule(rest, verdict);
  const verdictStmt = head.pop()!;
  return [
    [...head, { m: 'ip6Length', v: at, negate: true }, { m: 'ip6Length', v: at + 8, negate: true }, verdictStmt],
    [...head, { m: 'ndLinkLayerNot', at, option, macs }, verdictStmt],
  ];
}

/** A fixed rule of the policy as statements. */
function fixedRule(m: Match, verdict: FixedVerdict): Stmt[] {
  const out: Stmt[] = [{ m: 'nfproto', v: m.family }];
  if (m.src) out.push({ m: 'addr', family: m.family, dir: 'saddr', cidr: m.src });
  if (m.dst) out.push({ m: 'addr', family: m.family, dir: 'daddr', cidr: m.dst });
  if (m.udp) {
    const { sport, dport } = m.udp;
    out.push({ m: 'l4proto', v: 17 }, { m: 'port', dir: 'sport', min: sport, max: sport });
    out.push({ m: 'port', dir: 'dport', min: dport, max: dport });
  }
  if (m.icmp6 !== undefined) {
    out.push({ m: 'l4proto', v: 58 });
    out.push(typeof m.icmp6 === 'number' ? { m: 'icmp', type: m.icmp6 } : { m: 'icmpIn', set: ICMP6_SETS[m.icmp6] });
  }
  if (m.ndTarget) out.push({ m: 'ndTarget', cidr: m.ndTarget });
  out.push(verdict === 'return' ? RETURN : DROP);
  return out;
}

/** A port chain's rules and what each is, in step. */
export interface TaggedRules {
  rules: Rules;
  tags: RuleTag[];
}

const COUNTER: Stmt = { m: 'counter' };

/** A rule that ends in a verdict counts what reaches the verdict (the counters of `sg-agent status
 *  --counters` and the metrics): the counter goes just before it. */
function counted(stmts: Stmt[]): Stmt[] {
  const last = stmts.at(-1);
  return last?.m === 'verdict' ? [...stmts.slice(0, -1), COUNTER, last] : stmts;
}

/** A port chain from the policy's entries, both families in it: every family-specific rule starts
 *  with `meta nfproto`. */
function lower(f: PortFilter, entries: Entry[], direction: 'ingress' | 'egress', names: NftNames, log?: LogSettings): TaggedRules {
  const out: TaggedRules = { rules: [], tags: [] };
  const seen = new Map<string, number>();
  for (const e of entries) {
    if ('groupRules' in e) appendRules(out, f, direction, e.groupRules, names, seen, log);
    else if ('match' in e) for (const r of fixedRules(e.match, e.verdict)) push(out, r, fixedTag(e));
    else if ('state' in e) for (const r of STATE) push(out, r, fixedTag(e));
    else if ('spoofCheck' in e) push(out, [{ m: 'verdict', v: { jump: names.spoofChain(f.portId) } }], fixedTag(e));
    else {
      // What the port's filter drops is logged first (rate-limited), then dropped.
      if (log && f.log?.drop) push(out, logStmts(log, names.logPrefix(f.portId, 'DROP')), { log: 'DROP' });
      push(out, [DROP], fixedTag(e));
    }
  }
  return out;
}

/** The logging of a rule: the kernel's rate limit of this rule, then the packet to the log group.
 *  No verdict: the packet goes on to the rule that decides. */
function logStmts(log: LogSettings, prefix: string): Stmt[] {
  return [
    { m: 'limit', rate: log.rateLimit, burst: log.burstLimit },
    { m: 'log', group: log.group, prefix },
  ];
}

function push(into: TaggedRules, stmts: Stmt[], tag: RuleTag): void {
  into.rules.push(counted(stmts));
  into.tags.push(tag);
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
      if (r.portRangeMin !== null)
        tail = [r.portRangeMax === null ? { m: 'icmp', type: r.portRangeMin } : { m: 'icmp', type: r.portRangeMin, code: r.portRangeMax }];
    } else {
      out.push({ m: 'l4proto', v: p });
      if (takesPorts(p) && r.portRangeMin !== null && r.portRangeMax !== null)
        tail = [{ m: 'port', dir: 'dport', min: r.portRangeMin, max: r.portRangeMax }];
    }
  }
  if (r.remoteGroupId) out.push({ m: 'addrIn', family: v, dir, set: names.groupSet(r.remoteGroupId, v) });
  out.push(...tail, RETURN);
  return out;
}

function appendRules(
  into: TaggedRules,
  f: PortFilter,
  direction: 'ingress' | 'egress',
  v: V,
  names: NftNames,
  seen: Map<string, number>,
  log?: LogSettings,
): void {
  const ethertype = v === 6 ? 'IPv6' : 'IPv4';
  for (const r of f.rules) {
    if (r.direction !== direction || r.ethertype !== ethertype) continue;
    const rule = sgRule(r, v, names);
    const k = JSON.stringify(rule);
    const at = seen.get(k);
    if (at !== undefined) {
      // Identical rules of several groups (two spellings of one prefix): one rule, standing for all.
      const had = into.tags[at]!;
      if ('rule' in had) for (const id of r.ruleIds) if (!had.rule.includes(id)) had.rule.push(id);
      continue;
    }
    if (log && r.logged && f.log?.accept) {
      // The connection's first packet only (a stateless port's packets are not tracked: each is).
      const first: Stmt[] = f.stateful ? [{ m: 'ctState', states: ['new'] }] : [];
      push(into, [...rule.slice(0, -1), ...first, ...logStmts(log, names.logPrefix(f.portId, 'ACCEPT'))], { log: 'ACCEPT' });
    }
    seen.set(k, into.rules.length);
    push(into, rule, { rule: [...r.ruleIds] });
  }
}

/** Traffic to the port (../policy.ts: `ingressPolicy`). */
export function ingressRules(f: PortFilter, names: NftNames, log?: LogSettings): TaggedRules {
  return lower(f, ingressPolicy(f), 'ingress', names, log);
}

/** Traffic from the port (../policy.ts: `egressPolicy`). */
export function egressRules(f: PortFilter, names: NftNames, log?: LogSettings): TaggedRules {
  return lower(f, egressPolicy(f), 'egress', names, log);
}

/** Only the port's own (address, MAC) pairs leave it. */
export function spoofRules(f: PortFilter): TaggedRules {
  const out: TaggedRules = { rules: [], tags: [] };
  for (const { family, src, mac } of spoofSources(f)) {
    const rule: Stmt[] = [{ m: 'nfproto', v: family }];
    if (src !== undefined) rule.push({ m: 'addr', family, dir: 'saddr', cidr: src });
    rule.push({ m: 'etherSaddr', mac: mac.toLowerCase() }, RETURN);
    push(out, rule, { fixed: 'anti-spoofing: own source' });
  }
  push(out, [DROP], { fixed: 'anti-spoofing: drop' });
  return out;
}

/** A frame with a VLAN tag from or to the port is dropped (policy.ts, VLAN_TAG_TYPES). */
const TAGGED_DROPS: Rules = VLAN_TAG_TYPES.map((v): Stmt[] => [{ m: 'frameType', v }, DROP]);

/** Bridge table, a frame from the port: the port's mark, no VLAN tag, no source MAC but its own, then
 *  ARP only for its own IPv4 addresses and MACs (Neutron's ARP spoofing protection). */
export function fromDevRules(f: PortFilter, id: number): Rules {
  const rules: Rules = [[{ m: 'markSet', mask: MARK_MASK, id: markOf(id) }], ...TAGGED_DROPS];
  // Only the port's own MACs (policy.ts, sourceMacs), here, before the bridge learns where a MAC is.
  rules.push([...sourceMacs(f).map((mac): Stmt => ({ m: 'etherSaddr', mac, negate: true })), DROP]);
  for (const { mac, src } of arpSenders(f)) {
    const sender: Stmt = { m: 'arpSender', mac: mac.toLowerCase() };
    rules.push([{ m: 'ethertype', v: 0x0806 }, src === undefined ? sender : { ...sender, cidr: src }, RETURN]);
  }
  rules.push([{ m: 'ethertype', v: 0x0806 }, DROP]);
  return rules;
}

/** Bridge table, a frame to the port: the port's mark, and no VLAN tag. */
export function toDevRules(id: number): Rules {
  return [[{ m: 'markSet', mask: MARK_MASK, id: markOf(id) }], ...TAGGED_DROPS];
}

/** Every chain of a filtered port, by table family and name, and what each rule of its inet chains is. */
export function portChains(
  f: PortFilter,
  names: NftNames,
  mode: Mode,
  id: number | undefined,
  log?: LogSettings,
): { inet: Map<string, Rules>; bridge: Map<string, Rules>; tags: Map<string, RuleTag[]> } {
  const tagged = new Map<string, TaggedRules>([
    [names.ingressChain(f.portId), ingressRules(f, names, log)],
    [names.egressChain(f.portId), egressRules(f, names, log)],
    [names.spoofChain(f.portId), spoofRules(f)],
  ]);
  const inet = new Map([...tagged].map(([c, t]) => [c, t.rules]));
  const tags = new Map([...tagged].map(([c, t]) => [c, t.tags]));
  const bridge = new Map<string, Rules>();
  if (mode === 'bridged' && id !== undefined) {
    bridge.set(names.fromDevChain(f.portId), fromDevRules(f, id));
    bridge.set(names.toDevChain(f.portId), toDevRules(id));
  }
  return { inet, bridge, tags };
}
