// Neutron's state into the store: the desired view is what Neutron's API says, the store's view is what
// agents were told; a read of Neutron is compared with the store and only what differs is written
// (each write one store transaction with the messages announcing it, as any controller change).
//
// Two kinds of read, run one at a time so that a later read is never overtaken by an earlier one:
// - a full resync reads every group, rule, address group and port (paginated) and also deletes what
//   Neutron no longer has: at start, after the broker connection was lost, after a message that could
//   not be understood, and periodically;
// - a targeted read re-reads the objects that messages named (hints), batched: hints arriving while a
//   read runs are merged and read together next.
import type { Logger } from 'pino';
import type { ControllerStore } from '../controller/records.js';
import { GroupLogsFollower } from '../controller/network-logs.js';
import { ValidationError } from '../domain/validate.js';
import type { SecurityGroupRule } from '../domain/model.js';
import type { NeutronApi } from './api.js';
import {
  ADDRESS_GROUP_PREFIX,
  addressGroupKey,
  NEUTRON_DEVICE_NAMING,
  sameRules,
  samePort,
  toAddressGroupMembers,
  toLogResource,
  toPort,
  toRules,
  type DeviceNaming,
  type NeutronAddressGroup,
  type NeutronGroup,
  type NeutronLog,
  type NeutronPort,
  type NeutronRule,
  type Rejected,
} from './translate.js';

export interface ReconcilerOptions {
  store: ControllerStore;
  api: NeutronApi;
  /** Called after writes: the relay publishes them. */
  written: () => void;
  naming?: DeviceNaming;
  /** Hints within this window are read together (default 20 ms). */
  batchMs?: number;
  /** Least time between two full resyncs caused by messages (garbage must not flood the API). */
  minResyncGapMs?: number;
  /** A full read that would delete most stored ports is applied only when a second one this much
   *  later says the same (default 30 s). */
  massDeletionConfirmMs?: number;
  logger?: Logger;
}

/** What a push said of a port: its revision, and what it shows of the fields the model uses. */
export interface PortHint {
  revision?: number;
  pushed?: NeutronPort;
}

export interface Hints {
  /** Port id → what a push said of it (undefined: read whatever it is). */
  ports?: Map<string, PortHint | undefined>;
  groups?: Iterable<string>;
  addressGroups?: Iterable<string>;
  /** Groups whose member ports may have changed, without saying which (legacy member casts). */
  groupMembers?: Iterable<string>;
  /** A log resource changed (logs are few: all are read again). */
  logs?: boolean;
}

interface Pending {
  ports: Map<string, PortHint | undefined>;
  groups: Set<string>;
  addressGroups: Set<string>;
  groupMembers: Set<string>;
  logs: boolean;
  /** Why a full resync is wanted, if one is, and from when it may run. */
  full?: string;
  fullNotBefore: number;
}

const empty = (): Pending => ({
  ports: new Map(),
  groups: new Set(),
  addressGroups: new Set(),
  groupMembers: new Set(),
  logs: false,
  fullNotBefore: 0,
});
const hasTargets = (p: Pending) => p.ports.size > 0 || p.groups.size > 0 || p.addressGroups.size > 0 || p.groupMembers.size > 0 || p.logs;

export interface ReconcilerStats {
  fullResyncs: number;
  resyncReasons: Record<string, number>;
  targetedReads: number;
  /** Store writes a full resync had to make: what messages had not told us (0 in a healthy run). */
  driftRepaired: number;
  writes: number;
  /** Reads skipped because the store already held the revision a push announced. */
  skippedByRevision: number;
  /** Reads skipped because a push showed nothing the model uses that differs from the store. */
  skippedByContent: number;
  /** Objects (or rules, addresses) the model could not hold: left out, logged. */
  rejectedObjects: number;
  apiErrors: number;
  /** Full reads whose deletions were held back until a second read confirmed them. */
  deletionsHeld: number;
  lastFullResync?: { at: string; ms: number; groups: number; ports: number; addressGroups: number; repaired: number };
  lastError?: string;
}

export class NeutronReconciler {
  readonly stats: ReconcilerStats = {
    fullResyncs: 0,
    resyncReasons: {},
    targetedReads: 0,
    driftRepaired: 0,
    writes: 0,
    skippedByRevision: 0,
    skippedByContent: 0,
    rejectedObjects: 0,
    apiErrors: 0,
    deletionsHeld: 0,
  };
  private pending = empty();
  private timer: NodeJS.Timeout | null = null;
  private timerDue = 0;
  private running: Promise<void> | null = null;
  private lastFullAt = 0;
  private closed = false;
  /** Neutron's revision_number of each port as last read (in memory: a full resync rebuilds it). */
  private readonly portRevisions = new Map<string, number>();
  /** Rule id → its group, to place a rule deletion, whose push names the rule alone. */
  private readonly ruleGroup = new Map<string, string>();
  /** Group id → its project: a log naming neither a group nor a port logs its project's groups. */
  private readonly groupProject = new Map<string, string>();
  private readonly groupLogs: GroupLogsFollower;
  private firstFull?: { resolve: () => void; promise: Promise<void> };
  /** When a full read that would have deleted most ports was held back. */
  private massDeletionSeenAt?: number;
  private confirmTimer?: NodeJS.Timeout;
  private readonly naming: DeviceNaming;

  constructor(private readonly opts: ReconcilerOptions) {
    this.naming = opts.naming ?? NEUTRON_DEVICE_NAMING;
    const byProject = (project: string) => [...this.groupProject].filter(([, p]) => p === project).map(([g]) => g);
    this.groupLogs = new GroupLogsFollower(opts.store, byProject);
  }

  /** True when the store has never been filled (a first start). */
  get storeEmpty(): boolean {
    return this.opts.store.groups().length === 0 && this.opts.store.ports().length === 0;
  }

  /** Resolves when a full resync has completed. */
  fullResyncDone(): Promise<void> {
    if (!this.firstFull) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.firstFull = { resolve, promise };
    }
    return this.firstFull.promise;
  }

  /** Group the store knows a rule to belong to (rule deletions are pushed with the rule id alone). */
  groupOfRule(ruleId: string): string | undefined {
    return this.ruleGroup.get(ruleId);
  }

  hint(h: Hints): void {
    const ports = this.pending.ports;
    for (const [id, hint] of h.ports ?? []) {
      // undefined means "read whatever it is now", and wins; of two pushes, the later revision counts.
      if (!ports.has(id)) ports.set(id, hint);
      else {
        const cur = ports.get(id);
        ports.set(id, cur === undefined || hint === undefined ? undefined : (hint.revision ?? 0) >= (cur.revision ?? 0) ? hint : cur);
      }
    }
    for (const g of h.groups ?? []) this.pending.groups.add(g);
    for (const a of h.addressGroups ?? []) this.pending.addressGroups.add(a);
    for (const g of h.groupMembers ?? []) this.pending.groupMembers.add(g);
    if (h.logs) this.pending.logs = true;
    this.schedule(this.opts.batchMs ?? 20);
  }

  /** Asks for a full resync. `fromMessage`: caused by a message, so rate-limited (a stream of garbage
   *  must not become a stream of full reads of Neutron); a lost connection or the period is not. */
  resync(reason: string, fromMessage = false): void {
    const notBefore = fromMessage ? this.lastFullAt + (this.opts.minResyncGapMs ?? 10_000) : 0;
    if (!this.pending.full) {
      this.pending.full = reason;
      this.pending.fullNotBefore = notBefore;
    } else {
      this.pending.fullNotBefore = Math.min(this.pending.fullNotBefore, notBefore);
    }
    this.schedule(Math.max(0, notBefore - Date.now()));
  }

  /** Stops; resolves once a read in progress has ended (nothing is written after). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.confirmTimer) clearTimeout(this.confirmTimer);
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.running;
  }

  /** Resolves when nothing is pending or running (tests and benchmarks). */
  async idle(): Promise<void> {
    while (this.running || this.timer || hasTargets(this.pending) || this.pending.full) {
      await (this.running ?? new Promise((r) => setTimeout(r, 10)));
    }
  }

  /** Runs the loop in `delayMs`, or sooner if it was already due sooner. */
  private schedule(delayMs: number): void {
    if (this.closed || this.running) return; // the running loop takes what is pending when it is done
    const due = Date.now() + delayMs;
    if (this.timer && this.timerDue <= due) return;
    if (this.timer) clearTimeout(this.timer);
    this.timerDue = due;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.running = this.loop()
        .catch((e: unknown) => this.opts.logger?.error({ err: (e as Error).message }, 'Neutron reconciler failed'))
        .finally(() => {
          this.running = null;
          if (hasTargets(this.pending)) this.schedule(0);
          else if (this.pending.full) this.schedule(Math.max(0, this.pending.fullNotBefore - Date.now()));
        });
    }, delayMs);
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (!this.closed) {
      const fullDue = !!this.pending.full && this.pending.fullNotBefore <= Date.now();
      if (!fullDue && !hasTargets(this.pending)) return;
      const batch = this.pending;
      // A full read made after the hints covers them; a full resync not yet due stays pending.
      this.pending = fullDue ? empty() : { ...empty(), full: batch.full, fullNotBefore: batch.fullNotBefore };
      try {
        if (fullDue) await this.fullResync(batch.full!);
        else await this.targeted(batch);
        failures = 0;
      } catch (e) {
        // Nothing is lost: the batch goes back, merged with what came meanwhile, and is retried.
        this.stats.apiErrors++;
        this.stats.lastError = (e as Error).message;
        this.opts.logger?.warn({ err: (e as Error).message }, 'Neutron read failed; retrying');
        this.merge(batch, fullDue);
        failures++;
        await new Promise((r) => setTimeout(r, Math.min(10_000, 200 * 2 ** failures)));
      }
    }
  }

  private merge(b: Pending, fullTaken: boolean): void {
    if (fullTaken) {
      this.pending.full ??= b.full;
      this.pending.fullNotBefore = 0;
    }
    this.hint({ ports: b.ports, groups: b.groups, addressGroups: b.addressGroups, groupMembers: b.groupMembers, logs: b.logs });
  }

  // ---- targeted reads ----

  private async targeted(b: Pending): Promise<void> {
    this.stats.targetedReads++;
    const api = this.opts.api;
    // A legacy member cast names groups, not ports: list the group's ports with their revisions and
    // read those that differ from what is stored (and those stored there that Neutron no longer has).
    for (const gid of b.groupMembers) {
      const listed = await api.portRevisionsInGroup(gid);
      const seen = new Set<string>();
      for (const p of listed) {
        seen.add(p.id);
        if (p.revision_number === undefined || this.portRevisions.get(p.id) !== p.revision_number) b.ports.set(p.id, undefined);
      }
      for (const p of this.opts.store.ports()) if (p.securityGroups.includes(gid) && !seen.has(p.id)) b.ports.set(p.id, undefined);
    }
    const portIds: string[] = [];
    for (const [id, hint] of b.ports) {
      const have = this.portRevisions.get(id);
      if (hint?.revision !== undefined && have !== undefined && have >= hint.revision) this.stats.skippedByRevision++;
      else if (hint?.pushed && this.unchanged(id, hint.pushed)) this.stats.skippedByContent++;
      else portIds.push(id);
    }
    const [groups, addressGroups, ports] = await Promise.all([
      b.groups.size ? api.securityGroups([...b.groups], true) : [],
      b.addressGroups.size ? api.addressGroups([...b.addressGroups]) : [],
      portIds.length ? api.ports(portIds) : [],
    ]);
    const byId = <T extends { id: string }>(xs: T[]) => new Map(xs.map((x) => [x.id, x]));
    const g = byId(groups);
    for (const id of b.groups) await this.applyGroup(id, g.get(id), g.get(id)?.security_group_rules ?? []);
    const a = byId(addressGroups);
    for (const id of b.addressGroups) await this.applyAddressGroup(id, a.get(id));
    const p = byId(ports);
    for (const id of portIds) await this.applyPort(id, p.get(id));
    // A log changed, or ports or groups did that logs name: the groups' logs follow.
    if (b.logs) await this.applyLogs(await api.logs());
    else if (this.opts.store.logResources().length && (portIds.length || b.groups.size)) await this.followLogs();
    this.opts.written();
  }

  /** Whether a pushed port shows nothing the model uses other than what is stored: then there is
   *  nothing to read. (A push is never stored: a forged one can at most spare a read.) */
  private unchanged(id: string, pushed: NeutronPort): boolean {
    const cur = this.opts.store.port(id);
    if (!cur) return false;
    try {
      return samePort(cur, toPort(pushed, this.naming));
    } catch {
      return false;
    }
  }

  // ---- full resync ----

  private async fullResync(reason: string): Promise<void> {
    const started = Date.now();
    this.stats.fullResyncs++;
    this.stats.resyncReasons[reason] = (this.stats.resyncReasons[reason] ?? 0) + 1;
    const api = this.opts.api;
    // Groups before rules: a rule of a group created in between has no group yet and waits for the
    // group's own push; ports last, so that their groups are known.
    const groups = await api.securityGroups();
    const rules = await api.securityGroupRules();
    const addressGroups = await api.addressGroups();
    const ports = await api.ports();
    const logs = await api.logs();
    const writesBefore = this.stats.writes;

    const rulesByGroup = new Map<string, NeutronRule[]>();
    for (const r of rules) {
      if (!r.security_group_id) continue;
      const list = rulesByGroup.get(r.security_group_id) ?? [];
      list.push(r);
      rulesByGroup.set(r.security_group_id, list);
    }
    const wantGroups = new Set<string>();
    this.ruleGroup.clear();
    this.groupProject.clear();
    for (const g of groups) {
      wantGroups.add(g.id);
      await this.applyGroup(g.id, g, rulesByGroup.get(g.id) ?? []);
    }
    for (const ag of addressGroups) {
      wantGroups.add(addressGroupKey(ag.id));
      await this.applyAddressGroup(ag.id, ag);
    }
    const wantPorts = new Set<string>();
    this.portRevisions.clear();
    for (const p of ports) {
      wantPorts.add(p.id);
      await this.applyPort(p.id, p);
    }
    // What Neutron no longer has. A group some port still names stays (read between a group's
    // creation and the listing of ports): its own push or the next resync settles it.
    const stored = this.opts.store.ports();
    const gone = stored.filter((p) => !wantPorts.has(p.id));
    if (this.holdMassDeletion(gone.length, stored.length)) {
      this.opts.logger?.error(
        { deletions: gone.length, stored: stored.length },
        "Neutron's API lists far fewer ports than are stored (wrong endpoint? a database failing over?): deletions held until a second full read confirms them",
      );
    } else {
      for (const p of gone) await this.applyPort(p.id, undefined);
      const named = new Set(this.opts.store.ports().flatMap((p) => p.securityGroups));
      for (const g of this.opts.store.groups()) {
        if (wantGroups.has(g.id) || named.has(g.id)) continue;
        if (g.id.startsWith(ADDRESS_GROUP_PREFIX)) await this.applyAddressGroup(g.id.slice(ADDRESS_GROUP_PREFIX.length), undefined);
        else await this.applyGroup(g.id, undefined, []);
      }
    }
    await this.applyLogs(logs);
    const repaired = this.stats.writes - writesBefore;
    // At start every write is the initial load, not drift.
    if (reason !== 'start') this.stats.driftRepaired += repaired;
    this.lastFullAt = Date.now();
    this.stats.lastFullResync = {
      at: new Date().toISOString(),
      ms: Date.now() - started,
      groups: groups.length,
      ports: ports.length,
      addressGroups: addressGroups.length,
      repaired,
    };
    this.opts.logger?.info(
      { reason, ms: Date.now() - started, groups: groups.length, ports: ports.length, addressGroups: addressGroups.length, repaired },
      'Neutron full resync done',
    );
    this.opts.written();
    this.firstFull?.resolve();
    this.firstFull ??= { resolve: () => undefined, promise: Promise.resolve() };
  }

  /** Whether to hold back the deletions of a full read: when it would delete most stored ports (more
   *  than half, and more than 20) and no such read was seen at least massDeletionConfirmMs ago. An
   *  API that suddenly lists nothing would otherwise unbind every port of every host at once; a real
   *  mass deletion is announced port by port and applied as it happens, so only missed ones wait. */
  private holdMassDeletion(deletions: number, stored: number): boolean {
    if (deletions <= 20 || deletions * 2 <= stored) {
      this.massDeletionSeenAt = undefined;
      return false;
    }
    const wait = this.opts.massDeletionConfirmMs ?? 30_000;
    if (this.massDeletionSeenAt !== undefined && Date.now() - this.massDeletionSeenAt >= wait) {
      this.massDeletionSeenAt = undefined;
      return false;
    }
    if (this.massDeletionSeenAt === undefined) {
      this.massDeletionSeenAt = Date.now();
      this.stats.deletionsHeld++;
      if (this.confirmTimer) clearTimeout(this.confirmTimer);
      this.confirmTimer = setTimeout(() => this.resync('confirming a mass deletion'), wait);
      this.confirmTimer.unref();
    }
    return true;
  }

  // ---- one object: compare with the store, write only a difference ----

  private async applyGroup(id: string, g: NeutronGroup | undefined, rules: NeutronRule[]): Promise<void> {
    const store = this.opts.store;
    const cur = store.group(id);
    if (!g) {
      for (const r of cur?.rules ?? []) this.ruleGroup.delete(r.id);
      this.groupProject.delete(id);
      if (cur && (await store.deleteGroup(id))) this.stats.writes++;
      // Neutron deletes the rules of other groups naming this one as their remote group along with it,
      // and announces only the group's deletion: those groups are read again.
      const naming = store
        .groups()
        .filter((x) => x.rules.some((r) => r.remoteGroupId === id))
        .map((x) => x.id);
      if (naming.length) this.hint({ groups: naming });
      return;
    }
    if (g.project_id) this.groupProject.set(id, g.project_id);
    const { rules: want, rejected } = toRules(rules);
    this.report(rejected, 'rule');
    for (const r of cur?.rules ?? []) this.ruleGroup.delete(r.id);
    for (const r of rules) this.ruleGroup.set(r.id, id);
    const stateful = g.stateful !== false;
    // A group only ports named so far (revision 0) is written even when it has no rules.
    if (cur && cur.revision > 0 && cur.stateful === stateful && sameRules(cur.rules, want)) return;
    // Judged again inside the transaction: another controller's source may have written it meanwhile.
    type Stored = { revision: number; stateful: boolean; rules: SecurityGroupRule[] } | undefined;
    const same = (g: Stored) => !!g && g.revision > 0 && g.stateful === stateful && sameRules(g.rules, want);
    await this.write(`group ${id}`, () => store.putGroup(id, stateful, want, same));
  }

  private async applyAddressGroup(agId: string, ag: NeutronAddressGroup | undefined): Promise<void> {
    const store = this.opts.store;
    const key = addressGroupKey(agId);
    if (!ag) {
      if (await store.setGroupMembers(key, [])) this.stats.writes++;
      if (store.group(key) && (await store.deleteGroup(key))) this.stats.writes++;
      return;
    }
    const { members, rejected } = toAddressGroupMembers(ag);
    this.report(rejected, 'address');
    await this.write(`address group ${agId}`, async () => (await store.setGroupMembers(key, members)) !== undefined);
  }

  private async applyPort(id: string, p: NeutronPort | undefined): Promise<void> {
    const store = this.opts.store;
    const cur = store.port(id);
    if (!p) {
      this.portRevisions.delete(id);
      if (cur) {
        await store.putPort(id, undefined);
        this.stats.writes++;
      }
      return;
    }
    let want;
    try {
      want = toPort(p, this.naming);
    } catch (e) {
      if (!(e instanceof ValidationError)) throw e;
      // What is stored stays (the port as agents filter it now); the next change of it is read again.
      this.report([{ id, reason: e.message }], 'port');
      return;
    }
    // Noted once stored: a write that failed (a replicated store without quorum) is retried, and a
    // push of this revision must then not be skipped as already read.
    if (!cur || !samePort(cur, want)) await this.write(`port ${id}`, () => store.putPort(id, want, (p) => !!p && samePort(p, want)));
    if (p.revision_number !== undefined) this.portRevisions.set(id, p.revision_number);
  }

  /** The log resources as Neutron lists them into the store, then the groups' logs they ask for. */
  private async applyLogs(logs: NeutronLog[]): Promise<void> {
    const store = this.opts.store;
    const want = new Set<string>();
    for (const l of logs) {
      let r;
      try {
        r = toLogResource(l);
      } catch (e) {
        if (!(e instanceof ValidationError)) throw e;
        this.report([{ id: `log ${l.id}`, reason: e.message }], 'log');
        continue;
      }
      if (!r) continue;
      want.add(r.id);
      await this.write(`log ${r.id}`, () => store.putLogResource(r));
    }
    for (const r of store.logResources()) if (!want.has(r.id)) await this.write(`log ${r.id}`, () => store.deleteLogResource(r.id));
    await this.followLogs();
  }

  /** The groups' logs as the stored log resources ask (a project's groups from Neutron's). */
  private async followLogs(): Promise<void> {
    this.stats.writes += await this.groupLogs.follow();
  }

  /** One store write; a refusal by the store's validator (a limit) is reported, never thrown on. */
  private async write(what: string, f: () => Promise<unknown>): Promise<void> {
    try {
      const changed = await f();
      if (changed !== false) this.stats.writes++;
    } catch (e) {
      if (!(e instanceof ValidationError)) throw e;
      this.report([{ id: what, reason: e.message }], 'object');
    }
  }

  private report(rejected: Rejected[], kind: string): void {
    for (const r of rejected) {
      this.stats.rejectedObjects++;
      this.opts.logger?.error(
        { kind, id: r.id, reason: r.reason },
        'Neutron object the model cannot hold: left out (fewer allowed flows, never more)',
      );
    }
  }
}
