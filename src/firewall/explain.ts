// What a port's filter does with a packet, answered from the desired state alone — no kernel, no
// packet: the same walk a packet makes through the port's chains (the fixed policy of policy.ts, the
// anti-spoof check, conntrack state, the security-group rules, the default drop), step by step, with
// the rule that decided named as `sg-agent trace` names it. Pure.
import { contains, familyOf, parseCidr, type Cidr, type Family } from '../domain/address.js';
import { isIcmp, PROTO, takesPorts } from '../domain/protocols.js';
import type { FilterRule, PortChainKind, PortFilter } from './dataplane.js';
import { egressPolicy, fixedTag, ICMP6_LISTS, ingressPolicy, ofFamily, spoofSources, type Match, type RuleTag } from './policy.js';

/** A packet at a port: coming to it (ingress) or sent by it (egress). */
export interface ProbePacket {
  direction: 'ingress' | 'egress';
  src: string;
  dst: string;
  /** IP protocol number; null: none named (a rule of any protocol still matches). */
  proto: number | null;
  sport?: number;
  dport?: number;
  icmpType?: number;
  icmpCode?: number;
  /** The sender's MAC (egress; default the port's own). */
  srcMac?: string;
  /** A neighbour solicitation's or advertisement's target address. */
  ndTarget?: string;
  /** The MAC a router or neighbour solicitation's or a neighbour advertisement's link-layer address
   *  option names (none: it carries no option). */
  ndLinkLayer?: string;
  /** Its connection's conntrack state (default new). */
  state?: 'new' | 'established' | 'related' | 'invalid';
}

export interface ExplainStep {
  chain: PortChainKind;
  rule: RuleTag;
  verdict: 'return' | 'drop' | 'jump';
}

export interface Explanation {
  verdict: 'accept' | 'drop';
  /** The rule that decided, and in which chain. */
  decidedBy: ExplainStep;
  /** Every rule that matched on the way, in order (a jump to the anti-spoof check and its return). */
  steps: ExplainStep[];
}

/** Member addresses and networks of a group. */
export type Members = (groupId: string) => Iterable<string>;

function within(addr: Cidr, net: string): boolean {
  return contains(parseCidr(net), addr);
}

/** Whether a fixed rule's match holds for the packet. */
function matchesFixed(m: Match, p: ProbePacket, src: Cidr, dst: Cidr): boolean {
  if (m.family !== src.family) return false;
  if (m.src && !within(src, m.src)) return false;
  if (m.dst && !within(dst, m.dst)) return false;
  if (m.udp && (p.proto !== PROTO.udp || p.sport !== m.udp.sport || p.dport !== m.udp.dport)) return false;
  if (m.icmp6 !== undefined) {
    if (p.proto !== PROTO.icmpv6 || p.icmpType === undefined) return false;
    const types: readonly number[] = typeof m.icmp6 === 'number' ? [m.icmp6] : ICMP6_LISTS[m.icmp6];
    if (!types.includes(p.icmpType)) return false;
  }
  if (m.ndTarget && (p.ndTarget === undefined || !within(parseCidr(p.ndTarget), m.ndTarget))) return false;
  if (m.ndLinkLayerOtherThan && (p.ndLinkLayer === undefined || m.ndLinkLayerOtherThan.includes(p.ndLinkLayer.toLowerCase()))) return false;
  return true;
}

/** Whether a security-group rule admits the packet (its remote is the packet's other end). */
function matchesRule(r: FilterRule, p: ProbePacket, remote: Cidr, members: Members): boolean {
  if (r.remoteIpPrefix && !within(remote, r.remoteIpPrefix)) return false;
  if (r.remoteGroupId !== null && ![...members(r.remoteGroupId)].some((m) => familyOf(m) === remote.family && within(remote, m)))
    return false;
  if (r.protocol === null) return true;
  if (isIcmp(r.protocol)) {
    // An ICMP rule matches the family's own ICMP, as both backends write it.
    if (p.proto !== (remote.family === 6 ? PROTO.icmpv6 : PROTO.icmp)) return false;
    if (r.portRangeMin !== null && p.icmpType !== r.portRangeMin) return false;
    return r.portRangeMax === null || p.icmpCode === r.portRangeMax;
  }
  if (p.proto !== r.protocol) return false;
  if (!takesPorts(r.protocol) || r.portRangeMin === null || r.portRangeMax === null) return true;
  return p.dport !== undefined && p.dport >= r.portRangeMin && p.dport <= r.portRangeMax;
}

/** The port's filter's answer for `p`. `f` must be a filtered port's. */
export function explain(f: PortFilter, members: Members, p: ProbePacket): Explanation {
  const src = parseCidr(p.src);
  const dst = parseCidr(p.dst);
  if (src.family !== dst.family) throw new Error('source and destination must be of one family');
  const family: Family = src.family;
  const chain: PortChainKind = p.direction;
  const entries = ofFamily(p.direction === 'ingress' ? ingressPolicy(f) : egressPolicy(f), family);
  const steps: ExplainStep[] = [];
  const decide = (step: ExplainStep): Explanation => {
    steps.push(step);
    return { verdict: step.verdict === 'drop' ? 'drop' : 'accept', decidedBy: step, steps };
  };
  const state = p.state ?? 'new';
  for (const e of entries) {
    if ('match' in e) {
      if (matchesFixed(e.match, p, src, dst)) return decide({ chain, rule: fixedTag(e), verdict: e.verdict });
    } else if ('state' in e) {
      if (state === 'established' || state === 'related') return decide({ chain, rule: fixedTag(e), verdict: 'return' });
      if (state === 'invalid') return decide({ chain, rule: fixedTag(e), verdict: 'drop' });
    } else if ('spoofCheck' in e) {
      steps.push({ chain, rule: fixedTag(e), verdict: 'jump' });
      const mac = (p.srcMac ?? f.mac).toLowerCase();
      const own = spoofSources(f).some((s) => s.family === family && s.mac === mac && (s.src === undefined || within(src, s.src)));
      if (!own) return decide({ chain: 'anti-spoofing', rule: { fixed: 'anti-spoofing: drop' }, verdict: 'drop' });
      steps.push({ chain: 'anti-spoofing', rule: { fixed: 'anti-spoofing: own source' }, verdict: 'return' });
    } else if ('groupRules' in e) {
      const remote = p.direction === 'ingress' ? src : dst;
      const ethertype = family === 6 ? 'IPv6' : 'IPv4';
      const hit = f.rules.find((r) => r.direction === p.direction && r.ethertype === ethertype && matchesRule(r, p, remote, members));
      if (hit) return decide({ chain, rule: { rule: [...hit.ruleIds] }, verdict: 'return' });
    } else {
      return decide({ chain, rule: fixedTag(e), verdict: 'drop' });
    }
  }
  // Every chain ends in its default drop; a policy without one would be a bug.
  throw new Error('the port policy has no default drop');
}

/** A step as an operator reads it. */
export function describeTag(tag: RuleTag): string {
  if ('rule' in tag) return `security-group rule ${tag.rule.join(', ')}`;
  if ('fixed' in tag) return tag.fixed;
  return `${tag.log} logging`;
}
