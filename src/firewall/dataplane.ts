// The seam between the engine core and a kernel backend. The core plans *what* each port's filter and
// each member set must be (backend-neutral, below); a Dataplane decides *how*: iptables chains and
// ipsets (iptables/), nf_tables (nftables/), or memory (tests, simulations). A backend reports which
// objects it could not apply, and the core quarantines those alone while the rest converges.
import type { Ethertype, SecurityGroupRule } from '../domain/model.js';
import type { Family } from '../domain/address.js';
import type { AddressPair } from './cuts.js';
import type { RuleTag } from './policy.js';

export type Mode = 'bridged' | 'routed';

/** A member set: the addresses of one group, one family. */
export interface SetRef {
  groupId: string;
  family: Family;
}

export function setKey(ref: SetRef): string {
  return `${ref.family}:${ref.groupId}`;
}

/** A group rule as a port's filter needs it: identical rules of the port's groups are one, holding
 *  the ids of all (what counters, trace and explain name it by). Rules naming a group refer to its
 *  set of the rule's family. */
export type FilterRule = Omit<SecurityGroupRule, 'id'> & {
  ruleIds: string[];
  /** The connections it admits are logged (a security-group log with ACCEPT applies to the port). */
  logged?: true;
};

/** Security-group logging on this host: the NFLOG group logging rules send to, and the rate limit
 *  (packets a second, and burst) the kernel applies to each logging rule. */
export interface LogSettings {
  group: number;
  rateLimit: number;
  burstLimit: number;
}

/** Everything about one port's filtering, independent of the backend. */
export interface PortFilter {
  portId: string;
  device: string;
  /** False when port security is off: the port's traffic is not filtered at all. */
  filtered: boolean;
  mac: string;
  /** Connection tracking for the port's traffic (a port whose groups are all stateless is not tracked). */
  stateful: boolean;
  /** The port's fixed IPs (not its allowed pairs): where DHCP replies may go, and whether it takes
   *  router advertisements (policy.ts). */
  fixedIps: string[];
  /** (source address or network, source MAC) pairs the port may send from: anti-spoofing. */
  sources: { ip: string; mac: string }[];
  /** The rules of the port's groups, each distinct rule once, in group order. */
  rules: FilterRule[];
  /** Sets the rules name (each once). */
  sets: SetRef[];
  /** Security-group logging of the port, when some log applies to it: its accepted connections (of
   *  the rules marked `logged`) and its drops. */
  log?: { accept: boolean; drop: boolean };
  /** A stable text of all of the above: two filters are equal when their keys are. */
  key: string;
}

export interface SetFill extends SetRef {
  members: string[];
}

export interface SetDelta extends SetRef {
  add: string[];
  del: string[];
  /** The whole list after the delta, for a backend that must rewrite the set (e.g. to grow it). */
  members(): string[];
}

/** One apply's work, in the order a backend must make it visible: sets before the rules that name
 *  them, filters, sets no rule names any more, then connection cuts. */
export interface ChangeSet {
  sets: { fill: SetFill[]; delta: SetDelta[]; destroy: SetRef[] };
  filters: { upsert: PortFilter[]; remove: { portId: string; device: string }[] };
  cuts: AddressPair[];
}

export interface ApplyOutcome {
  /** Sets the kernel refused (nothing of them changed); rules naming them were not written. */
  failedSets: { ref: SetRef; error: Error }[];
  /** Filters the kernel refused: their previous version stays (a new port's traffic is dropped). */
  failedFilters: { portId: string; error: Error }[];
  conntrackDeleted: number;
}

/** What the core believes the kernel holds: every object a backend acknowledged. */
export interface AppliedView {
  filters: ReadonlyMap<string, PortFilter>;
  sets: ReadonlyMap<string, SetRef>;
  /** Current members of an applied set (the state's, which the set was made to hold). */
  members(ref: SetRef): string[];
}

export interface ReconcileReport {
  setsRepaired: number;
  chainsRepaired: number;
  staleRemoved: number;
}

export interface DataplaneStats {
  /** Whole-set writes, set delta batches, and rule transactions (e.g. iptables-restore runs). */
  setSyncs: number;
  setDeltas: number;
  restores: number;
  /** Repairs the backend made on its own (the nftables backend's notification watch). */
  repairs?: number;
}

export interface DataplaneStatus {
  sets: { name: string; groupId: string; family: Family; size: number }[];
  chains: { v4: string[]; v6: string[] };
}

/** Which of a port's chains. */
export type PortChainKind = 'ingress' | 'egress' | 'anti-spoofing';

/** One rule of a port's chains as the kernel counted it (a rule with no counter: none). */
export interface RuleCount {
  chain: PortChainKind;
  tag: RuleTag;
  packets: number;
  bytes: number;
}

/** Where a table of nf_tables is: its family (iptables-nft's tables are ip / ip6) and name. */
export type TraceFamily = 'inet' | 'bridge' | 'ip' | 'ip6';

/** A port's chains as the kernel holds them and what each of their rules is, and the backend's other
 *  chains with what each does: `sg-agent trace` maps the kernel's trace events back by it. */
export interface PortRuleMap {
  chains: { family: TraceFamily; table: string; chain: string; kind: PortChainKind; tags: RuleTag[] }[];
  shared: { family: TraceFamily; table: string; chain: string; what: string }[];
  /** Why the kernel cannot trace this backend's chains, if it cannot. */
  untraceable?: string;
}

export interface Dataplane {
  readonly name: string;
  readonly stats: DataplaneStats;
  /** The least time between structural applies this backend asks for when none is configured: a
   *  backend whose rule writes are costly wants them batched (iptables-restore), one whose writes
   *  cost O(change) needs no pacing (0). */
  readonly structureIntervalMs?: number;
  apply(changes: ChangeSet): Promise<ApplyOutcome>;
  /** Reads the kernel back and repairs whatever differs from `expected`; without `full`, set members
   *  may be counted rather than compared. */
  reconcile(expected: AppliedView, opts: { full: boolean }): Promise<ReconcileReport>;
  /** Removes objects of ours that `expected` does not hold (a previous run's); returns the count. */
  removeStale(expected: AppliedView): Promise<number>;
  /** Removes every object of ours; what cannot be removed (referenced by others) is reported. */
  cleanup(): Promise<{ removed: number; left: string[] }>;
  status(expected: AppliedView): DataplaneStatus;
  /** What each rule of the filtered ports' chains (of `portIds`, or all) counted, read from the
   *  kernel; a chain that does not read back as written (drift not yet repaired) is left out. */
  counters?(portIds?: readonly string[]): Promise<Map<string, RuleCount[]>>;
  /** The port's chains and what their rules are (undefined: the port has none in the kernel). */
  portRules?(portId: string): Promise<PortRuleMap | undefined>;
  /** For a backend whose rules depend on the host's devices (the iptables backend's zone rule per
   *  bridge): `changed` is to be called when they change, once the backend hears them. */
  onDevicesChanged?(changed: () => void): void;
  /** Brings what depends on the host's devices up to date (called with no apply alongside); true
   *  if the kernel was changed. */
  refreshDevices?(): Promise<boolean>;
  close(): Promise<void>;
}

export function familyOfEthertype(e: Ethertype): Family {
  return e === 'IPv4' ? 4 : 6;
}
