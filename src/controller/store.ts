// The controller's state: groups, rules, ports and host bindings, kept in LMDB (the `lmdb` package,
// prebuilt binaries from the npm registry) so that a restart loses nothing. LMDB lets several
// controller processes on one host open the same store: writers are serialized across processes and
// every read sees one committed snapshot, so any of them can answer a sync request.
//
// Every change is one transaction that also writes the messages announcing it to an outbox; the
// relay (relay.ts) publishes them and only then deletes them, so a crash or a lost broker connection
// between commit and publish delays an update but never loses it.
//
// Membership is derived and counted per address, so an address shared by two ports stays while one
// remains, and a port change costs O(port), not O(group). A group no port can name (a Neutron address
// group) has its members set explicitly instead (setGroupMembers). A port without a host (unbound) is
// a member of its groups but belongs to no host: it is indexed and announced nowhere.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { open, type RootDatabase } from 'lmdb';
import type { LogResource, Port, PortInput, SecurityGroupLog, SecurityGroupRuleInput } from '../domain/model.js';
import type { SecurityGroupRule } from '../domain/model.js';
import type { UpdateMessage } from '../protocol/messages.js';
import { portMemberAddresses, validateId, validateLogResource, validateLogs, validateMembers, validatePort, validateRules } from '../domain/validate.js';

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
  /** The security-group logs the group carries to its ports' hosts (src/controller/network-logs.ts),
   *  and their revision (bumped by every change of them). */
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

/** A message written with the change it announces, waiting to be published. */
export interface OutboxEntry {
  key: OutboxKey;
  /** The store handle (one per open) that wrote it. */
  owner: string;
  at: number;
  message: UpdateMessage;
}

// Keys are arrays (ordered by lmdb): ['g', group], ['p', port], ['h', host, port] (ports by host),
// ['m', group, address] → count, ['o', owner, seq] → outbox entry. Ids are arbitrary strings, so a
// range read also checks that each key's id is exactly the one asked for.
type OutboxKey = [string, string, number];
const G = 'g';
const P = 'p';
const H = 'h';
const M = 'm';
const O = 'o';
/** ['l', log id] → a security-group log resource (no message of its own: its groups' logs are). */
const L = 'l';

export interface StoreOptions {
  /** fsync every commit (default true). Off, a crash of the OS may lose the last commits. */
  sync?: boolean;
}

export class Store {
  /** Identifies this handle's outbox entries; a new one per open. */
  readonly owner = randomBytes(6).toString('hex');
  private seq = 0;
  private constructor(private readonly db: RootDatabase) {}

  static async open(dir: string, opts: StoreOptions = {}): Promise<Store> {
    fs.mkdirSync(dir, { recursive: true });
    const db = open({ path: path.join(dir, 'store.mdb'), encoding: 'json', noSync: opts.sync === false, compression: false });
    return new Store(db);
  }

  async close(): Promise<void> {
    await this.db.close();
  }

  // ---- reads (each synchronous run of them sees one committed snapshot) ----

  group(id: string): GroupRecord | undefined {
    const g = this.db.get([G, id]) as GroupRecord | undefined;
    return g && !g.deleted ? g : undefined;
  }

  /** The group's record even if deleted or never created (ports may name it first): its revisions. */
  groupRevisions(id: string): { revision: number; membersRevision: number } {
    const g = this.db.get([G, id]) as GroupRecord | undefined;
    return { revision: g?.revision ?? 0, membersRevision: g?.membersRevision ?? 0 };
  }

  groups(): GroupRecord[] {
    return [...this.db.getRange({ start: [G], end: [G + '\u0000'] })].map((e) => e.value as GroupRecord).filter((g) => !g.deleted);
  }

  port(id: string): PortRecord | undefined {
    return this.db.get([P, id]) as PortRecord | undefined;
  }

  ports(): PortRecord[] {
    return [...this.db.getRange({ start: [P], end: [P + '\u0000'] })].map((e) => e.value as PortRecord);
  }

  portsOnHost(host: string): PortRecord[] {
    return this.idsUnder(H, host).map((id) => this.port(id)).filter((p): p is PortRecord => !!p);
  }

  membersOf(groupId: string): string[] {
    return this.idsUnder(M, groupId);
  }

  private idsUnder(kind: string, id: string): string[] {
    const out: string[] = [];
    for (const k of this.db.getKeys({ start: [kind, id], end: [kind, id + '\u0000'] })) {
      const key = k as string[];
      if (key[1] === id && typeof key[2] === 'string') out.push(key[2]);
    }
    return out;
  }

  logResources(): LogResource[] {
    return [...this.db.getRange({ start: [L], end: [L + '\u0000'] })].map((e) => e.value as LogResource);
  }

  logResource(id: string): LogResource | undefined {
    return this.db.get([L, id]) as LogResource | undefined;
  }

  /** Entries waiting in the outbox, of every controller sharing the store. */
  outboxDepth(): number {
    return this.db.getKeysCount({ start: [O], end: [O + '\u0000'] });
  }

  outbox(): OutboxEntry[] {
    return [...this.db.getRange({ start: [O], end: [O + '\u0000'] })].map(({ key, value }) => {
      const k = key as OutboxKey;
      const v = value as { at: number; message: UpdateMessage };
      return { key: k, owner: k[1], at: v.at, message: v.message };
    });
  }

  // ---- changes: one transaction each, outbox included ----

  /** Validated (src/domain/validate.ts) before anything is written: the store never holds what an
   *  agent would refuse. Throws ValidationError. */
  async putGroup(id: string, stateful: boolean, rulesIn: SecurityGroupRuleInput[]): Promise<GroupRecord> {
    validateId('security group id', id);
    const rules: SecurityGroupRule[] = validateRules(rulesIn, id);
    return this.db.transaction(() => {
      const g: GroupRecord = { ...this.groupForWrite(id), stateful, rules, deleted: false };
      g.revision++;
      this.db.put([G, id], g);
      this.enqueue({ v: 1, type: 'group.rules', groupId: id, revision: g.revision, stateful, rules });
      return g;
    });
  }

  /** Deletes a group; undefined if there was none. */
  async deleteGroup(id: string): Promise<GroupRecord | undefined> {
    return this.db.transaction(() => {
      const cur = this.db.get([G, id]) as GroupRecord | undefined;
      if (!cur || cur.deleted) return undefined;
      const g: GroupRecord = { ...cur, rules: [], deleted: true, revision: cur.revision + 1 };
      this.db.put([G, id], g);
      this.enqueue({ v: 1, type: 'group.deleted', groupId: id, revision: g.revision });
      return g;
    });
  }

  /** Creates, updates or (with `next` undefined) deletes a port; returns the member changes it made. */
  async putPort(id: string, nextIn: PortInput | undefined): Promise<{ old?: PortRecord; port?: PortRecord; changes: MemberChange[] }> {
    validateId('port id', id);
    const next: Port | undefined = nextIn && validatePort({ ...nextIn, id });
    return this.db.transaction(() => {
      const old = this.port(id);
      const delta = new Map<string, { added: Set<string>; removed: Set<string> }>();
      if (old) {
        this.count(old, -1, delta);
        if (old.host) this.db.remove([H, old.host, id]);
      }
      let port: PortRecord | undefined;
      if (next) {
        port = { ...next, id, revision: (old?.revision ?? 0) + 1 };
        this.db.put([P, id], port);
        if (port.host) this.db.put([H, port.host, id], 1);
        this.count(port, +1, delta);
      } else {
        this.db.remove([P, id]);
      }
      const changes: MemberChange[] = [];
      for (const [gid, d] of delta) {
        if (!d.added.size && !d.removed.size) continue;
        const g = this.groupForWrite(gid);
        const change = { groupId: gid, baseRevision: g.membersRevision, revision: g.membersRevision + 1, added: [...d.added], removed: [...d.removed] };
        g.membersRevision = change.revision;
        this.db.put([G, gid], g);
        changes.push(change);
        this.enqueue({ v: 1, type: 'group.members', ...change });
      }
      if (old?.host && (!port || old.host !== port.host)) {
        this.enqueue({ v: 1, type: 'port.unbound', host: old.host, portId: id, revision: port?.revision ?? old.revision + 1 });
      }
      if (port?.host) {
        const updated = !!old && old.host === port.host;
        this.enqueue({ v: 1, type: updated ? 'port.updated' : 'port.bound', host: port.host, port, revision: port.revision });
      }
      return { old, port, changes };
    });
  }

  /** Sets the members of a group whose members no port derives (a Neutron address group, `ag:<id>`):
   *  one delta with what was added and removed, or undefined when nothing changed. Ports never name
   *  such a group, so the two ways of making members never meet in one group. Throws ValidationError. */
  async setGroupMembers(id: string, addresses: string[]): Promise<MemberChange | undefined> {
    validateId('security group id', id);
    const want = new Set(validateMembers(addresses, `members of ${id}`));
    return this.db.transaction(() => {
      const have = new Set(this.membersOf(id));
      const added = [...want].filter((a) => !have.has(a));
      const removed = [...have].filter((a) => !want.has(a));
      if (!added.length && !removed.length) return undefined;
      for (const a of added) this.db.put([M, id, a], 1);
      for (const a of removed) this.db.remove([M, id, a]);
      const g = this.groupForWrite(id);
      const change = { groupId: id, baseRevision: g.membersRevision, revision: g.membersRevision + 1, added, removed };
      g.membersRevision = change.revision;
      this.db.put([G, id], g);
      this.enqueue({ v: 1, type: 'group.members', ...change });
      return change;
    });
  }

  /** Stores a log resource (validated); what it means for groups is written by putGroupLogs. */
  async putLogResource(input: unknown): Promise<LogResource> {
    const r = validateLogResource(input);
    await this.db.put([L, r.id], r);
    return r;
  }

  async deleteLogResource(id: string): Promise<boolean> {
    return this.db.remove([L, id]);
  }

  /** Sets the security-group logs a group carries (validated): one `group.logs` message when they
   *  changed; false when they had not. */
  async putGroupLogs(id: string, logsIn: SecurityGroupLog[]): Promise<boolean> {
    validateId('security group id', id);
    const logs = validateLogs(logsIn, id);
    return this.db.transaction(() => {
      const g = this.groupForWrite(id);
      if (JSON.stringify(g.logs ?? []) === JSON.stringify(logs)) return false;
      g.logs = logs;
      g.logsRevision = (g.logsRevision ?? 0) + 1;
      this.db.put([G, id], g);
      this.enqueue({ v: 1, type: 'group.logs', groupId: id, revision: g.logsRevision, logs });
      return true;
    });
  }

  /** Removes published outbox entries. */
  async ackOutbox(keys: OutboxKey[]): Promise<void> {
    if (keys.length === 0) return;
    await this.db.transaction(() => {
      for (const k of keys) this.db.remove(k);
    });
  }

  // ---- inside a transaction ----

  private groupForWrite(id: string): GroupRecord {
    // A port may name a group before the group's rules are created: membership is tracked anyway.
    return { ...((this.db.get([G, id]) as GroupRecord | undefined) ?? { id, stateful: true, rules: [], revision: 0, membersRevision: 0 }) };
  }

  private enqueue(message: UpdateMessage): void {
    this.db.put([O, this.owner, ++this.seq], { at: Date.now(), message });
  }

  /** Adds (+1) or removes (-1) a port's addresses in its groups' counts; records in `delta` which
   *  addresses appeared (count 0 → 1) or disappeared (1 → 0). */
  private count(p: Port, by: 1 | -1, delta: Map<string, { added: Set<string>; removed: Set<string> }>): void {
    const addrs = portMemberAddresses(p);
    for (const g of new Set(p.securityGroups)) {
      const d = delta.get(g) ?? { added: new Set<string>(), removed: new Set<string>() };
      delta.set(g, d);
      for (const a of addrs) {
        const key = [M, g, a];
        const before = (this.db.get(key) as number | undefined) ?? 0;
        const after = before + by;
        if (after <= 0) this.db.remove(key);
        else this.db.put(key, after);
        if (before === 0 && after > 0) {
          if (!d.removed.delete(a)) d.added.add(a);
        } else if (before > 0 && after <= 0) {
          if (!d.added.delete(a)) d.removed.add(a);
        }
      }
    }
  }
}

