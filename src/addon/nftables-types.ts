// Generated from native/core/src/nftables (spec.rs and the result types) by ts-rs; do not edit.
// Regenerate: SG_WRITE_TS=1 cargo test -p sg-agent-core ts_types
export type Family = "inet" | "bridge";
export type HookName = "prerouting" | "input" | "forward" | "output" | "postrouting";
export type HookSpec = { hook: HookName, priority: number, };
export type KeyType = "ipv4" | "ipv6" | "mark" | "ifname" | "icmp6type" | "ctstate" | "ether";
export type VerdictSpec = "accept" | "drop" | "return" | { "jump": string } | { "goto": string };
export type KeySpec = number | string;
export type ElemSpec = { key: KeySpec, verdict?: VerdictSpec, };
export type Dir = "saddr" | "daddr";
export type PortDir = "sport" | "dport";
export type CtState = "invalid" | "established" | "related" | "new" | "untracked";
export type IfKey = "iifname" | "oifname";
export type MapKey = { "mark": number } | "iifname" | "oifname";
export type Stmt = { "m": "nfproto", v: 4 | 6, } | { "m": "l4proto", v: number, } | { "m": "ethertype", v: number, } | { "m": "frameType", v: number, } | { "m": "addr", family: 4 | 6, dir: Dir, cidr: string, } | { "m": "addrIn", family: 4 | 6, dir: Dir, set: string, } | { "m": "port", dir: PortDir, min: number, max: number, } | { "m": "icmpIn", set: string, } | { "m": "ndTarget", cidr: string, } | { "m": "ip6Length", v: number, negate?: boolean, } | { "m": "ndLinkLayerNot", at: number, option: number, macs: Array<string>, } | { "m": "icmp", type: number, code?: number, } | { "m": "ctState", states: Array<CtState>, } | { "m": "ctStateVmap", map: string, } | { "m": "etherSaddr", mac: string, negate?: boolean, } | { "m": "etherDaddrIn", set: string, } | { "m": "arpSender", mac: string, cidr?: string, } | { "m": "markSet", mask: number, id: number, } | { "m": "markIn", mask: number, set: string, } | { "m": "ifnameIn", key: IfKey, set: string, negate?: boolean, } | { "m": "ifnamePrefix", key: IfKey, prefix: string, } | { "m": "ifname", key: IfKey, name: string, } | { "m": "iifkind", kind: string, } | { "m": "nftraceSet" } | { "m": "log", group: number, prefix: string, } | { "m": "limit", rate: number, burst: number, } | { "m": "vmap", key: MapKey, map: string, } | { "m": "daddrNotLocal" } | { "m": "fibDaddrOifnameIn", set: string, } | { "m": "notrack" } | { "m": "ctZoneSetIif" } | { "m": "counter" } | { "m": "verdict", v: VerdictSpec, };
export type Op = { "op": "table", family: Family, table: string, } | { "op": "delTable", family: Family, table: string, } | { "op": "chain", family: Family, table: string, chain: string, hook?: HookSpec, } | { "op": "delChain", family: Family, table: string, chain: string, } | { "op": "flushChain", family: Family, table: string, chain: string, } | { "op": "rule", family: Family, table: string, chain: string, stmts: Array<Stmt>, } | { "op": "set", family: Family, table: string, set: string, key: KeyType, map?: boolean, } | { "op": "delSet", family: Family, table: string, set: string, } | { "op": "flushSet", family: Family, table: string, set: string, } | { "op": "members", family: Family, table: string, set: string, add?: Array<string>, del?: Array<string>, replace?: boolean, } | { "op": "elems", family: Family, table: string, set: string, add?: Array<ElemSpec>, del?: Array<KeySpec>, };
export type OpFailure = { 
/**
 * Index of the operation in the transaction; None for the batch as a whole.
 */
op: number | null, code: string, errno: number, message: string, };
export type TransactResult = { committed: boolean, failures: Array<OpFailure>, };
export type UnknownObject = { family: Family, table: string, kind: "chain" | "set", name: string, };
export type ReconcileReport = { 
/**
 * Whether anything was compared (false: the generation had not moved).
 */
checked: boolean, tablesRebuilt: number, chainsRepaired: number, setsRepaired: number, elementsAdded: number, elementsRemoved: number, 
/**
 * Chains and sets in our tables that this client did not make.
 */
unknown: Array<UnknownObject>, 
/**
 * The repair itself was refused (the kernel's words).
 */
failures: Array<OpFailure>, };
export type ChainDesc = { name: string, base: boolean, rules: number, };
export type SetDesc = { name: string, map: boolean, elements: number, };
export type TableDesc = { family: Family, name: string, chains: Array<ChainDesc>, sets: Array<SetDesc>, 
/**
 * Objects the kernel counts in the table beyond the chains and sets listed: flowtables and
 * named objects (counters, quotas, limits, ct helpers…), which only another program makes.
 */
others: number, 
/**
 * The ruleset's generation read before anything else: what the description holds is what
 * the table held at it, if the generation has not moved since (`NftClient::transact_at`).
 */
generation: number, };
export type RuleStat = { chain: string, 
/**
 * The kernel's handle of the rule (what trace events name it by).
 */
handle: number, 
/**
 * Its place in the chain, from 0.
 */
position: number, 
/**
 * Whether the whole chain reads back as this client wrote it: then `position` is the index of
 * the rule as written. False for a chain that drifted (until it is repaired) and for tables this
 * client did not write (iptables-nft's).
 */
asWritten: boolean, 
/**
 * Whether it has a counter.
 */
counted: boolean, 
/**
 * The counts of its counter (0 without one).
 */
packets: number, bytes: number, };
export type PacketInfo = { 
/**
 * 4 or 6.
 */
family: 4 | 6, src: string, dst: string, 
/**
 * The transport protocol (after any IPv6 extension headers).
 */
proto: number, 
/**
 * The IP datagram's length, as its header says.
 */
length: number, sport?: number, dport?: number, 
/**
 * TCP flags (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10…).
 */
tcpFlags?: number, icmpType?: number, icmpCode?: number, };
export type TraceEvent = { 
/**
 * The same for every event of one packet.
 */
id: number, 
/**
 * The table's family: inet, bridge, ip, ip6 (iptables-nft's tables), or another number.
 */
family: string, table: string, chain: string, 
/**
 * rule (a rule matched), return (the chain ended), policy (a base chain's policy decided).
 */
kind: 'rule' | 'return' | 'policy', handle?: number, 
/**
 * accept, drop, return, continue, jump, goto (`target` names the chain), or a number.
 */
verdict?: string, target?: string, iif?: number, oif?: number, mark?: number, packet?: PacketInfo, };
export type EtherHeader = { dst: string, src: string, ethertype: number, };
export type LogPacket = { 
/**
 * The logging rule's prefix (what says which rule, and for which port, logged it).
 */
prefix: string, 
/**
 * The netfilter hook it was logged at.
 */
hook: number, 
/**
 * When the reader received it (milliseconds since the epoch): the rate limit counts by it, not
 * by when a busy caller gets to it.
 */
at: number, mark?: number, indev?: number, outdev?: number, ether?: EtherHeader, 
/**
 * Its addresses, protocol and ports (as far as the copied bytes go).
 */
packet?: PacketInfo, };
export type Support = { 
/**
 * nf_tables with the inet family, base chains at prerouting and forward, verdict maps, marks,
 * conntrack state, notrack, route lookups (`fib`, nft_fib_inet) and Ethernet addresses: what
 * the inet table needs.
 */
inet: boolean, 
/**
 * Bridge-family base chains that set the mark: what bridged ports need.
 */
bridge: boolean, 
/**
 * Conntrack in the bridge family (nf_conntrack_bridge): filtering bridged traffic statefully
 * without br_netfilter.
 */
conntrackBridge: boolean, 
/**
 * Bridge meta keys (NFT_BRIDGE_META: ibrname and friends).
 */
bridgeMeta: boolean, 
/**
 * A conntrack zone set from a rule (CONFIG_NF_CONNTRACK_ZONES): what `firewall.conntrackZoneBridges`
 * needs.
 */
conntrackZones: boolean, 
/**
 * Why something is missing, as the kernel said it.
 */
notes: Array<string>, };
