// Rendering of port filters into iptables (and ebtables) rules, with the semantics of Neutron's
// iptables + ipset driver: the fixed policy of a port's chains (../policy.ts) lowered to restore
// lines, one table per family, and the security-group rules. Pure: the backend compares what this
// returns with what it last wrote. docs/firewall.md lists every rule and why it is there. Rules are spelled the way iptables-save
// prints them, so what we write reads back byte-identical (protocol numbers without a fixed name are
// the exception: see `inexact`).
import { formatCidrWithPrefix, isCatchAll, parseCidr } from '../../domain/address.js';
import { isIcmp, takesPorts } from '../../domain/protocols.js';
import { macBytes } from '../../domain/mac.js';
import type { FilterRule, LogSettings, Mode, PortFilter } from '../dataplane.js';
import {
  arpSenders,
  sourceMacs,
  egressPolicy,
  fixedTag,
  ICMP6_LISTS,
  isUntracked,
  ingressPolicy,
  ndLinkLayerOf,
  ofFamily,
  spoofSources,
  trackedInsideUntracked,
  untrackedAddresses,
  VLAN_TAG_TYPES,
} from '../policy.js';
import type { Entry, FixedVerdict, Match, RuleTag } from '../policy.js';
import type { KernelNames } from './names.js';
import { ebtablesProtocol } from './ethertypes.js';

export type IpVersion = 4 | 6;
export type Chains = Map<string, string[]>;

/** Chain name → rules (restore lines without `-A <chain>`), per family, and what each line is (in
 *  the same order); `inexact` chains may read back differently from how they were written. */
export interface PortChains {
  v4: Chains;
  v6: Chains;
  tags: { v4: Map<string, RuleTag[]>; v6: Map<string, RuleTag[]> };
  inexact: Set<string>;
}

/** Canonical forms already computed: a bulk boot spells the same addresses again and again. */
const canonicalMemo = new Map<string, string>();

/** An address or network as iptables-save prints a match: host bits cleared, always a prefix. */
export function iptablesCidr(text: string): string {
  let c = canonicalMemo.get(text);
  if (c === undefined) {
    if (canonicalMemo.size >= 65_536) canonicalMemo.clear();
    c = formatCidrWithPrefix(parseCidr(text));
    canonicalMemo.set(text, c);
  }
  return c;
}

/** Protocol numbers written by the name iptables-save prints for them from its own table (whatever
 *  /etc/protocols says); other numbers are written as numbers and read back after writing. */
const PROTO_NAMES: Record<number, string> = {
  1: 'icmp',
  6: 'tcp',
  17: 'udp',
  50: 'esp',
  51: 'ah',
  58: 'ipv6-icmp',
  132: 'sctp',
  136: 'udplite',
};
/** Port-range protocols with no match module of their own: ports through multiport, as Neutron does. */
const MULTIPORT_ONLY: ReadonlySet<number> = new Set([136]);
const PORT_MATCH: Record<number, string> = { 6: 'tcp', 17: 'udp', 33: 'dccp', 132: 'sctp' };

interface ProtoParts {
  /** `-p NAME`, or '' for any protocol. */
  p: string;
  /** The protocol's own matches (ports, ICMP type), after any other match. */
  m: string;
  exact: boolean;
}

function protoMatch(r: FilterRule, v6: boolean): ProtoParts {
  const p = r.protocol;
  if (p === null) return { p: '', m: '', exact: true };
  if (isIcmp(p)) {
    const base = v6 ? '-p ipv6-icmp' : '-p icmp';
    if (r.portRangeMin === null) return { p: base, m: '', exact: true };
    const type = r.portRangeMax === null ? `${r.portRangeMin}` : `${r.portRangeMin}/${r.portRangeMax}`;
    return { p: base, m: v6 ? `-m icmp6 --icmpv6-type ${type}` : `-m icmp --icmp-type ${type}`, exact: true };
  }
  const name = PROTO_NAMES[p];
  const proto = { p: `-p ${name ?? p}`, exact: name !== undefined };
  const lo = r.portRangeMin;
  const hi = r.portRangeMax;
  if (lo === null || hi === null || !takesPorts(p)) return { ...proto, m: '' };
  const range = hi === lo ? `${lo}` : `${lo}:${hi}`;
  if (MULTIPORT_ONLY.has(p)) return { ...proto, m: `-m multiport --dports ${range}` };
  return { ...proto, m: `-m ${PORT_MATCH[p]} --dport ${range}` };
}

/** One rule's matches in the order iptables-save prints them: address, protocol, then matches. */
function ruleMatches(r: FilterRule, v6: boolean, names: KernelNames): { parts: string[]; exact: boolean } {
  const proto = protoMatch(r, v6);
  const dir = r.direction === 'ingress' ? 's' : 'd';
  const parts: string[] = [];
  if (r.remoteIpPrefix && !isCatchAll(r.remoteIpPrefix)) parts.push(`-${dir} ${iptablesCidr(r.remoteIpPrefix)}`);
  if (proto.p) parts.push(proto.p);
  if (r.remoteGroupId) parts.push(`-m set --match-set ${names.groupSet(r.remoteGroupId, v6 ? 6 : 4)} ${dir === 's' ? 'src' : 'dst'}`);
  if (proto.m) parts.push(proto.m);
  return { parts, exact: proto.exact };
}

function ruleLine(r: FilterRule, v6: boolean, names: KernelNames): { line: string; exact: boolean } {
  const { parts, exact } = ruleMatches(r, v6, names);
  return { line: [...parts, '-j RETURN'].join(' '), exact };
}

/** The kernel's rate limit of one logging rule, then the packet to the log group (no verdict: it
 *  goes on to the rule that decides). iptables-save leaves out a burst of 5, its default. */
function logTarget(log: LogSettings, prefix: string): string {
  const burst = log.burstLimit === 5 ? '' : ` --limit-burst ${log.burstLimit}`;
  return `-m limit --limit ${log.rateLimit}/sec${burst} -j NFLOG --nflog-prefix "${prefix}" --nflog-group ${log.group}`;
}

/** A fixed rule of the policy as restore lines (in iptables-save's order: addresses, protocol,
 *  matches): one per ICMPv6 type of a list. */
function fixedLines(m: Match, verdict: FixedVerdict): string[] {
  const head: string[] = [];
  if (m.src) head.push(`-s ${iptablesCidr(m.src)}`);
  if (m.dst) head.push(`-d ${iptablesCidr(m.dst)}`);
  const tail = [
    ...(m.ndTarget ? [`-m u32 --u32 "${ndTargetU32(m.ndTarget)}"`] : []),
    ...(m.ndLinkLayerOtherThan ? ndLinkLayerU32(m.icmp6, m.ndLinkLayerOtherThan).map((u) => `-m u32 ! --u32 "${u}"`) : []),
    verdict === 'return' ? '-j RETURN' : '-j DROP',
  ];
  if (m.udp) return [[...head, `-p udp -m udp --sport ${m.udp.sport} --dport ${m.udp.dport}`, ...tail].join(' ')];
  if (m.icmp6 === undefined) return [[...head, ...tail].join(' ')];
  const types = typeof m.icmp6 === 'number' ? [m.icmp6] : ICMP6_LISTS[m.icmp6];
  return types.map((t) => [...head, `-p ipv6-icmp -m icmp6 --icmpv6-type ${t}`, ...tail].join(' '));
}

/** A u32 match (as iptables-save prints it) of a neighbour solicitation or advertisement whose target
 *  address lies in `cidr`. u32 reads at fixed offsets from the IPv6 header, so it also requires the
 *  ICMPv6 header to follow that header directly (next header 58): the target is then the 16 bytes at
 *  48. A message behind extension headers matches no such rule and is dropped. */
export function ndTargetU32(cidr: string): string {
  const c = parseCidr(cidr);
  const tests = ['0x4&0xff00=0x3a00'];
  for (let i = 0; i < 4; i++) {
    const bits = Math.min(32, Math.max(0, c.prefix - 32 * i));
    if (bits === 0) break;
    const word = ((c.bytes[4 * i]! << 24) | (c.bytes[4 * i + 1]! << 16) | (c.bytes[4 * i + 2]! << 8) | c.bytes[4 * i + 3]!) >>> 0;
    const at = `0x${(48 + 4 * i).toString(16)}`;
    const mask = bits === 32 ? '' : `&0x${((0xffffffff << (32 - bits)) >>> 0).toString(16)}`;
    tests.push(`${at}${mask}=0x${word.toString(16)}`);
  }
  return tests.join('&&');
}

/** The u32 tests (as iptables-save prints them) a neighbour discovery message of `type` passes if it
 *  carries no option, or one link-layer address option naming one of `macs`: a rule that inverts
 *  each (`! --u32`) matches any other. Each also requires the ICMPv6 header to follow the IPv6 header
 *  directly (next header 58), and the IPv6 payload length to be the message's fixed part, or that and
 *  the option's eight bytes: a message behind extension headers, or with any other option, matches
 *  none of them. u32 compares at most four bytes a test, so an option is two words: its type, length
 *  and the MAC's first two bytes, then the MAC's last four. */
export function ndLinkLayerU32(type: Match['icmp6'], macs: string[]): string[] {
  const nd = ndLinkLayerOf(type);
  const hex = (n: number) => `0x${(n >>> 0).toString(16)}`;
  // The word at offset 4: the payload length (two bytes), the next header, the hop limit.
  const lengthIs = (n: number) => `0x4&0xffffff00=${hex((n << 16) | (58 << 8))}`;
  const at = 40 + nd.at;
  const withOption = macs.map((text) => {
    const b = macBytes(text);
    return [
      lengthIs(nd.at + 8),
      `${hex(at)}=${hex((nd.option << 24) | (1 << 16) | (b[0]! << 8) | b[1]!)}`,
      `${hex(at + 4)}=${hex((b[2]! << 24) | (b[3]! << 16) | (b[4]! << 8) | b[5]!)}`,
    ].join('&&');
  });
  return [lengthIs(nd.at), ...withOption];
}

export function physdev(mode: Mode, dir: 'in' | 'out', dev: string): string {
  if (mode === 'routed') return dir === 'in' ? `-i ${dev}` : `-o ${dev}`;
  return `-m physdev --physdev-${dir} ${dev} --physdev-is-bridged`;
}

const STATE = ['-m state --state RELATED,ESTABLISHED -j RETURN', '-m state --state INVALID -j DROP'];

/** Lines of one chain and what each is, kept in step; a line written twice is written once. */
class Lines {
  readonly lines: string[] = [];
  readonly tags: RuleTag[] = [];
  add(line: string, tag: RuleTag): void {
    const at = this.lines.indexOf(line);
    if (at < 0) {
      this.lines.push(line);
      this.tags.push(tag);
      return;
    }
    // Identical rules of several groups: one line, standing for all of them.
    const had = this.tags[at]!;
    if ('rule' in had && 'rule' in tag) for (const id of tag.rule) if (!had.rule.includes(id)) had.rule.push(id);
  }
}

/** The ingress, egress and anti-spoofing chains of one filtered port, both families; with `log`, the
 *  logging its security-group logs ask for. */
export function renderPortChains(f: PortFilter, names: KernelNames, log?: LogSettings): PortChains {
  const out: PortChains = { v4: new Map(), v6: new Map(), tags: { v4: new Map(), v6: new Map() }, inexact: new Set() };
  for (const v6 of [false, true]) {
    const chains = v6 ? out.v6 : out.v4;
    const tags = v6 ? out.tags.v6 : out.tags.v4;
    const ethertype = v6 ? 'IPv6' : 'IPv4';
    const rules = f.rules.filter((r) => r.ethertype === ethertype);
    const appendRules = (into: Lines, direction: 'ingress' | 'egress', chain: string) => {
      for (const r of rules) {
        if (r.direction !== direction) continue;
        const { line, exact } = ruleLine(r, v6, names);
        if (!exact) out.inexact.add(chain);
        if (log && r.logged && f.log?.accept) {
          // The connection's first packet only (a stateless port's packets are not tracked: each is).
          // How the tools print a rate is theirs: the chain is read back after writing.
          const first = f.stateful ? ['-m state --state NEW'] : [];
          const target = logTarget(log, names.logPrefix(f.portId, 'ACCEPT'));
          into.add([...ruleMatches(r, v6, names).parts, ...first, target].join(' '), { log: 'ACCEPT' });
          out.inexact.add(chain);
        }
        into.add(line, { rule: [...r.ruleIds] });
      }
    };

    // The policy's entries of this family; two spellings of one address give one line.
    const lower = (entries: Entry[], direction: 'ingress' | 'egress', chain: string): void => {
      const into = new Lines();
      for (const e of ofFamily(entries, v6 ? 6 : 4)) {
        if ('groupRules' in e) appendRules(into, direction, chain);
        else if ('match' in e) for (const l of fixedLines(e.match, e.verdict)) into.add(l, fixedTag(e));
        else if ('state' in e) for (const l of STATE) into.add(l, fixedTag(e));
        else if ('spoofCheck' in e) into.add(`-j ${names.spoofChain(f.portId)}`, fixedTag(e));
        else {
          // What the port's filter drops is logged first (rate-limited), then dropped.
          if (log && f.log?.drop) {
            into.add(logTarget(log, names.logPrefix(f.portId, 'DROP')), { log: 'DROP' });
            out.inexact.add(chain);
          }
          into.add(`-j ${names.fallbackChain}`, fixedTag(e));
        }
      }
      chains.set(chain, into.lines);
      tags.set(chain, into.tags);
    };
    lower(ingressPolicy(f), 'ingress', names.ingressChain(f.portId));
    lower(egressPolicy(f), 'egress', names.egressChain(f.portId));

    const spoof = new Lines();
    for (const s of spoofSources(f)) {
      if (s.family !== (v6 ? 6 : 4)) continue;
      const from = s.src === undefined ? '' : `-s ${iptablesCidr(s.src)} `;
      spoof.add(`${from}-m mac --mac-source ${s.mac} -j RETURN`, { fixed: 'anti-spoofing: own source' });
    }
    spoof.add('-j DROP', { fixed: 'anti-spoofing: drop' });
    chains.set(names.spoofChain(f.portId), spoof.lines);
    tags.set(names.spoofChain(f.portId), spoof.tags);
  }
  return out;
}

/** Where the host's traffic enters our chains. `failed` ports (their filter could not be written)
 *  are dropped outright rather than let through unfiltered. */
/** A dispatch chain's rules in sections, in order: a rule must stay within its section, but may be
 *  anywhere in it (each rule of a section matches a device of its own, so no two of them see the same
 *  packet). A chain so described can be edited in place (./edit.ts) instead of rewritten. */
export type Sections = string[][];

export interface Dispatch {
  forward: Sections;
  ports: Sections;
  input: Sections;
}

export function renderDispatch(
  filters: Iterable<PortFilter>,
  failed: ReadonlySet<string>,
  mode: Mode,
  names: KernelNames,
  unknownPrefixes: readonly string[] = [],
): Dispatch {
  const known: PortFilter[] = [...filters];
  const filtered = known.filter((f) => f.filtered && !failed.has(f.portId));
  const refused = known.filter((f) => f.filtered && failed.has(f.portId));
  const unfiltered = known.filter((f) => !f.filtered);
  const dropUnknown = (dir: 'in' | 'out') => unknownPrefixes.map((p) => `${physdev(mode, dir, `${p}+`)} -j DROP`);
  const forward: Sections = [
    // A port whose filter the kernel refused is dropped both ways, first: never unfiltered.
    refused.flatMap((f) => [
      `${physdev(mode, 'out', f.device)} -j ${names.fallbackChain}`,
      `${physdev(mode, 'in', f.device)} -j ${names.fallbackChain}`,
    ]),
    // Traffic sent by one of our ports: its egress (if filtered), then the receiver's ingress (if ours
    // and filtered). A port with port security off sends unfiltered, but what it sends to a filtered
    // port still meets that port's ingress chain.
    [...filtered, ...unfiltered].map((f) => `${physdev(mode, 'in', f.device)} -j ${names.portsChain}`),
    // Devices named like a VM port but not known (yet): dropped, not passed (opt-in, `unknownPrefixes`).
    dropUnknown('in'),
    // Traffic from elsewhere (the uplink) to one of our ports.
    filtered.map((f) => `${physdev(mode, 'out', f.device)} -j ${names.portsChain}`),
    unfiltered.map((f) => `${physdev(mode, 'out', f.device)} -j ACCEPT`),
    dropUnknown('out'),
  ];
  const ports: Sections = [
    filtered.map((f) => `${physdev(mode, 'in', f.device)} -j ${names.egressChain(f.portId)}`),
    filtered.map((f) => `${physdev(mode, 'out', f.device)} -j ${names.ingressChain(f.portId)}`),
    // What our ports sent reaches a port we know, or anything not named like a VM port.
    unknownPrefixes.length ? [...filtered, ...unfiltered].map((f) => `${physdev(mode, 'out', f.device)} -j ACCEPT`) : [],
    dropUnknown('out'),
    ['-j ACCEPT'],
  ];
  const input: Sections = [
    refused.map((f) => `${physdevIn(mode, f.device)} -j ${names.fallbackChain}`),
    // Traffic from a VM to the host itself meets the port's egress rules, as Neutron hooks INPUT.
    filtered.map((f) => `${physdevIn(mode, f.device)} -j ${names.egressChain(f.portId)}`),
    unknownPrefixes.map((p) => `${physdevIn(mode, `${p}+`)} -j DROP`),
  ];
  return { forward, ports, input };
}

/** INPUT sees a bridged packet's bridge port with --physdev-in (not -is-bridged: it is not forwarded). */
function physdevIn(mode: Mode, dev: string): string {
  return mode === 'routed' ? `-i ${dev}` : `-m physdev --physdev-in ${dev}`;
}

/** The one bit of the packet mark this backend uses (bridged mode), by default: set by ebtables on a
 *  frame to a stateless port's MAC (renderMacDispatch), read and cleared in raw PREROUTING
 *  (renderRaw), which br_netfilter runs after the bridge's nat PREROUTING. No packet leaves raw with
 *  it, but a program that gives the bit a meaning in between would conflict: it is a setting
 *  (`firewall.iptablesMarkBit`), as other host firewalls' mark bits are. Always one of the low 16
 *  bits (MARK_BITS): the high 16 are the nftables backend's port ids (nftables/render.ts,
 *  MARK_MASK), and while the backend is switched both run for a moment, when clearing a high bit
 *  here would change a port's id there. 13 (0x2000): beside kube-proxy's 14 and 15. */
export const DEFAULT_MARK_BIT = 13;
/** The bits the setting may name. */
export const MARK_BITS = { min: 0, max: 15 } as const;

/** Bit `bit` of the mark as the tools print it (lower-case hex, no leading zeros). */
export function markHex(bit: number): string {
  return `0x${(2 ** bit).toString(16)}`;
}

/** raw PREROUTING: traffic from and to ports whose groups are all stateless is not tracked; their
 *  rules must then admit replies explicitly, as with Neutron. Traffic to such a port is known by its
 *  destination address (never the host's own: policy.ts, untrackedAddresses) and, bridged, by its
 *  destination MAC (`mark`, markHex), routed with the other ports' addresses inside it excepted: an
 *  allowed pair may be a network that holds other VMs' addresses, and their traffic must stay
 *  tracked. */
export function renderRaw(
  filters: Iterable<PortFilter>,
  mode: Mode,
  v6: boolean,
  mark: string,
  zones: readonly { bridge: string; zone: number }[] = [],
): string[] {
  const all = [...filters];
  const family = v6 ? 6 : 4;
  const marked = `-m mark --mark ${mark}/${mark}`;
  const toPort = mode === 'bridged' ? ` ${marked}` : '';
  const stateless = all.filter(isUntracked);
  // From a stateless port; then to one, bridged known by the mark its destination MAC got.
  const lines = stateless.map((f) => `${physdevIn(mode, f.device)} -j CT --notrack`);
  const to = stateless.flatMap((f) => untrackedAddresses(f)[family].map((ip) => ({ ip, track: false })));
  // Routed, by its address, less the other ports' addresses inside it (policy.ts), which the host
  // routes to their own devices: most specific first, as a route lookup picks, and since `CT
  // --notrack` does not end the chain, a notrack matched first stays (a more specific stateless
  // address inside another port's network) and a RETURN matched first keeps the packet tracked.
  if (mode === 'routed' && to.length) to.push(...trackedInsideUntracked(all)[family].map((ip) => ({ ip, track: true })));
  const prefixOf = (ip: string) => Number(iptablesCidr(ip).split('/')[1]);
  if (mode === 'routed') to.sort((a, b) => prefixOf(b.ip) - prefixOf(a.ip));
  for (const { ip, track } of to)
    lines.push(
      track ? `-d ${iptablesCidr(ip)} -j RETURN` : `-d ${iptablesCidr(ip)}${toPort} -m addrtype ! --dst-type LOCAL -j CT --notrack`,
    );
  // The bridges' conntrack zones (../zones.ts), after the notrack rules: the CT target leaves a
  // packet already untracked as it is. `CT --zone 0` is the default zone: no rule.
  for (const { bridge, zone } of zones) if (zone !== 0) lines.push(`-i ${bridge} -j CT --zone ${zone}`);
  // Always, bridged: ebtables may still mark for a moment after the last stateless port went.
  if (mode === 'bridged') lines.push(`${marked} -j MARK --set-xmark 0x0/${mark}`);
  return lines;
}

/** ebtables: ARP from a port may only claim the port's own IPv4 addresses and MACs (Neutron's ARP
 *  spoofing protection). Bridged mode only: a routed port's ARP goes to the host, not to other VMs. */
export function renderArp(f: PortFilter): string[] {
  const lines: string[] = [];
  for (const { mac, src } of arpSenders(f)) {
    // In the order ebtables-save prints the matches.
    const line = `-p ARP ${src === undefined ? '' : `--arp-ip-src ${ebtablesCidr(src)} `}--arp-mac-src ${mac} -j RETURN`;
    if (!lines.includes(line)) lines.push(line);
  }
  lines.push('-p ARP -j DROP');
  return lines;
}

/** ebtables nat: a frame from the port may carry only the port's own source MACs (policy.ts,
 *  sourceMacs). In PREROUTING, before the bridge learns where a MAC is: the filter table's chains run
 *  after it has, when a frame from a neighbour's MAC has already taken the neighbour's traffic. */
export function renderMacSources(f: PortFilter): string[] {
  return [...sourceMacs(f).map((mac) => `-s ${mac} -j RETURN`), '-j DROP'];
}

/** The ebtables nat dispatch (PREROUTING), two sections: a frame from a port to its MAC chain (from
 *  a port whose filter the kernel refused: dropped); a frame to a MAC of a stateless port marked, so
 *  raw PREROUTING knows it goes to that port (renderRaw). Each MAC once: ports may share one. */
export function renderMacDispatch(filters: Iterable<PortFilter>, failed: ReadonlySet<string>, names: KernelNames, mark: string): Sections {
  const from: string[] = [];
  const toStateless = new Set<string>();
  for (const f of filters) {
    if (!f.filtered) continue;
    from.push(`-i ${f.device} -j ${failed.has(f.portId) ? 'DROP' : names.macChain(f.portId)}`);
    if (isUntracked(f) && !failed.has(f.portId))
      for (const mac of sourceMacs(f)) toStateless.add(`-d ${mac} -j mark --mark-or ${mark} --mark-target CONTINUE`);
  }
  return [from, [...toStateless]];
}

/** ebtables-save prints a host without /32 and a network with its prefix. */
function ebtablesCidr(text: string): string {
  const c = iptablesCidr(text);
  return c.endsWith('/32') ? c.slice(0, -3) : c;
}

/** The ebtables dispatch (FORWARD and INPUT): a port's ARP to its ARP chain, and frames with a VLAN
 *  tag from or to it dropped (policy.ts, VLAN_TAG_TYPES). */
export function renderArpDispatch(filters: Iterable<PortFilter>, failed: ReadonlySet<string>, names: KernelNames): string[] {
  const lines: string[] = [];
  for (const f of filters) {
    if (!f.filtered) continue;
    lines.push(`-p ARP -i ${f.device} -j ${failed.has(f.portId) ? 'DROP' : names.arpChain(f.portId)}`);
    for (const type of VLAN_TAG_TYPES) {
      const p = ebtablesProtocol(type);
      lines.push(`-p ${p} -i ${f.device} -j DROP`, `-p ${p} -o ${f.device} -j DROP`);
    }
  }
  return lines;
}

/** iptables-restore --noflush input making `changed` chains hold their rules and removing `removed`
 *  ones; chains not named are not touched. `edits` (./edit.ts) run after the rewrites, so they may
 *  jump to a chain made here, and before the removals, so a removed chain is no longer jumped to;
 *  `extra` lines (jumps into our chains) go last. */
export function restoreScript(
  table: string,
  chains: Chains,
  changed: string[],
  removed: string[],
  extra: string[] = [],
  edits: string[] = [],
): string {
  const lines = [`*${table}`];
  for (const c of [...changed, ...removed]) lines.push(`:${c} - [0:0]`);
  for (const c of changed) for (const r of chains.get(c) ?? []) lines.push(`-A ${c} ${r}`);
  lines.push(...edits);
  for (const c of removed) lines.push(`-X ${c}`);
  lines.push(...extra);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** Kernel default; sets larger than this grow by swap into a set with a larger maxelem. */
const DEFAULT_MAXELEM = 65536;

/** maxelem with headroom: fixed at the default until 80% of it is used, then powers of two. */
export function maxelemFor(n: number): number {
  if (n <= DEFAULT_MAXELEM * 0.8) return DEFAULT_MAXELEM;
  let m = DEFAULT_MAXELEM;
  while (m * 0.8 < n) m *= 2;
  return m;
}
