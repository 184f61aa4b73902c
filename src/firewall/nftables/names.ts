// Kernel names of what the nftables backend owns. Its two tables (inet; bridge in bridged mode) share
// one name: the prefix, `t` and a hash of the prefix — the shape the iptables backend's names have,
// from the same hash (../iptables/names.ts), so no other program's table is mistaken for ours. Inside
// them, per-port chains and member sets are a kind letter and the hash of the id; shared objects have
// fixed names (hyphenated, so none is an nft keyword). `owns()` accepts exactly these shapes: only
// they are ever removed as stale.
import type { Family } from '../../domain/address.js';
import { IdHashes, idHash, logPrefix, validatePrefix } from '../iptables/names.js';

/** Shared objects of the inet table. */
export const INET = {
  /** prerouting, priority 0: traffic a port sends goes to the port's egress chain. */
  fromPorts: 'from-ports',
  /** forward, priority 0: traffic to a port goes to the port's ingress chain. */
  toPorts: 'to-ports',
  /** prerouting, priority -300 (raw): traffic of stateless ports is not tracked. */
  untracked: 'untracked',
  /** Verdict maps: port key (mark or device) → its egress chain / its ingress chain. */
  fromPort: 'from-port',
  toPort: 'to-port',
  /** Keys of stateless ports, and (bridged mode) their addresses and MACs. */
  statelessPort: 'stateless-port',
  statelessAddr4: 'stateless-addr4',
  statelessAddr6: 'stateless-addr6',
  statelessMac: 'stateless-mac',
  /** The lists of ICMPv6 types of the port policy (../policy.ts `ICMP6_LISTS`): what every port
   *  receives (with router advertisements, one with an IPv6 fixed IP), may send from :: for
   *  duplicate address detection, and may send from its own addresses: one rule each instead of one
   *  per type. */
  icmp6ToPort: 'icmp6-to-port',
  icmp6ToPortWithRa: 'icmp6-to-port-ra',
  icmp6Dad: 'icmp6-dad',
  icmp6FromPort: 'icmp6-from-port',
  /** Conntrack state → verdict for stateful ports: replies return, invalid packets are dropped. */
  ctState: 'ct-state',
  /** Routed mode with unknown-device drop: the devices of every port the agent knows. */
  knownDev: 'known-dev',
} as const;

/** Shared objects of the bridge table (bridged mode). */
export const BRIDGE = {
  /** prerouting, priority -200 (before br_netfilter): a frame from a port gets the port's mark. */
  markFrom: 'mark-from',
  /** forward, priority -200 (before br_netfilter): a frame to a port gets the port's mark. */
  markTo: 'mark-to',
  /** Verdict maps: device → the port's chain that marks (and checks ARP) / marks. */
  fromDev: 'from-dev',
  toDev: 'to-dev',
  /** Bridged mode with unknown-device drop: the devices of every port the agent knows. */
  knownDev: 'known-dev',
} as const;

const SHARED: ReadonlySet<string> = new Set([...Object.values(INET), ...Object.values(BRIDGE)]);
const HASH = '[0-9a-f]{16}';
const PER_OBJECT = new RegExp(`^([iosam]-${HASH}|g[46]-${HASH})$`);

export class NftNames {
  readonly table: string;
  /** A table of its own (bridge, or inet in routed mode) for `sg-agent trace`'s marking rule, made
   *  and removed by it (and by `cleanup`): never one of the tables the backend writes. */
  readonly traceTable: string;
  private readonly hashes = new IdHashes();

  constructor(readonly prefix: string) {
    validatePrefix(prefix);
    this.table = `${prefix}-t-${idHash(`${prefix}:nftables`)}`;
    this.traceTable = `${prefix}-x-${idHash(`${prefix}:trace`)}`;
  }

  private hash(id: string): string {
    return this.hashes.of(id);
  }

  /** Traffic to the port (the group rules' ingress). */
  ingressChain(portId: string): string {
    return `i-${this.hash(portId)}`;
  }
  /** Traffic from the port (egress rules, DHCP and router-advertisement guards). */
  egressChain(portId: string): string {
    return `o-${this.hash(portId)}`;
  }
  /** The port's own (address, MAC) pairs: anti-spoofing. */
  spoofChain(portId: string): string {
    return `s-${this.hash(portId)}`;
  }
  /** Bridge table: marks a frame from the port and checks its ARP. */
  fromDevChain(portId: string): string {
    return `a-${this.hash(portId)}`;
  }
  /** Bridge table: marks a frame to the port. */
  toDevChain(portId: string): string {
    return `m-${this.hash(portId)}`;
  }
  /** The prefix of the port's logging rules. */
  logPrefix(portId: string, event: 'ACCEPT' | 'DROP'): string {
    return logPrefix(this.prefix, event, this.hash(portId));
  }
  /** Member addresses of a group, one family. */
  groupSet(groupId: string, family: Family): string {
    return `g${family}-${this.hash(groupId)}`;
  }

  /** Whether a table name is ours. */
  ownsTable(name: string): boolean {
    return name === this.table;
  }
  /** Whether a chain or set inside our tables has one of our shapes. */
  owns(name: string): boolean {
    return SHARED.has(name) || PER_OBJECT.test(name);
  }
}
