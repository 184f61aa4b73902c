// The firewall engine: holds the desired model for this host, and applies it to the kernel as the
// minimal change — membership through the ipset addon (no iptables call), rule and port changes as
// one iptables-restore --noflush per family rewriting only the chains that differ. Updates arriving
// in a burst are coalesced into one apply. Flow of one apply:
//   render(model) → sets first (created/updated before any rule names them) → chains → stale sets
//   destroyed (after no rule names them) → conntrack entries of departed members/removed rules cut.
import type { Logger } from 'pino';
import { IpsetClient, type IpFamily } from '../ipset.js';
import { deleteConntrackBetween, type AddressPair } from '../conntrack.js';
import type { Port, PortInput, SecurityGroup, SecurityGroupInput } from '../model.js';
import { BurstPacer } from '../pacer.js';
import { KernelNames } from './names.js';
import { Iptables, parseChains, type IpVersion } from './iptables.js';
import { render, restoreScript, portAddresses, isCatchAll, maxelemFor, type DesiredSet, type Mode, type Rendered } from './render.js';
import { validateGroup, validateId, validateMembers, validatePort, ValidationError } from '../domain/validate.js';

export interface FirewallEngineOptions {
  netns?: string;
  prefix?: string;
  mode?: Mode;
  /** Window in which updates are gathered into one apply (default 20 ms; see docs/firewall.md). */
  coalesceMs?: number;
  /** Least time between two rewrites of chains (port and rule changes), default 500 ms. Membership
   *  changes never wait for it, and a rule change after a quiet spell goes out within `coalesceMs`:
   *  only a burst of port bindings is gathered, into one iptables-restore per family per interval. */
  structureIntervalMs?: number;
  /** While changes keep arriving faster than the interval (a bulk boot), it doubles after each rewrite
   *  up to this (default 2,000 ms), and falls back to `structureIntervalMs` after a quiet spell. */
  structureIntervalMaxMs?: number;
  /** Periodic drift repair; 0 = off (default). */
  reconcileIntervalMs?: number;
  logger?: Logger;
}

export interface DesiredState {
  ports: PortInput[];
  groups: SecurityGroupInput[];
  members: Record<string, string[]>;
}

export interface ApplyReport {
  setsSynced: number;
  setDeltas: number;
  restores: number;
  setsDestroyed: number;
  conntrackDeleted: number;
}

export interface ReconcileReport {
  setsRepaired: number;
  chainsRepaired: number;
  staleRemoved: number;
}

export interface EngineStats {
  applies: number;
  applyErrors: number;
  setSyncs: number;
  setDeltas: number;
  restores: number;
  repairs: number;
  conntrackDeleted: number;
  rejectedInput: number;
}

export interface EngineStatus {
  ports: { id: string; device: string; filtered: boolean }[];
  groups: string[];
  sets: { name: string; groupId: string; family: IpFamily; size: number }[];
  chains: { v4: string[]; v6: string[] };
}

const VERSIONS: IpVersion[] = [4, 6];

export class FirewallEngine {
  readonly names: KernelNames;
  readonly stats: EngineStats = { applies: 0, applyErrors: 0, setSyncs: 0, setDeltas: 0, restores: 0, repairs: 0, conntrackDeleted: 0, rejectedInput: 0 };
  private readonly ports = new Map<string, Port>();
  private readonly groups = new Map<string, SecurityGroup>();
  private readonly members = new Map<string, Set<string>>();
  /** Groups whose set must be re-synced whole (new list, new set). */
  private readonly membersResync = new Set<string>();
  /** Per group: additions and removals since the last apply, applied as O(change) batches. */
  private readonly memberDeltas = new Map<string, { add: Set<string>; del: Set<string> }>();
  /** Address pairs whose connections must be cut once the new state is in. */
  private pendingCuts: AddressPair[] = [];
  private applied: Rendered = { v4: new Map(), v6: new Map(), sets: new Map(), inexact: new Set() };
  /** Our chains as iptables-save prints them after our last write: the baseline drift is judged by.
   *  Kept from what we rendered (which is in iptables-save's form), or read back where it may not be. */
  private savedBaseline: Record<IpVersion, Map<string, string[]>> = { 4: new Map(), 6: new Map() };
  private jumpPresent: Record<IpVersion, boolean> = { 4: false, 6: false };
  private timer: NodeJS.Timeout | null = null;
  private timerAt = 0;
  /** Chains are not rewritten before `structurePacer.nextAt` (see structureIntervalMs) unless a
   *  flush asks; the gap widens in a burst of port and rule changes. */
  private readonly structurePacer: BurstPacer;
  private forceStructure = 0;
  /** Inputs so far, and the last input whose effect is fully in the kernel / whose membership is. */
  private inputGen = 0;
  private appliedGen = 0;
  private membersAppliedGen = 0;
  private waiters: { gen: number; membersOnly: boolean; resolve: () => void }[] = [];
  private reconcileTimer: NodeJS.Timeout | null = null;
  private running: Promise<ApplyReport> | null = null;
  private dirty = false;
  private retryDelayMs = 0;
  private closed = false;
  /** A previous run may have left chains and sets of ours that the new state no longer has. They are
   *  removed right after the first successful apply, not before: until then they keep filtering. */
  private startupCleanupPending = true;
  /** Ports or groups changed since the last render: chains (and which sets exist) must be recomputed. */
  private structureDirty = true;

  private constructor(
    private readonly ipset: IpsetClient,
    private readonly iptables: Iptables,
    private readonly opts: Required<Pick<FirewallEngineOptions, 'coalesceMs' | 'structureIntervalMs' | 'structureIntervalMaxMs' | 'mode'>> & FirewallEngineOptions,
  ) {
    this.names = new KernelNames(opts.prefix ?? 'sg');
    this.structurePacer = new BurstPacer(opts.structureIntervalMs, opts.structureIntervalMaxMs);
  }

  static async create(opts: FirewallEngineOptions = {}): Promise<FirewallEngine> {
    const ipset = await IpsetClient.open(opts.netns ? { netns: opts.netns } : {});
    const engine = new FirewallEngine(ipset, new Iptables(opts.netns), {
      ...opts,
      coalesceMs: opts.coalesceMs ?? 20,
      structureIntervalMs: opts.structureIntervalMs ?? 500,
      structureIntervalMaxMs: opts.structureIntervalMaxMs ?? 2000,
      mode: opts.mode ?? 'bridged',
    });
    if (opts.reconcileIntervalMs) {
      engine.reconcileTimer = setInterval(() => {
        engine.reconcile().catch((e: unknown) => engine.opts.logger?.error({ err: e }, 'periodic reconcile failed'));
      }, opts.reconcileIntervalMs);
      engine.reconcileTimer.unref();
    }
    return engine;
  }

  // ---- desired-state inputs: validated, recorded, one coalesced apply scheduled ----

  private guard<T>(what: string, f: () => T): T {
    try {
      return f();
    } catch (e) {
      if (e instanceof ValidationError) {
        this.stats.rejectedInput++;
        this.opts.logger?.warn({ err: e.message }, `rejected ${what}`);
      }
      throw e;
    }
  }

  setPort(port: PortInput): void {
    const p = this.guard('port', () => validatePort(port));
    this.markStructure();
    const old = this.ports.get(p.id);
    this.ports.set(p.id, p);
    // An address or allowed pair taken off a port may no longer be used by it (anti-spoofing): cut the
    // connections it still has.
    if (old) {
      const gone = portAddresses(old).filter((a) => !portAddresses(p).includes(a));
      for (const a of gone) this.pendingCuts.push({ a, b: a.includes(':') ? '::/0' : '0.0.0.0/0' });
    }
    this.schedule();
  }

  removePort(portId: string): void {
    const id = this.guard('port id', () => validateId('port id', portId));
    const old = this.ports.get(id);
    if (!old) return;
    this.ports.delete(id);
    this.markStructure();
    this.schedule();
  }

  setGroup(group: SecurityGroupInput): void {
    const g = this.guard('group', () => validateGroup(group));
    this.markStructure();
    const old = this.groups.get(g.id);
    this.groups.set(g.id, g);
    if (old) this.cutRemovedRules(old, g);
    this.schedule();
  }

  removeGroup(groupId: string): void {
    const id = this.guard('group id', () => validateId('group id', groupId));
    const old = this.groups.get(id);
    if (old) this.cutRemovedRules(old, { ...old, rules: [] });
    this.groups.delete(id);
    this.members.delete(id);
    this.memberDeltas.delete(id);
    this.markStructure();
    this.schedule();
  }

  setGroupMembers(groupId: string, ips: string[]): void {
    const id = this.guard('group id', () => validateId('group id', groupId));
    const list = this.guard('members', () => this.checkIps(ips));
    const old = this.members.get(id) ?? new Set<string>();
    const next = new Set(list);
    this.cutDepartedMembers(id, [...old].filter((ip) => !next.has(ip)));
    this.members.set(id, next);
    this.membersResync.add(id);
    this.memberDeltas.delete(id);
    this.schedule();
  }

  applyMemberDelta(groupId: string, added: string[], removed: string[]): void {
    const id = this.guard('group id', () => validateId('group id', groupId));
    const add = this.guard('members', () => this.checkIps(added));
    const del = this.guard('members', () => this.checkIps(removed));
    const cur = this.members.get(id) ?? new Set<string>();
    this.members.set(id, cur);
    const d = this.memberDeltas.get(id) ?? { add: new Set<string>(), del: new Set<string>() };
    for (const ip of del) {
      if (!cur.delete(ip)) continue;
      d.add.delete(ip);
      d.del.add(ip);
    }
    for (const ip of add) {
      if (cur.has(ip)) continue;
      cur.add(ip);
      d.del.delete(ip);
      d.add.add(ip);
    }
    this.cutDepartedMembers(id, del);
    if (!this.membersResync.has(id)) this.memberDeltas.set(id, d);
    this.schedule();
  }

  replaceAll(state: DesiredState): void {
    const ports = state.ports.map((p) => this.guard('port', () => validatePort(p)));
    const groups = state.groups.map((g) => this.guard('group', () => validateGroup(g)));
    const members = Object.entries(state.members).map(([gid, ips]) => [this.guard('group id', () => validateId('group id', gid)), this.guard('members', () => this.checkIps(ips))] as const);
    this.ports.clear();
    for (const p of ports) this.ports.set(p.id, p);
    const byId = new Map(groups.map((g) => [g.id, g]));
    for (const [id, old] of this.groups) this.cutRemovedRules(old, byId.get(id) ?? { ...old, rules: [] });
    this.groups.clear();
    for (const g of groups) this.groups.set(g.id, g);
    for (const [gid, ips] of members) {
      const next = new Set(ips);
      this.cutDepartedMembers(gid, [...(this.members.get(gid) ?? [])].filter((ip) => !next.has(ip)));
      this.members.set(gid, next);
      this.membersResync.add(gid);
    }
    for (const gid of [...this.members.keys()]) if (!(gid in state.members)) this.members.delete(gid);
    this.memberDeltas.clear();
    this.markStructure();
    this.schedule();
  }

  private checkIps(ips: unknown): string[] {
    return validateMembers(ips, 'members', Number.MAX_SAFE_INTEGER);
  }

  /** Connections between local ports and addresses that just left a group their rules name. */
  private cutDepartedMembers(groupId: string, departed: string[]): void {
    if (departed.length === 0) return;
    for (const port of this.ports.values()) {
      if (!port.portSecurityEnabled) continue;
      const named = port.securityGroups.some((g) => this.groups.get(g)?.rules.some((r) => r.remoteGroupId === groupId));
      if (!named) continue;
      for (const local of port.fixedIps) for (const ip of departed) if (sameFamily(local, ip) && !isCatchAll(ip)) this.pendingCuts.push({ a: local, b: ip });
    }
  }

  /** Connections a removed rule had admitted: between the group's local ports and the rule's remote. */
  private cutRemovedRules(old: SecurityGroup, next: SecurityGroup): void {
    const key = (r: (typeof old.rules)[number]) => JSON.stringify([r.direction, r.ethertype, r.protocol, r.portRangeMin, r.portRangeMax, r.remoteIpPrefix, r.remoteGroupId]);
    const kept = new Set(next.rules.map(key));
    const removed = old.rules.filter((r) => !kept.has(key(r)));
    if (removed.length === 0) return;
    for (const port of this.ports.values()) {
      if (!port.portSecurityEnabled || !port.securityGroups.includes(old.id)) continue;
      for (const r of removed) {
        const v4 = r.ethertype === 'IPv4';
        const remotes = r.remoteGroupId ? [...(this.members.get(r.remoteGroupId) ?? [])] : [r.remoteIpPrefix ?? (v4 ? '0.0.0.0/0' : '::/0')];
        for (const local of port.fixedIps) {
          if (local.includes(':') === v4) continue;
          for (const remote of remotes) if (sameFamily(local, remote)) this.pendingCuts.push({ a: local, b: remote });
        }
      }
    }
  }

  // ---- applying ----

  private markStructure(): void {
    this.structureDirty = true;
    this.structurePacer.arrived(Date.now());
  }

  private schedule(): void {
    this.inputGen++;
    this.dirty = true;
    this.arm(this.opts.coalesceMs);
  }

  /** Runs an apply in `delayMs` (plus any retry backoff), or sooner if one is already due sooner. */
  private arm(delayMs: number): void {
    if (this.closed) return;
    const at = Date.now() + delayMs + this.retryDelayMs;
    if (this.timer) {
      if (this.timerAt <= at) return;
      clearTimeout(this.timer);
    }
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      // A flush may have done the work since this was armed.
      if (this.dirty) void this.runApply().catch(() => undefined);
    }, at - Date.now());
  }

  /** Resolves once everything scheduled so far is in the kernel (rejects if the apply failed). */
  async flush(): Promise<ApplyReport> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.forceStructure++;
    try {
      let report: ApplyReport = emptyReport();
      while (this.running || this.dirty) {
        if (this.running) report = await this.running;
        else report = await this.runApply();
      }
      return report;
    } finally {
      this.forceStructure--;
    }
  }

  /** Resolves once what was asked so far is in the kernel — without hurrying it, unlike flush(). With
   *  `membersOnly`, once its membership is (chains may still be waiting for their interval). */
  settled(membersOnly = false): Promise<void> {
    const gen = this.inputGen;
    if ((membersOnly ? this.membersAppliedGen : this.appliedGen) >= gen) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ gen, membersOnly, resolve }));
  }

  private wake(): void {
    this.waiters = this.waiters.filter((w) => {
      const done = (w.membersOnly ? this.membersAppliedGen : this.appliedGen) >= w.gen;
      if (done) w.resolve();
      return !done;
    });
  }

  private runApply(): Promise<ApplyReport> {
    if (this.running) return this.running;
    this.dirty = false;
    this.running = this.apply()
      .then((r) => {
        this.retryDelayMs = 0;
        return r;
      })
      .catch((e: unknown) => {
        this.stats.applyErrors++;
        this.dirty = true;
        this.structureDirty = true;
        this.retryDelayMs = Math.min(this.retryDelayMs ? this.retryDelayMs * 2 : 100, 30_000);
        this.opts.logger?.error({ err: e, retryInMs: this.retryDelayMs }, 'firewall apply failed; will retry');
        if (!this.closed) this.schedule();
        throw e;
      })
      .finally(() => {
        this.running = null;
        // A timer that fired while this apply ran found it busy: what came in meanwhile still needs one.
        if (this.dirty && !this.timer) this.arm(this.opts.coalesceMs);
      });
    return this.running;
  }

  private async apply(): Promise<ApplyReport> {
    this.stats.applies++;
    const report = emptyReport();
    const gen = this.inputGen;
    // Membership deltas alone (the common case, and all of an update storm's), or chains still inside
    // their interval: no render and no chain comparison, only the sets of the groups that changed —
    // O(change).
    const structureDue = this.structureDirty && (this.forceStructure > 0 || Date.now() >= this.structurePacer.nextAt);
    if (!structureDue && this.membersResync.size === 0 && this.deltasFitSets()) {
      const deltas = this.takeMemberWork().deltas;
      const withSet = new Set<string>();
      await this.resyncOnFailure(deltas.keys(), async () => {
        for (const set of this.applied.sets.values()) {
          withSet.add(set.groupId);
          const delta = deltas.get(set.groupId);
          if (delta) await this.applySetDelta(set, delta, report);
        }
      });
      // Deltas of groups without a set yet: the pending chain rewrite creates the set, whole.
      const complete = !this.structureDirty || [...deltas.keys()].every((g) => withSet.has(g));
      if (this.structureDirty) {
        // Connections are cut once the rules they depend on are in as well.
        this.dirty = true;
        this.arm(Math.max(0, this.structurePacer.nextAt - Date.now()));
      } else {
        await this.cutPending(report);
        this.appliedGen = Math.max(this.appliedGen, gen);
      }
      if (complete) this.membersAppliedGen = Math.max(this.membersAppliedGen, gen);
      this.wake();
      return report;
    }
    this.structureDirty = false;
    this.structurePacer.take();
    const next = render({ ports: [...this.ports.values()], groups: this.groups, members: this.members, names: this.names, mode: this.opts.mode });
    const { deltas, resync } = this.takeMemberWork();

    // 1. Sets exist and hold their members before any rule refers to them.
    await this.resyncOnFailure([...deltas.keys(), ...resync], async () => {
      for (const set of next.sets.values()) {
        const before = this.applied.sets.get(set.name);
        const delta = deltas.get(set.groupId);
        if (!before || before.spec.maxelem !== set.spec.maxelem || resync.has(set.groupId)) {
          await this.ipset.syncSet(set.name, set.spec, set.members);
          report.setsSynced++;
          this.stats.setSyncs++;
        } else if (delta) {
          await this.applySetDelta(set, delta, report);
        }
      }
    });

    // 2. Chains: rewrite only those that differ, one restore per family.
    for (const v of VERSIONS) {
      const want = v === 4 ? next.v4 : next.v6;
      const had = v === 4 ? this.applied.v4 : this.applied.v6;
      const changed = [...want.keys()].filter((c) => !sameRules(want.get(c), had.get(c)));
      const removed = [...had.keys()].filter((c) => !want.has(c));
      const jump = this.jumpPresent[v] ? null : await this.jumpLine(v);
      if (changed.length === 0 && removed.length === 0 && !jump) continue;
      // Removed chains must lose every reference first: the dispatch chains are rewritten in the
      // same transaction, so ordering inside the script is enough.
      await this.iptables.restore(v, restoreScript(want, changed, removed, jump));
      report.restores++;
      this.stats.restores++;
      this.jumpPresent[v] = true;
      // We render in iptables-save's own form, so what we wrote is what it prints; only chains with
      // parts it may spell differently (protocol numbers) are read back.
      if (changed.some((c) => next.inexact.has(c))) {
        this.savedBaseline[v] = parseChains(await this.iptables.saveFilter(v), (c) => this.names.owns(c));
      } else {
        for (const c of changed) this.savedBaseline[v].set(c, want.get(c)!);
        for (const c of removed) this.savedBaseline[v].delete(c);
      }
    }

    // 3. Sets no rule names any more.
    for (const name of this.applied.sets.keys()) {
      if (next.sets.has(name)) continue;
      try {
        await this.ipset.destroy(name);
        report.setsDestroyed++;
      } catch (e) {
        this.opts.logger?.warn({ err: e, set: name }, 'stale set not destroyed');
      }
    }
    this.applied = next;
    if (this.startupCleanupPending) {
      this.startupCleanupPending = false;
      await this.removeStale();
    }

    // 4. Cut what the new state no longer admits.
    await this.cutPending(report);
    this.structurePacer.done(Date.now());
    this.appliedGen = Math.max(this.appliedGen, gen);
    this.membersAppliedGen = Math.max(this.membersAppliedGen, gen);
    this.wake();
    return report;
  }

  /** Hands the membership work gathered so far to the apply that starts now. Changes arriving while it
   *  runs start new entries for the next apply instead of being cleared with these. */
  private takeMemberWork(): { deltas: Map<string, { add: Set<string>; del: Set<string> }>; resync: Set<string> } {
    const deltas = new Map(this.memberDeltas);
    const resync = new Set(this.membersResync);
    this.memberDeltas.clear();
    this.membersResync.clear();
    return { deltas, resync };
  }

  /** If `f` fails, the sets of these groups are synced whole next time: which part of their deltas
   *  reached the kernel is unknown. */
  private async resyncOnFailure(groups: Iterable<string>, f: () => Promise<void>): Promise<void> {
    try {
      await f();
    } catch (e) {
      for (const g of groups) this.membersResync.add(g);
      throw e;
    }
  }

  private async applySetDelta(set: DesiredSet, delta: { add: Set<string>; del: Set<string> }, report: ApplyReport): Promise<void> {
    const fam = (ip: string) => (ip.includes(':') ? 'inet6' : 'inet') === set.family && !isCatchAll(ip);
    const del = [...delta.del].filter(fam);
    const add = [...delta.add].filter(fam);
    if (del.length) await this.ipset.del(set.name, del, { exist: true });
    if (add.length) await this.ipset.add(set.name, add, { exist: true });
    if (del.length || add.length) {
      report.setDeltas++;
      this.stats.setDeltas++;
    }
  }

  /** Whether every set a delta touches still fits its maxelem (else the set must grow: full path). */
  private deltasFitSets(): boolean {
    for (const set of this.applied.sets.values()) {
      if (!this.memberDeltas.has(set.groupId)) continue;
      if (maxelemFor(this.members.get(set.groupId)?.size ?? 0) > (set.spec.maxelem ?? 0)) return false;
    }
    return true;
  }

  private async cutPending(report: ApplyReport): Promise<void> {
    const cuts = this.pendingCuts;
    this.pendingCuts = [];
    if (cuts.length === 0) return;
    const n = await deleteConntrackBetween(dedupe(cuts), this.opts.netns);
    report.conntrackDeleted += n;
    this.stats.conntrackDeleted += n;
  }

  /** A set's members as the model has them now (applied sets keep only the list of their last full sync). */
  private currentMembers(set: DesiredSet): string[] {
    return [...(this.members.get(set.groupId) ?? [])].filter((ip) => (ip.includes(':') ? 'inet6' : 'inet') === set.family && !isCatchAll(ip));
  }

  /** Removes chains and sets with our prefix that the applied state does not have; returns the count. */
  private async removeStale(): Promise<number> {
    let removed = 0;
    for (const v of VERSIONS) {
      const want = v === 4 ? this.applied.v4 : this.applied.v6;
      const stale = [...parseChains(await this.iptables.saveFilter(v), (c) => this.names.owns(c)).keys()].filter((c) => !want.has(c));
      if (stale.length === 0) continue;
      await this.iptables.restore(v, restoreScript(want, [], stale, null));
      this.savedBaseline[v] = parseChains(await this.iptables.saveFilter(v), (c) => this.names.owns(c));
      removed += stale.length;
    }
    for (const name of await this.ipset.listNames()) {
      if (this.names.owns(name) && !this.applied.sets.has(name)) {
        await this.ipset.destroy(name).then(() => removed++, () => undefined);
      }
    }
    return removed;
  }

  /** The FORWARD jump into our dispatch chain, if iptables does not have it yet. */
  private async jumpLine(v: IpVersion): Promise<string | null> {
    const saved = await this.iptables.saveFilter(v);
    const present = saved.split('\n').some((l) => l.trim() === `-A FORWARD -j ${this.names.dispatchChain}`);
    return present ? null : `-I FORWARD 1 -j ${this.names.dispatchChain}`;
  }

  // ---- drift ----

  /** Compares the kernel with what we applied and repairs the difference; removes stale objects of ours. */
  async reconcile(): Promise<ReconcileReport> {
    await this.flush();
    const report: ReconcileReport = { setsRepaired: 0, chainsRepaired: 0, staleRemoved: 0 };
    for (const name of this.applied.sets.keys()) {
      const r = await this.ipset.reconcile(name).catch(async () => {
        const s = this.applied.sets.get(name)!;
        await this.ipset.syncSet(name, s.spec, this.currentMembers(s));
        return { repaired: true };
      });
      if (r.repaired) report.setsRepaired++;
    }
    for (const v of VERSIONS) {
      const want = v === 4 ? this.applied.v4 : this.applied.v6;
      const saved = await this.iptables.saveFilter(v);
      const kernel = parseChains(saved, (c) => this.names.owns(c));
      const baseline = this.savedBaseline[v];
      const changed = [...want.keys()].filter((c) => !kernel.has(c) || !sameRules(kernel.get(c), baseline.get(c)));
      const jumpMissing = !saved.split('\n').some((l) => l.trim() === `-A FORWARD -j ${this.names.dispatchChain}`);
      if (changed.length || jumpMissing) {
        await this.iptables.restore(v, restoreScript(want, changed, [], jumpMissing ? `-I FORWARD 1 -j ${this.names.dispatchChain}` : null));
        this.savedBaseline[v] = parseChains(await this.iptables.saveFilter(v), (c) => this.names.owns(c));
        report.chainsRepaired += changed.length + (jumpMissing ? 1 : 0);
      }
    }
    report.staleRemoved += await this.removeStale();
    this.stats.repairs += report.setsRepaired + report.chainsRepaired + report.staleRemoved;
    if (report.setsRepaired || report.chainsRepaired || report.staleRemoved) this.opts.logger?.warn({ ...report }, 'firewall drift repaired');
    return report;
  }

  status(): EngineStatus {
    return {
      ports: [...this.ports.values()].map((p) => ({ id: p.id, device: p.device, filtered: p.portSecurityEnabled })),
      groups: [...this.groups.keys()],
      sets: [...this.applied.sets.values()].map((s: DesiredSet) => ({ name: s.name, groupId: s.groupId, family: s.family, size: this.currentMembers(s).length })),
      chains: { v4: [...this.applied.v4.keys()], v6: [...this.applied.v6.keys()] },
    };
  }

  /** Stops timers; the firewall stays in place (traffic stays filtered). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.reconcileTimer) clearInterval(this.reconcileTimer);
    this.timer = null;
    await this.running?.catch(() => undefined);
  }

  /** Removes every chain and set the engine's prefix owns, applied or not. */
  async cleanup(): Promise<void> {
    await this.close();
    for (const v of VERSIONS) {
      const saved = await this.iptables.saveFilter(v);
      const ours = [...parseChains(saved, (c) => this.names.owns(c)).keys()];
      const jumps = saved.split('\n').filter((l) => l.trim() === `-A FORWARD -j ${this.names.dispatchChain}`);
      if (ours.length === 0 && jumps.length === 0) continue;
      const script = ['*filter', ...jumps.map(() => `-D FORWARD -j ${this.names.dispatchChain}`), ...ours.map((c) => `:${c} - [0:0]`), ...ours.map((c) => `-X ${c}`), 'COMMIT', ''].join('\n');
      await this.iptables.restore(v, script);
    }
    for (const name of await this.ipset.listNames()) if (this.names.owns(name)) await this.ipset.destroy(name).catch(() => undefined);
    this.applied = { v4: new Map(), v6: new Map(), sets: new Map(), inexact: new Set() };
    this.jumpPresent = { 4: false, 6: false };
  }

  /** How many iptables-restore runs this engine has made (tests assert membership changes make none). */
  get restoreCount(): number {
    return this.iptables.restores;
  }
}

function emptyReport(): ApplyReport {
  return { setsSynced: 0, setDeltas: 0, restores: 0, setsDestroyed: 0, conntrackDeleted: 0 };
}

function sameRules(a: string[] | undefined, b: string[] | undefined): boolean {
  if (!a || !b || a.length !== b.length) return false;
  return a.every((l, i) => l === b[i]);
}

function sameFamily(a: string, b: string): boolean {
  return a.includes(':') === b.includes(':');
}

function dedupe(pairs: AddressPair[]): AddressPair[] {
  const seen = new Set<string>();
  return pairs.filter((p) => {
    const k = `${p.a}|${p.b}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

