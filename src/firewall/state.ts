// The one home of a host's desired firewall state: its ports, the security groups they use, and the
// member addresses of every group their rules name — each with the revision it came with, so the agent
// orders updates against it and keeps no copy of its own. Every input passes the model validator
// (src/domain/validate.ts) here, at the engine's boundary.
//
// Beside the state it records the work an apply must do, in the manner of Calico Felix's delta
// tracker: which ports and groups changed since the last apply (their filters must be planned again),
// member additions and removals per group (applied as O(change) set deltas), groups whose member set
// must be rewritten whole, and the connections the changes stopped admitting. `takeWork()` hands all of
// it to one apply; what arrives meanwhile goes to the next. Pure: no I/O, no timers.
import type { Port, PortInput, SecurityGroup, SecurityGroupInput, SecurityGroupLog } from '../domain/model.js';
import { validateGroup, validateId, validateLogs, validateMembers, validatePort, validateRevision } from '../domain/validate.js';
import { cutsForDepartedMembers, cutsForPortChange, cutsForRemovedRules, type AddressPair } from './cuts.js';

export interface MemberDelta {
  add: Set<string>;
  del: Set<string>;
}

/** What one apply takes over from the state. */
export interface Work {
  /** Ports added, changed or removed: their filters are planned again. */
  ports: Set<string>;
  /** Groups whose rules changed (or that went): every port in them is planned again. */
  groups: Set<string>;
  /** Per group: members added and removed since the last apply (groups in `resync` are not here). */
  deltas: Map<string, MemberDelta>;
  /** Groups whose member sets are rewritten whole. */
  resync: Set<string>;
  cuts: AddressPair[];
}

/** Everything the firewall needs to become, replacing what was there (a full sync). */
export interface DesiredSnapshot {
  ports: PortInput[];
  groups: SecurityGroupInput[];
  members: Record<string, string[]>;
  /** Revision of each group's member list, when known. */
  memberRevisions?: Record<string, number>;
  /** Each group's security-group logs, with their revision (a group absent has none). */
  logs?: Record<string, { logs: SecurityGroupLog[]; revision: number }>;
  /** Objects not to drop although the snapshot lacks them (quarantined: their last good version stays). */
  keep?: { ports?: string[]; groups?: string[] };
}

/** A group's security-group logs, with the revision they came with. */
export interface HeldLogs {
  logs: SecurityGroupLog[];
  revision: number;
}

interface HeldMembers {
  ips: Set<string>;
  revision: number;
}

export class HostState {
  private readonly ports = new Map<string, Port>();
  private readonly groups = new Map<string, SecurityGroup>();
  private readonly members = new Map<string, HeldMembers>();
  private readonly logs = new Map<string, HeldLogs>();
  /** Group id → ids of the local ports in it. */
  private readonly portsInGroup = new Map<string, Set<string>>();
  private work: Work = emptyWork();
  /** Bumped by every input: waiters compare it with what an apply took. */
  generation = 0;

  // ---- reads ----

  port(id: string): Port | undefined {
    return this.ports.get(id);
  }
  group(id: string): SecurityGroup | undefined {
    return this.groups.get(id);
  }
  allPorts(): IterableIterator<Port> {
    return this.ports.values();
  }
  allGroups(): ReadonlyMap<string, SecurityGroup> {
    return this.groups;
  }
  /** A group's security-group logs (undefined: none held). */
  groupLogs(groupId: string): HeldLogs | undefined {
    return this.logs.get(groupId);
  }
  /** Member addresses of a group (empty when unknown). */
  membersOf(groupId: string): ReadonlySet<string> {
    return this.members.get(groupId)?.ips ?? EMPTY;
  }
  /** Revision of a group's member list, or undefined when it is not held. */
  membersRevision(groupId: string): number | undefined {
    return this.members.get(groupId)?.revision;
  }
  hasMembers(groupId: string): boolean {
    return this.members.has(groupId);
  }
  /** Whether a change of the group's members waits for an apply (a delta, or the whole list). */
  membersWaiting(groupId: string): boolean {
    return this.work.deltas.has(groupId) || this.work.resync.has(groupId);
  }
  portIdsIn(groupId: string): ReadonlySet<string> {
    return this.portsInGroup.get(groupId) ?? EMPTY;
  }
  get pendingWork(): boolean {
    const w = this.work;
    return w.ports.size > 0 || w.groups.size > 0 || w.deltas.size > 0 || w.resync.size > 0 || w.cuts.length > 0;
  }
  /** Whether a port's filter waits to be planned again (it, or one of its groups, changed). */
  portPending(portId: string): boolean {
    if (this.work.ports.has(portId)) return true;
    const p = this.ports.get(portId);
    return !!p && this.work.groups.size > 0 && p.securityGroups.some((g) => this.work.groups.has(g));
  }

  /** Whether the pending work is membership alone (no filter to plan again). */
  get structureChanged(): boolean {
    return this.work.ports.size > 0 || this.work.groups.size > 0;
  }

  // ---- inputs (validated here) ----

  setPort(input: PortInput): Port {
    const p = validatePort(input);
    const old = this.ports.get(p.id);
    if (old) {
      this.work.cuts.push(...cutsForPortChange(this.view(), old, p));
      this.unindex(old);
    }
    this.ports.set(p.id, p);
    this.index(p);
    this.touchPort(p.id);
    return p;
  }

  removePort(portId: string): void {
    const id = validateId('port id', portId);
    const old = this.ports.get(id);
    if (!old) return;
    this.unindex(old);
    this.ports.delete(id);
    this.touchPort(id);
  }

  setGroup(input: SecurityGroupInput): SecurityGroup {
    const g = validateGroup(input);
    const old = this.groups.get(g.id);
    if (old) this.work.cuts.push(...cutsForRemovedRules(this.view(), old, g));
    this.groups.set(g.id, g);
    this.touchGroup(g.id);
    return g;
  }

  removeGroup(groupId: string): void {
    const id = validateId('group id', groupId);
    const old = this.groups.get(id);
    if (old) this.work.cuts.push(...cutsForRemovedRules(this.view(), old, { ...old, rules: [] }));
    this.groups.delete(id);
    this.members.delete(id);
    this.logs.delete(id);
    this.work.deltas.delete(id);
    this.work.resync.delete(id);
    this.touchGroup(id);
  }

  /** A group's security-group logs: the filters of its ports are planned again if they changed. */
  setGroupLogs(groupId: string, logs: unknown, revision = 0): void {
    const id = validateId('group id', groupId);
    const next = { logs: validateLogs(logs, id), revision: validateRevision('logs revision', revision) };
    const held = this.logs.get(id);
    // Held even when empty: its revision orders the updates that come after.
    this.logs.set(id, next);
    if (!sameJson(held?.logs ?? [], next.logs)) this.touchGroup(id);
  }

  /** Drops a group's member list (no longer needed), keeping its rules. */
  forgetMembers(groupId: string): void {
    if (!this.members.delete(groupId)) return;
    this.work.deltas.delete(groupId);
    this.work.resync.add(groupId);
    this.generation++;
  }

  setMembers(groupId: string, ips: unknown, revision = 0): void {
    const id = validateId('group id', groupId);
    const next = new Set(validateMembers(ips, 'members', Number.MAX_SAFE_INTEGER));
    const rev = validateRevision('members revision', revision);
    const old = this.members.get(id)?.ips ?? EMPTY;
    this.work.cuts.push(
      ...cutsForDepartedMembers(
        this.view(),
        id,
        [...old].filter((ip) => !next.has(ip)),
        next,
      ),
    );
    this.members.set(id, { ips: next, revision: rev });
    this.work.resync.add(id);
    this.work.deltas.delete(id);
    this.generation++;
  }

  applyMemberDelta(groupId: string, added: unknown, removed: unknown, revision?: number): void {
    const id = validateId('group id', groupId);
    const add = validateMembers(added, 'added', Number.MAX_SAFE_INTEGER);
    const del = validateMembers(removed, 'removed', Number.MAX_SAFE_INTEGER);
    const held = this.members.get(id) ?? { ips: new Set<string>(), revision: 0 };
    this.members.set(id, held);
    if (revision !== undefined) held.revision = validateRevision('members revision', revision);
    const tracked = !this.work.resync.has(id);
    const d = this.work.deltas.get(id) ?? { add: new Set<string>(), del: new Set<string>() };
    const departed: string[] = [];
    for (const ip of del) {
      if (!held.ips.delete(ip)) continue;
      departed.push(ip);
      d.add.delete(ip);
      d.del.add(ip);
    }
    for (const ip of add) {
      if (held.ips.has(ip)) continue;
      held.ips.add(ip);
      d.del.delete(ip);
      d.add.add(ip);
    }
    this.work.cuts.push(...cutsForDepartedMembers(this.view(), id, departed, held.ips));
    if (tracked && (d.add.size || d.del.size)) this.work.deltas.set(id, d);
    this.generation++;
  }

  /** Replaces everything (a full sync); what changed is planned, the rest stays as applied. */
  replaceAll(s: DesiredSnapshot): void {
    // Validate all before changing anything: a bad snapshot changes nothing.
    const ports = s.ports.map((p) => validatePort(p));
    const groups = s.groups.map((g) => validateGroup(g));
    const members = Object.entries(s.members).map(
      ([gid, ips]) => [validateId('group id', gid), new Set(validateMembers(ips, 'members', Number.MAX_SAFE_INTEGER))] as const,
    );
    const logs = Object.entries(s.logs ?? {}).map(
      ([gid, l]) =>
        [
          validateId('group id', gid),
          { logs: validateLogs(l.logs, gid), revision: validateRevision('logs revision', l.revision) },
        ] as const,
    );
    const keepPorts = new Set(s.keep?.ports ?? []);
    const keepGroups = new Set(s.keep?.groups ?? []);
    const nextPorts = new Map(ports.map((p) => [p.id, p]));
    for (const id of [...this.ports.keys()]) if (!nextPorts.has(id) && !keepPorts.has(id)) this.removePort(id);
    const nextGroups = new Map(groups.map((g) => [g.id, g]));
    for (const id of [...this.groups.keys()]) if (!nextGroups.has(id) && !keepGroups.has(id)) this.removeGroup(id);
    for (const g of groups) if (!sameJson(this.groups.get(g.id), g)) this.setGroup(g);
    for (const p of ports) if (!sameJson(this.ports.get(p.id), p)) this.setPort(p);
    const nextLogs = new Map(logs);
    for (const gid of [...this.logs.keys()]) {
      if (nextLogs.has(gid) || keepGroups.has(gid)) continue;
      this.setGroupLogs(gid, []);
      this.logs.delete(gid);
    }
    for (const [gid, l] of logs) this.setGroupLogs(gid, l.logs, l.revision);
    const nextMembers = new Map(members);
    for (const gid of [...this.members.keys()]) if (!nextMembers.has(gid)) this.forgetMembers(gid);
    for (const [gid, ips] of members) {
      const held = this.members.get(gid);
      const revision = s.memberRevisions?.[gid] ?? held?.revision ?? 0;
      if (held && held.ips.size === ips.size && [...ips].every((ip) => held.ips.has(ip))) {
        held.revision = revision;
        continue;
      }
      this.setMembers(gid, [...ips], revision);
    }
    this.generation++;
  }

  /** Hands the membership work (and, with `withCuts`, the cuts) to an apply that plans no filter. */
  takeMemberWork(withCuts: boolean): Pick<Work, 'deltas' | 'resync' | 'cuts'> {
    const w = this.work;
    const taken = { deltas: w.deltas, resync: w.resync, cuts: withCuts ? w.cuts : [] };
    this.work = { ...w, deltas: new Map(), resync: new Set(), cuts: withCuts ? [] : w.cuts };
    return taken;
  }

  /** Hands the pending work to the apply that starts now. */
  takeWork(): Work {
    const w = this.work;
    this.work = emptyWork();
    return w;
  }

  /** Puts back work an apply could not finish, merged under what arrived since (which is newer). */
  restoreWork(w: Partial<Work>): void {
    const now = this.work;
    for (const p of w.ports ?? []) now.ports.add(p);
    for (const g of w.groups ?? []) now.groups.add(g);
    // Which part of a failed delta reached the kernel is unknown: such sets are rewritten whole.
    for (const g of [...(w.resync ?? []), ...(w.deltas?.keys() ?? [])]) {
      now.resync.add(g);
      now.deltas.delete(g);
    }
    now.cuts.unshift(...(w.cuts ?? []));
  }

  /** Marks objects for planning again without any change (a resync after drift or a failed object). */
  touchPort(id: string): void {
    this.work.ports.add(id);
    this.generation++;
  }
  touchGroup(id: string): void {
    this.work.groups.add(id);
    this.generation++;
  }
  resyncMembers(groupId: string): void {
    this.work.resync.add(groupId);
    this.work.deltas.delete(groupId);
    this.generation++;
  }

  private index(p: Port): void {
    for (const g of p.securityGroups) {
      let s = this.portsInGroup.get(g);
      if (!s) this.portsInGroup.set(g, (s = new Set()));
      s.add(p.id);
    }
  }
  private unindex(p: Port): void {
    for (const g of p.securityGroups) {
      const s = this.portsInGroup.get(g);
      s?.delete(p.id);
      if (s?.size === 0) this.portsInGroup.delete(g);
    }
  }

  /** The read side the cut decisions need. */
  private view(): StateView {
    return this;
  }
}

/** What connection-cut decisions read of the state. */
export interface StateView {
  port(id: string): Port | undefined;
  group(id: string): SecurityGroup | undefined;
  allPorts(): Iterable<Port>;
  membersOf(groupId: string): ReadonlySet<string>;
  portIdsIn(groupId: string): ReadonlySet<string>;
}

const EMPTY: ReadonlySet<string> = new Set();

function emptyWork(): Work {
  return { ports: new Set(), groups: new Set(), deltas: new Map(), resync: new Set(), cuts: [] };
}

function sameJson(a: unknown, b: unknown): boolean {
  return a !== undefined && JSON.stringify(a) === JSON.stringify(b);
}
