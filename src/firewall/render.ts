// Pure rendering of the security-group model into iptables chains and ipset contents, with the
// semantics of Neutron's iptables + ipset driver. No I/O: the engine diffs what this returns against
// what it last applied. docs/firewall.md lists every rule and why it is there.
import type { Port, SecurityGroup, SecurityGroupRule } from '../model.js';
import { isIcmp, takesPorts } from '../domain/protocols.js';
import { familyOf as addressFamily, formatCidrWithPrefix, isCatchAll, parseCidr } from '../domain/address.js';
import { portMemberAddresses } from '../domain/validate.js';
import type { IpFamily, SetSpec } from '../ipset.js';
import type { KernelNames } from './names.js';

export { isCatchAll };
/** Member addresses a port contributes to its groups (one home: src/domain/validate.ts). */
export const portAddresses = portMemberAddresses;

export type Mode = 'bridged' | 'routed';
export type Chains = Map<string, string[]>;

export interface DesiredSet {
  name: string;
  groupId: string;
  family: IpFamily;
  spec: SetSpec;
  members: string[];
}

export interface Rendered {
  /** Chain name → its rules (iptables-restore lines without the `-A <chain>` part), per family. */
  v4: Chains;
  v6: Chains;
  sets: Map<string, DesiredSet>;
  /** Chains that iptables-save may print differently from how we wrote them (read back after a write). */
  inexact: Set<string>;
}

export interface RenderInput {
  ports: Port[];
  groups: Map<string, SecurityGroup>;
  members: Map<string, Set<string>>;
  names: KernelNames;
  mode: Mode;
}

const V4 = 'IPv4';

/** Kernel default; sets larger than this grow by swap into a set with a larger maxelem. */
const DEFAULT_MAXELEM = 65536;

/** maxelem with headroom: fixed at the default until 80% of it is used, then powers of two. */
export function maxelemFor(n: number): number {
  if (n <= DEFAULT_MAXELEM * 0.8) return DEFAULT_MAXELEM;
  let m = DEFAULT_MAXELEM;
  while (m * 0.8 < n) m *= 2;
  return m;
}

function familyOf(ip: string): IpFamily {
  return addressFamily(ip) === 6 ? 'inet6' : 'inet';
}

/** IPv6 link-local address a port uses for neighbour discovery, derived from its MAC (EUI-64). */
export function linkLocalFromMac(mac: string): string {
  const b = mac.split(':').map((h) => parseInt(h, 16));
  b[0] = b[0]! ^ 0x02;
  const words = [(b[0]! << 8) | b[1]!, (b[2]! << 8) | 0xff, (0xfe << 8) | b[3]!, (b[4]! << 8) | b[5]!];
  return `fe80::${words.map((w) => w.toString(16)).join(':')}`;
}

function physdev(mode: Mode, dir: 'in' | 'out', dev: string): string {
  if (mode === 'routed') return dir === 'in' ? `-i ${dev}` : `-o ${dev}`;
  return `-m physdev --physdev-${dir} ${dev} --physdev-is-bridged`;
}

/** Protocol numbers we write by the name iptables-save prints for them (its own table, whatever
 *  /etc/protocols says), so that what we write reads back byte-identical. Other numbers are written as
 *  numbers and their chains read back after writing (see `Rendered.inexact`). */
const PROTO_NAMES: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 50: 'esp', 51: 'ah', 58: 'ipv6-icmp', 132: 'sctp', 136: 'udplite' };
/** Port-range protocols with no match module of their own: ports through multiport, as Neutron does. */
const MULTIPORT_ONLY: ReadonlySet<number> = new Set([136]);
const PORT_MATCH: Record<number, string> = { 6: 'tcp', 17: 'udp', 33: 'dccp', 132: 'sctp' };

/** Canonical forms already computed: every render spells the same port addresses again (a bulk boot
 *  renders all ports' chains per rewrite), and the IPv6 form takes a URL parse. Cleared when large. */
const canonicalMemo = new Map<string, string>();

/** An address or CIDR as iptables-save prints it: host bits cleared, IPv6 compressed, with a prefix. */
export function canonicalCidr(text: string): string {
  let c = canonicalMemo.get(text);
  if (c === undefined) {
    if (canonicalMemo.size >= 65_536) canonicalMemo.clear();
    c = computeCanonicalCidr(text);
    canonicalMemo.set(text, c);
  }
  return c;
}

function computeCanonicalCidr(text: string): string {
  return formatCidrWithPrefix(parseCidr(text));
}

interface ProtoParts {
  /** `-p NAME`, or '' for any protocol. */
  p: string;
  /** The protocol's own matches (ports, ICMP type), after any other match. */
  m: string;
  /** Whether iptables-save may print it differently (a protocol number without a fixed name). */
  exact: boolean;
}

function protoMatch(r: SecurityGroupRule, v6: boolean): ProtoParts {
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

/** One rule in the order iptables-save prints its parts: address, protocol, then matches. */
function ruleLine(r: SecurityGroupRule, v6: boolean, names: KernelNames): { line: string; exact: boolean } {
  const proto = protoMatch(r, v6);
  const dir = r.direction === 'ingress' ? 's' : 'd';
  const parts: string[] = [];
  if (r.remoteIpPrefix && !isCatchAll(r.remoteIpPrefix)) parts.push(`-${dir} ${canonicalCidr(r.remoteIpPrefix)}`);
  if (proto.p) parts.push(proto.p);
  if (r.remoteGroupId) {
    parts.push(`-m set --match-set ${names.groupSet(r.remoteGroupId, v6 ? 'inet6' : 'inet')} ${dir === 's' ? 'src' : 'dst'}`);
  }
  if (proto.m) parts.push(proto.m);
  parts.push('-j RETURN');
  return { line: parts.join(' '), exact: proto.exact };
}

function renderFamily(input: RenderInput, v6: boolean, filtered: Port[], unfiltered: Port[], inexact: Set<string>): Chains {
  const { names, mode } = input;
  const chains: Chains = new Map();
  const ethertype = v6 ? 'IPv6' : V4;
  const dispatch: string[] = [];
  const ports: string[] = [];
  for (const port of filtered) {
    dispatch.push(`${physdev(mode, 'out', port.device)} -j ${names.portsChain}`);
    dispatch.push(`${physdev(mode, 'in', port.device)} -j ${names.portsChain}`);
    ports.push(`${physdev(mode, 'out', port.device)} -j ${names.ingressChain(port.id)}`);
    ports.push(`${physdev(mode, 'in', port.device)} -j ${names.egressChain(port.id)}`);
  }
  // Port security off: not filtered at all, but only after filtered ports had their say, so traffic
  // from such a port to a filtered one still meets the filtered port's ingress rules.
  for (const port of unfiltered) {
    dispatch.push(`${physdev(mode, 'out', port.device)} -j ACCEPT`);
    dispatch.push(`${physdev(mode, 'in', port.device)} -j ACCEPT`);
  }
  ports.push('-j ACCEPT');
  chains.set(names.dispatchChain, dispatch);
  chains.set(names.portsChain, ports);
  chains.set(names.fallbackChain, ['-j DROP']);

  for (const port of filtered) {
    const groups = port.securityGroups.map((g) => input.groups.get(g)).filter((g): g is SecurityGroup => !!g);
    const stateful = groups.length === 0 || groups.some((g) => g.stateful);
    const rules = groups.flatMap((g) => g.rules).filter((r) => r.ethertype === ethertype);
    const state = stateful ? ['-m state --state RELATED,ESTABLISHED -j RETURN', '-m state --state INVALID -j DROP'] : [];
    /** The groups' rules of one direction, each distinct line once (groups often repeat rules). */
    const appendRules = (lines: string[], direction: 'ingress' | 'egress', chain: string) => {
      const seen = new Set(lines);
      for (const r of rules) {
        if (r.direction !== direction) continue;
        const { line, exact } = ruleLine(r, v6, names);
        if (!exact) inexact.add(chain);
        if (seen.has(line)) continue;
        seen.add(line);
        lines.push(line);
      }
    };

    const ingress: string[] = [...state];
    if (v6) {
      // Neighbour discovery, MLD and router advertisements must reach the VM for IPv6 to work.
      for (const t of [130, 131, 132, 134, 135, 136, 143]) ingress.push(`-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j RETURN`);
      ingress.push('-p udp -m udp --sport 547 --dport 546 -j RETURN');
    } else {
      ingress.push('-p udp -m udp --sport 67 --dport 68 -j RETURN');
    }
    appendRules(ingress, 'ingress', names.ingressChain(port.id));
    ingress.push(`-j ${names.fallbackChain}`);
    chains.set(names.ingressChain(port.id), ingress);

    const egress: string[] = [];
    if (v6) {
      // Before the anti-spoof check: these leave from :: or link-local addresses during address setup.
      for (const t of [131, 133, 135, 136, 143]) egress.push(`-p ipv6-icmp -m icmp6 --icmpv6-type ${t} -j RETURN`);
    } else {
      egress.push('-s 0.0.0.0/32 -d 255.255.255.255/32 -p udp -m udp --sport 68 --dport 67 -j RETURN');
    }
    egress.push(`-j ${names.spoofChain(port.id)}`);
    if (v6) {
      egress.push('-p ipv6-icmp -m icmp6 --icmpv6-type 134 -j DROP');
      egress.push('-p udp -m udp --sport 546 --dport 547 -j RETURN');
      egress.push('-p udp -m udp --sport 547 --dport 546 -j DROP');
    } else {
      egress.push('-p udp -m udp --sport 68 --dport 67 -j RETURN');
      egress.push('-p udp -m udp --sport 67 --dport 68 -j DROP');
    }
    egress.push(...state);
    appendRules(egress, 'egress', names.egressChain(port.id));
    egress.push(`-j ${names.fallbackChain}`);
    chains.set(names.egressChain(port.id), egress);

    const spoof: string[] = [];
    const pairs: [string, string][] = [];
    for (const ip of port.fixedIps) pairs.push([ip, port.mac]);
    for (const p of port.allowedAddressPairs) pairs.push([p.ipAddress, p.macAddress ?? port.mac]);
    if (v6) pairs.push([linkLocalFromMac(port.mac), port.mac]);
    for (const [ip, mac] of pairs) {
      if (familyOf(ip) !== (v6 ? 'inet6' : 'inet')) continue;
      const src = isCatchAll(ip) ? '' : `-s ${canonicalCidr(ip)} `;
      const line = `${src}-m mac --mac-source ${mac} -j RETURN`;
      if (!spoof.includes(line)) spoof.push(line);
    }
    spoof.push('-j DROP');
    chains.set(names.spoofChain(port.id), spoof);
  }
  return chains;
}

/** Sets needed: one per (group named as remote group by a local port's rules, family). */
function renderSets(input: RenderInput, filtered: Port[]): Map<string, DesiredSet> {
  const sets = new Map<string, DesiredSet>();
  for (const port of filtered) {
    for (const gid of port.securityGroups) {
      for (const r of input.groups.get(gid)?.rules ?? []) {
        if (!r.remoteGroupId) continue;
        const family: IpFamily = r.ethertype === V4 ? 'inet' : 'inet6';
        const name = input.names.groupSet(r.remoteGroupId, family);
        if (sets.has(name)) continue;
        const members = [...(input.members.get(r.remoteGroupId) ?? [])].filter((ip) => familyOf(ip) === family && !isCatchAll(ip));
        sets.set(name, {
          name,
          groupId: r.remoteGroupId,
          family,
          spec: { type: 'hash:net', family, maxelem: maxelemFor(members.length) },
          members,
        });
      }
    }
  }
  return sets;
}

export function render(input: RenderInput): Rendered {
  const filtered = input.ports.filter((p) => p.portSecurityEnabled);
  const unfiltered = input.ports.filter((p) => !p.portSecurityEnabled);
  const inexact = new Set<string>();
  return {
    v4: renderFamily(input, false, filtered, unfiltered, inexact),
    v6: renderFamily(input, true, filtered, unfiltered, inexact),
    sets: renderSets(input, filtered),
    inexact,
  };
}

/** iptables-restore --noflush input that makes `changed` chains hold their rules and removes
 *  `removed` ones; chains not named are not touched. `jump` adds the FORWARD jump when missing. */
export function restoreScript(chains: Chains, changed: string[], removed: string[], jump: string | null): string {
  const lines = ['*filter'];
  for (const c of [...changed, ...removed]) lines.push(`:${c} - [0:0]`);
  for (const c of changed) for (const r of chains.get(c) ?? []) lines.push(`-A ${c} ${r}`);
  for (const c of removed) lines.push(`-X ${c}`);
  if (jump) lines.push(jump);
  lines.push('COMMIT', '');
  return lines.join('\n');
}
