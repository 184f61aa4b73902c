// The controller's records and the one set of rules for changing them, whichever store holds them
// (store.ts: LMDB, embedded; etcd-store.ts: etcd, replicated). A store provides reads of one
// committed snapshot and transactions; everything else — revisions, member counts, the outbox
// messages announcing each change — is decided here, inside the transaction, so that one change and
// its messages commit together or not at all, and a group's revisions only ever rise.
//
// Membership is derived and counted per address, so an address shared by two ports stays while one
// remains, and a port change costs O(port), not O(group). A group no port can name (a Neutron address
// group) has its members set explicitly instead (setGroupMembers). A port without a host (unbound) is
// a member of its groups but belongs to no host: it is indexed and announced nowhere.
//
// Security-group log resources are records of their own, announced by nothing: what they mean for
// each group (network-logs.ts) is written into the groups' records and announced as `group.logs`.
import type { LogResource, Port, PortInput, SecurityGroupLog, SecurityGroupRule, SecurityGroupRuleInput } from '../domain/model.js';
import type { UpdateMessage } from '../protocol/messages.js';
import { portAsSeenBy, portHosts } from '../domain/placement.js';
import {
  portMemberAddresses,
  validateId,
  validateLogResource,
  validateLogs,
  validateMembers,
  validatePort,
  validateRules,
  ValidationError,
} from '../domain/validate.js';

/** Writes a member delta makes beside its members': the group's record and the delta's message. */
const MEMBER_CHANGE_OVERHEAD = 2;

export interface GroupRecord {
  id: string;
  stateful: boolean;
  rules: SecurityGroupRule[];
  /** Revision of the rules (and of deletion). */
  revision: number;
  /** Revision of the member list; bumped by every change of it. */
  membersRevision: number;
  /** A deleted group stays as a tombstone so that its revisions keep rising if it is created again. */
  deleted?: boolean;
  /** The security-group logs the group carries to its ports' hosts (network-logs.ts), and their
   *  revision, bumped by every change of them; both absent for a group that never carried any. */
  logs?: SecurityGroupLog[];
  logsRevision?: number;
}

export interface PortRecord extends Port {
  revision: number;
}

export interface MemberChange {
  groupId: string;
  baseRevision: number;
  revision: number;
  added: string[];
  removed: string[];
}

/** A store's own handle on an outbox entry, handed back to `ackOutbox`. */
export type OutboxKey = readonly (string | number)[];

/** A message written with the change it announces, waiting to be published. */
export interface OutboxEntry {
  key: OutboxKey;
  /** The store handle (one per open) that wrote it. */
  owner: string;
  at: number;
  message: UpdateMessage;
}

/** Records by key: a group, a port, a security-group log resource, a port of a host (index), the
 *  count of ports giving a group an address. Ids are arbitrary strings: a store keeps each element of
 *  a key apart. */
export type RecordKey =
  | readonly ['g', string]
  | readonly ['p', string]
  | readonly ['l', string]
  | readonly ['h', string, string]
  | readonly ['m', string, string];

/** Reads of one committed snapshot. */
export interface RecordView {
  get(key: RecordKey): unknown;
  /** The last elements of the keys [kind, id, *]: a host's ports, a group's member addresses. */
  idsUnder(kind: 'h' | 'm', id: string): string[];
}

/** A transaction: its reads see its own writes; its messages commit with it. */
export interface RecordTx extends RecordView {
  /** A group's member addresses (not their counts), read as one value guarded by the group's record:
   *  every change of the set writes that record (`putPort`, `setGroupMembers`), so a transaction that
   *  reads the record too conflicts with any such change without reading each member. Read member by
   *  member, a group of more addresses than etcd takes operations in one transaction could never be
   *  changed. */
  memberIds(groupId: string): string[];
  put(key: RecordKey, value: unknown): void;
  remove(key: RecordKey): void;
  enqueue(message: UpdateMessage): void;
}

/** The store cannot take a change now (etcd without quorum, unreachable, or too busy): the change was
 *  not made, or (a request that timed out) may have been; the caller retries. 503 at the admin API. */
export class StoreUnavailableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StoreUnavailableError';
  }
}

/** A change needs more operations than the store takes in one transaction (etcd's --max-txn-ops):
 *  refused like input beyond a limit (a ValidationError: 400 at the admin API, reported and left out by
 *  the Neutron reconciler), since asking again cannot help. */
export class ChangeTooLargeError extends ValidationError {
  constructor(message: string) {
    super(message);
    this.name = 'ChangeTooLargeError';
  }
}

/** Which store, and whether it can take changes now (`GET /healthz`). */
export interface StoreHealth {
  store: 'lmdb' | 'etcd';
  /** Whether a majority of the store's members answers (always true for the embedded store). */
  quorum: boolean;
  [detail: string]: unknown;
}

/** The store's whole content, as `sg-controller store export` writes it and `import` reads it. */
export interface StoreSnapshot {
  format: 'sg-controller-store';
  version: 1;
  groups: GroupRecord[];
  ports: PortRecord[];
  /** Group → address → how many ports (or an explicit member list: 1) give the group that address. */
  members: Record<string, Record<string, number>>;
  /** Security-group log resources (absent in an export made before there were any). */
  logResources?: LogResource[];
  /** Messages not yet published, in commit order. */
  outbox: UpdateMessage[];
}

/** What the controller, the relay, the sync RPC and the Neutron source use of a store. */
export interface ControllerStore {
  readonly kind: 'lmdb' | 'etcd';
  /** Identifies this handle's outbox entries; a new one per open. */
  readonly owner: string;
  group(id: string): GroupRecord | undefined;
  groupRevisions(id: string): { revision: number; membersRevision: number };
  groups(): GroupRecord[];
  port(id: string): PortRecord | undefined;
  ports(): PortRecord[];
  /** The ports the host filters, each as the host is told of it (src/domain/placement.ts). */
  portsOnHost(host: string): PortRecord[];
  membersOf(groupId: string): string[];
  logResources(): LogResource[];
  logResource(id: string): LogResource | undefined;
  outboxDepth(): number;
  /** Entries waiting in the outbox, of every controller sharing the store, in commit order. */
  outbox(): OutboxEntry[];
  putGroup(
    id: string,
    stateful: boolean,
    rules: SecurityGroupRuleInput[],
    unchanged?: (cur: GroupRecord | undefined) => boolean,
  ): Promise<GroupRecord>;
  deleteGroup(id: string): Promise<GroupRecord | undefined>;
  putPort(
    id: string,
    next: PortInput | undefined,
    unchanged?: (cur: PortRecord | undefined) => boolean,
  ): Promise<{ old?: PortRecord; port?: PortRecord; changes: MemberChange[] }>;
  setGroupMembers(id: string, addresses: string[]): Promise<MemberChange | undefined>;
  putLogResource(input: unknown): Promise<boolean>;
  deleteLogResource(id: string): Promise<boolean>;
  putGroupLogs(id: string, logs: SecurityGroupLog[]): Promise<boolean>;
  ackOutbox(keys: OutboxKey[]): Promise<void>;
  /** Called on every outbox entry any controller of the store writes, if the store can tell (etcd's
   *  watch); a store that cannot (LMDB across processes) leaves the relay to look. */
  onOutboxWrite?(listener: () => void): void;
  health(): StoreHealth;
  /** The whole store, from one snapshot. */
  snapshot(): StoreSnapshot;
  /** Makes the store hold exactly `snap` (writing only what differs); for a store no controller runs on. */
  restore(snap: StoreSnapshot): Promise<void>;
  close(): Promise<void>;
}

/** The reads and the changes of a store, in terms of the few primitives each store provides. */
export abstract class RecordStore implements Omit<
  ControllerStore,
  'kind' | 'owner' | 'outboxDepth' | 'outbox' | 'ackOutbox' | 'health' | 'restore' | 'close'
> {
  protected abstract readonly view: RecordView;
  /** Every record of one kind, from the same snapshot as `view`. */
  protected abstract values(kind: 'g' | 'p' | 'l'): Iterable<unknown>;
  /** Runs `f` in one transaction and commits it, messages included; f is synchronous and may run
   *  more than once (a store may retry it on a newer snapshot after a conflict). */
  protected abstract transact<R>(f: (tx: RecordTx) => R): Promise<R>;
  protected abstract outboxMessages(): UpdateMessage[];

  // ---- reads (each synchronous run of them sees one committed snapshot) ----

  group(id: string): GroupRecord | undefined {
    const g = this.view.get(['g', id]) as GroupRecord | undefined;
    return g && !g.deleted ? g : undefined;
  }

  /** The group's record even if deleted or never created (ports may name it first): its revisions. */
  groupRevisions(id: string): { revision: number; membersRevision: number } {
    const g = this.view.get(['g', id]) as GroupRecord | undefined;
    return { revision: g?.revision ?? 0, membersRevision: g?.membersRevision ?? 0 };
  }

  groups(): GroupRecord[] {
    return [...this.values('g')].map((g) => g as GroupRecord).filter((g) => !g.deleted);
  }

  port(id: string): PortRecord | undefined {
    return this.view.get(['p', id]) as PortRecord | undefined;
  }

  ports(): PortRecord[] {
    return [...this.values('p')] as PortRecord[];
  }

  portsOnHost(host: string): PortRecord[] {
    return this.view
      .idsUnder('h', host)
      .map((id) => this.port(id))
      .filter((p): p is PortRecord => !!p)
      .map((p) => portAsSeenBy(p, host));
  }

  membersOf(groupId: string): string[] {
    return this.view.idsUnder('m', groupId);
  }

  logResources(): LogResource[] {
    return [...this.values('l')] as LogResource[];
  }

  logResource(id: string): LogResource | undefined {
    return this.view.get(['l', id]) as LogResource | undefined;
  }

  snapshot(): StoreSnapshot {
    const groups = [...this.values('g')] as GroupRecord[];
    const members: StoreSnapshot['members'] = {};
    for (const g of groups) {
      const counts: Record<string, number> = {};
      for (const a of this.view.idsUnder('m', g.id)) counts[a] = this.view.get(['m', g.id, a]) as number;
      if (Object.keys(counts).length) members[g.id] = counts;
    }
    const logResources = this.logResources();
    return {
      format: 'sg-controller-store',
      version: 1,
      groups,
      ports: this.ports(),
      members,
      ...(logResources.length ? { logResources } : {}),
      outbox: this.outboxMessages(),
    };
  }

  // ---- changes: one transaction each, outbox included ----

  /** Validated (src/domain/validate.ts) before anything is written: the store never holds what an
   *  agent would refuse. Throws ValidationError. `unchanged`, judged inside the transaction, says the
   *  stored group is already what is wanted: nothing is written (writers that may race to write the
   *  same thing, Neutron sources of several controllers, then write it once). */
  async putGroup(
    id: string,
    stateful: boolean,
    rulesIn: SecurityGroupRuleInput[],
    unchanged?: (cur: GroupRecord | undefined) => boolean,
  ): Promise<GroupRecord> {
    validateId('security group id', id);
    const rules: SecurityGroupRule[] = validateRules(rulesIn, id);
    return this.transact((tx) => {
      const cur = tx.get(['g', id]) as GroupRecord | undefined;
      if (unchanged?.(cur && !cur.deleted ? cur : undefined)) return cur!;
      const g: GroupRecord = { ...groupForWrite(tx, id), stateful, rules, deleted: false };
      g.revision++;
      tx.put(['g', id], g);
      tx.enqueue({ v: 1, type: 'group.rules', groupId: id, revision: g.revision, stateful, rules });
      return g;
    });
  }

  /** Deletes a group; undefined if there was none. */
  async deleteGroup(id: string): Promise<GroupRecord | undefined> {
    return this.transact((tx) => {
      const cur = tx.get(['g', id]) as GroupRecord | undefined;
      if (!cur || cur.deleted) return undefined;
      // Its logs go with it (the agents forget them on group.deleted); their revision stays, to rise.
      const g: GroupRecord = { ...cur, rules: [], deleted: true, revision: cur.revision + 1, ...(cur.logs ? { logs: [] } : {}) };
      tx.put(['g', id], g);
      tx.enqueue({ v: 1, type: 'group.deleted', groupId: id, revision: g.revision });
      return g;
    });
  }

  /** Creates, updates or (with `next` undefined) deletes a port; returns the member changes it made.
   *  `unchanged` as for putGroup. */
  async putPort(
    id: string,
    nextIn: PortInput | undefined,
    unchanged?: (cur: PortRecord | undefined) => boolean,
  ): Promise<{ old?: PortRecord; port?: PortRecord; changes: MemberChange[] }> {
    validateId('port id', id);
    const next: Port | undefined = nextIn && validatePort({ ...nextIn, id });
    return this.transact((tx) => {
      const old = tx.get(['p', id]) as PortRecord | undefined;
      if (unchanged?.(old)) return { old, port: old, changes: [] };
      const delta = new Map<string, { added: Set<string>; removed: Set<string> }>();
      if (old) {
        count(tx, old, -1, delta);
        for (const host of portHosts(old)) tx.remove(['h', host, id]);
      }
      let port: PortRecord | undefined;
      if (next) {
        port = { ...next, id, revision: (old?.revision ?? 0) + 1 };
        tx.put(['p', id], port);
        for (const host of portHosts(port)) tx.put(['h', host, id], 1);
        count(tx, port, +1, delta);
      } else {
        tx.remove(['p', id]);
      }
      const changes: MemberChange[] = [];
      for (const [gid, d] of delta) {
        if (!d.added.size && !d.removed.size) continue;
        const g = groupForWrite(tx, gid);
        const change = {
          groupId: gid,
          baseRevision: g.membersRevision,
          revision: g.membersRevision + 1,
          added: [...d.added],
          removed: [...d.removed],
        };
        g.membersRevision = change.revision;
        tx.put(['g', gid], g);
        changes.push(change);
        tx.enqueue({ v: 1, type: 'group.members', ...change });
      }
      const oldHosts = old ? portHosts(old) : [];
      const newHosts = port ? portHosts(port) : [];
      for (const host of oldHosts)
        if (!newHosts.includes(host))
          tx.enqueue({ v: 1, type: 'port.unbound', host, portId: id, revision: port?.revision ?? old!.revision + 1 });
      for (const host of newHosts) {
        const type = oldHosts.includes(host) ? 'port.updated' : 'port.bound';
        tx.enqueue({ v: 1, type, host, port: portAsSeenBy(port!, host), revision: port!.revision });
      }
      return { old, port, changes };
    });
  }

  /** Sets the members of a group whose members no port derives (a Neutron address group, `ag:<id>`):
   *  one delta with what was added and removed (several where one would not fit a transaction; the
   *  last is returned), or undefined when nothing changed. Ports never name such a group, so the two
   *  ways of making members never meet in one group. Throws ValidationError. */
  async setGroupMembers(id: string, addresses: string[]): Promise<MemberChange | undefined> {
    validateId('security group id', id);
    const want = new Set(validateMembers(addresses, `members of ${id}`));
    // A store that takes a bounded number of operations in one transaction (etcd) gets a change too
    // large for one as several deltas, each a transaction of its own: the removals first, so that no
    // state in between holds an address that neither the old members nor the new ones hold.
    const budget = Math.max(1, (this.operationsPerTransaction() ?? Infinity) - MEMBER_CHANGE_OVERHEAD);
    let last: MemberChange | undefined;
    for (;;) {
      const change = await this.changeMembers(id, want, budget);
      if (!change) return last;
      last = change;
    }
  }

  /** Operations one transaction of this store may hold, if it is bounded. */
  protected operationsPerTransaction(): number | undefined {
    return undefined;
  }

  /** One delta towards `want`: all of it if it fits `budget` member writes, else the next removals, or
   *  once none is left the next additions. */
  private changeMembers(id: string, want: ReadonlySet<string>, budget: number): Promise<MemberChange | undefined> {
    return this.transact((tx) => {
      const have = new Set(tx.memberIds(id));
      let added = [...want].filter((a) => !have.has(a));
      let removed = [...have].filter((a) => !want.has(a));
      if (!added.length && !removed.length) return undefined;
      if (added.length + removed.length > budget) {
        if (removed.length) [removed, added] = [removed.slice(0, budget), []];
        else added = added.slice(0, budget);
      }
      for (const a of added) tx.put(['m', id, a], 1);
      for (const a of removed) tx.remove(['m', id, a]);
      const g = groupForWrite(tx, id);
      const change = { groupId: id, baseRevision: g.membersRevision, revision: g.membersRevision + 1, added, removed };
      g.membersRevision = change.revision;
      tx.put(['g', id], g);
      tx.enqueue({ v: 1, type: 'group.members', ...change });
      return change;
    });
  }

  /** Stores a log resource (validated; throws ValidationError); false when it was already so. What
   *  it means for groups is written by putGroupLogs (network-logs.ts). */
  async putLogResource(input: unknown): Promise<boolean> {
    const r = validateLogResource(input);
    return this.transact((tx) => {
      if (JSON.stringify(tx.get(['l', r.id])) === JSON.stringify(r)) return false;
      tx.put(['l', r.id], r);
      return true;
    });
  }

  async deleteLogResource(id: string): Promise<boolean> {
    return this.transact((tx) => {
      if (tx.get(['l', id]) === undefined) return false;
      tx.remove(['l', id]);
      return true;
    });
  }

  /** Sets the security-group logs a group carries (validated): one `group.logs` message when they
   *  changed; false, and nothing written, when they had not. */
  async putGroupLogs(id: string, logsIn: SecurityGroupLog[]): Promise<boolean> {
    validateId('security group id', id);
    const logs = validateLogs(logsIn, id);
    return this.transact((tx) => {
      const g = groupForWrite(tx, id);
      if (JSON.stringify(g.logs ?? []) === JSON.stringify(logs)) return false;
      g.logs = logs;
      g.logsRevision = (g.logsRevision ?? 0) + 1;
      tx.put(['g', id], g);
      tx.enqueue({ v: 1, type: 'group.logs', groupId: id, revision: g.logsRevision, logs });
      return true;
    });
  }
}

/** The group's record to change: a port may name a group before the group's rules are created, so
 *  membership is tracked anyway. Every change of a group's member set also writes this record (its
 *  membersRevision), which is what a store's conflict check on the member list rests on. */
function groupForWrite(tx: RecordTx, id: string): GroupRecord {
  return { ...((tx.get(['g', id]) as GroupRecord | undefined) ?? { id, stateful: true, rules: [], revision: 0, membersRevision: 0 }) };
}

/** Adds (+1) or removes (-1) a port's addresses in its groups' counts; records in `delta` which
 *  addresses appeared (count 0 → 1) or disappeared (1 → 0). */
function count(tx: RecordTx, p: Port, by: 1 | -1, delta: Map<string, { added: Set<string>; removed: Set<string> }>): void {
  const addrs = portMemberAddresses(p);
  for (const g of new Set(p.securityGroups)) {
    const d = delta.get(g) ?? { added: new Set<string>(), removed: new Set<string>() };
    delta.set(g, d);
    for (const a of addrs) {
      const key = ['m', g, a] as const;
      const before = (tx.get(key) as number | undefined) ?? 0;
      const after = before + by;
      if (after <= 0) tx.remove(key);
      else tx.put(key, after);
      if (before === 0 && after > 0) {
        if (!d.removed.delete(a)) d.added.add(a);
      } else if (before > 0 && after <= 0) {
        if (!d.added.delete(a)) d.removed.add(a);
      }
    }
  }
}

/** Checks a snapshot read from a file before anything of it is written. */
export function checkSnapshot(v: unknown, from: string): StoreSnapshot {
  const s = v as Partial<StoreSnapshot>;
  if (typeof v !== 'object' || v === null || s.format !== 'sg-controller-store' || s.version !== 1) {
    throw new Error(`${from}: not an sg-controller store export (format sg-controller-store, version 1)`);
  }
  if (
    !Array.isArray(s.groups) ||
    !Array.isArray(s.ports) ||
    typeof s.members !== 'object' ||
    s.members === null ||
    !Array.isArray(s.outbox)
  ) {
    throw new Error(`${from}: an export needs groups, ports, members and outbox`);
  }
  for (const p of s.ports) validatePort(p);
  for (const g of s.groups) {
    validateId('security group id', g.id);
    validateRules(g.rules, g.id);
    if (g.logs !== undefined) validateLogs(g.logs, g.id);
  }
  if (s.logResources !== undefined) {
    if (!Array.isArray(s.logResources)) throw new Error(`${from}: logResources must be a list`);
    for (const r of s.logResources) validateLogResource(r);
  }
  return s as StoreSnapshot;
}
