// The controller's state: groups, rules, ports and host bindings, kept in an embedded LevelDB
// (classic-level, prebuilt binaries inside its npm package) so that a restart loses nothing. Every
// change is written before it is published. Membership is derived: a group's members are the
// addresses of every port in it, counted so that an address shared by two ports stays while one remains.
import { ClassicLevel } from 'classic-level';
import type { Port, SecurityGroupRule } from '../model.js';

export interface GroupRecord {
  id: string;
  stateful: boolean;
  rules: SecurityGroupRule[];
  /** Revision of the rules (and of deletion). */
  revision: number;
  /** Revision of the member list; bumped by every change of it. */
  membersRevision: number;
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

export class Store {
  readonly groups = new Map<string, GroupRecord>();
  readonly ports = new Map<string, PortRecord>();
  /** groupId → address → how many ports of the group hold it. */
  private readonly members = new Map<string, Map<string, number>>();
  private constructor(private readonly db: ClassicLevel<string, unknown>) {}

  static async open(dir: string): Promise<Store> {
    const db = new ClassicLevel<string, unknown>(dir, { valueEncoding: 'json' });
    await db.open();
    const s = new Store(db);
    for await (const [k, v] of db.iterator()) {
      if (k.startsWith('g:')) s.groups.set(k.slice(2), v as GroupRecord);
      else if (k.startsWith('p:')) s.ports.set(k.slice(2), v as PortRecord);
    }
    for (const p of s.ports.values()) s.count(p, +1);
    return s;
  }

  async close(): Promise<void> {
    await this.db.close();
  }

  membersOf(groupId: string): string[] {
    return [...(this.members.get(groupId)?.keys() ?? [])];
  }

  /** Adds (+1) or removes (-1) a port's addresses in its groups' counts; records in `delta` which
   *  addresses appeared (count 0 → 1) or disappeared (1 → 0), so a change costs O(port), not O(group). */
  private count(p: Port, by: 1 | -1, delta?: Map<string, { added: Set<string>; removed: Set<string> }>): void {
    const addrs = new Set([...p.fixedIps, ...p.allowedAddressPairs.map((a) => a.ipAddress)]);
    for (const g of new Set(p.securityGroups)) {
      const m = this.members.get(g) ?? new Map<string, number>();
      this.members.set(g, m);
      const d = delta?.get(g) ?? { added: new Set<string>(), removed: new Set<string>() };
      delta?.set(g, d);
      for (const a of addrs) {
        const before = m.get(a) ?? 0;
        const after = before + by;
        if (after <= 0) m.delete(a);
        else m.set(a, after);
        if (before === 0 && after > 0) {
          if (!d.removed.delete(a)) d.added.add(a);
        } else if (before > 0 && after <= 0) {
          if (!d.added.delete(a)) d.removed.add(a);
        }
      }
    }
  }

  private groupRecord(id: string): GroupRecord {
    const g = this.groups.get(id);
    if (g) return g;
    // A port may name a group before the group's rules are created: membership is tracked anyway.
    const fresh: GroupRecord = { id, stateful: true, rules: [], revision: 0, membersRevision: 0 };
    this.groups.set(id, fresh);
    return fresh;
  }

  async putGroup(id: string, stateful: boolean, rules: SecurityGroupRule[]): Promise<GroupRecord> {
    const g = { ...this.groupRecord(id), stateful, rules };
    g.revision++;
    this.groups.set(id, g);
    await this.db.put(`g:${id}`, g);
    return g;
  }

  async deleteGroup(id: string): Promise<GroupRecord | undefined> {
    const g = this.groups.get(id);
    if (!g) return undefined;
    this.groups.delete(id);
    await this.db.del(`g:${id}`);
    return { ...g, revision: g.revision + 1 };
  }

  /** Creates, updates or (with `next` undefined) deletes a port; returns the member changes it made. */
  async putPort(id: string, next: Port | undefined): Promise<{ old?: PortRecord; port?: PortRecord; changes: MemberChange[] }> {
    const old = this.ports.get(id);
    const delta = new Map<string, { added: Set<string>; removed: Set<string> }>();
    if (old) this.count(old, -1, delta);
    let port: PortRecord | undefined;
    if (next) {
      port = { ...next, id, revision: (old?.revision ?? 0) + 1 };
      this.ports.set(id, port);
      this.count(port, +1, delta);
    } else {
      this.ports.delete(id);
    }
    const changes: MemberChange[] = [];
    const ops: ({ type: 'put'; key: string; value: unknown } | { type: 'del'; key: string })[] = [];
    for (const [gid, d] of delta) {
      if (!d.added.size && !d.removed.size) continue;
      const g = this.groupRecord(gid);
      const base = g.membersRevision;
      g.membersRevision++;
      ops.push({ type: 'put', key: `g:${gid}`, value: g });
      changes.push({ groupId: gid, baseRevision: base, revision: g.membersRevision, added: [...d.added], removed: [...d.removed] });
    }
    ops.push(port ? { type: 'put', key: `p:${id}`, value: port } : { type: 'del', key: `p:${id}` });
    await this.db.batch(ops);
    return { old, port, changes };
  }
}
