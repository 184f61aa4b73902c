// The firewall engine: the facade that wires the host's desired state (state.ts), the planner
// (planner.ts), the apply loop (loop.ts) and a dataplane (dataplane.ts) together, and keeps the
// applied view — what the dataplane acknowledged — that plans are made against. It knows no backend:
// which one a host gets, and how it is opened, is select.ts's business; the engine is handed it.
//
// Fault isolation lives here: an object the dataplane could not apply (a set, a port's filter) is
// quarantined — counted, logged, listed in `status()` — and retried with backoff on its own, while
// every other object keeps converging. A rule naming a set that could not be made is left out of its
// port's filter until the set exists (fail-closed), and a port whose new filter the kernel refuses is
// dropped rather than left open.
import type { Logger } from 'pino';
import type { PortInput, SecurityGroupInput } from '../domain/model.js';
import { ValidationError } from '../domain/validate.js';
import {
  setKey,
  type AppliedView,
  type ChangeSet,
  type Dataplane,
  type Mode,
  type PortChainKind,
  type PortFilter,
  type PortRuleMap,
  type ReconcileReport,
  type RuleCount,
  type SetRef,
} from './dataplane.js';
import type { FixedName } from './policy.js';
import { ApplyLoop, type RunResult } from './loop.js';
import { buildFilter, planMembers, planStructure } from './planner.js';
import { explain, type Explanation, type ProbePacket } from './explain.js';
import { HostState, type DesiredSnapshot, type Work } from './state.js';
import { dedupePairs } from './cuts.js';

export type { Mode, ReconcileReport };

export interface FirewallEngineOptions {
  /** Window in which updates are gathered into one apply (default 20 ms; see docs/firewall.md)... */
  coalesceMs?: number;
  /** ...which closes early once no update has come for this long (default 5 ms). */
  coalesceQuietMs?: number;
  /** Least time between two structural applies (port and rule changes); default: what the dataplane
   *  asks for (`Dataplane.structureIntervalMs`), else 500 ms. Membership changes never wait for it; a
   *  change after a quiet spell goes out within `coalesceMs`. */
  structureIntervalMs?: number;
  /** In a sustained burst the interval doubles per apply up to this (default 2,000 ms). */
  structureIntervalMaxMs?: number;
  /** Periodic drift repair; 0 = off (default). */
  reconcileIntervalMs?: number;
  /** Security-group logging on this host (the backend writes the logging rules; its options say
   *  where to): ports get what their groups' logs ask. Off: logs are held, nothing is logged. */
  logging?: boolean;
  logger?: Logger;
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
  /** Objects quarantined now. */
  quarantined: number;
}

export interface QuarantineEntry {
  /** port/group/members: refused by the validator (from a sync); set/filter: refused by the kernel. */
  kind: 'port' | 'group' | 'members' | 'set' | 'filter';
  id: string;
  reason: string;
  since: number;
}

export interface EngineStatus {
  ports: { id: string; device: string; filtered: boolean; inKernel: boolean }[];
  groups: string[];
  /** `size`: the members the set is to hold (the host's state). `pending`: some change of them is
   *  not yet acknowledged by the kernel (waiting for its apply, or in one). `changedAt`: when this
   *  engine last changed the set in the kernel (ms since the epoch, as the kernel acknowledged it).
   *  A convergence is timed by `changedAt` once the size is reached and nothing is pending. */
  sets: { name: string; groupId: string; family: 4 | 6; size: number; pending?: true; changedAt?: number }[];
  chains: { v4: string[]; v6: string[] };
  quarantined: QuarantineEntry[];
}

export type DesiredState = DesiredSnapshot;

/** What the rules of one port's chains counted, as the kernel has it: per security-group rule (one
 *  rule of several groups written once counts for each of them), and per fixed rule of the policy. */
export interface PortCounters {
  portId: string;
  rules: { ruleId: string; chain: 'ingress' | 'egress'; packets: number; bytes: number }[];
  fixed: { name: FixedName; chain: PortChainKind; packets: number; bytes: number }[];
}

interface Retry {
  attempts: number;
  retryAt: number;
}

const RETRY_FIRST_MS = 100;
/** Every this many periodic reconciles, every set is read in full rather than counted. */
const FULL_RECONCILE_EVERY = 12;
const RETRY_MAX_MS = 30_000;

export class FirewallEngine {
  readonly state = new HostState();
  private readonly loop: ApplyLoop;
  private readonly filters = new Map<string, PortFilter>();
  private readonly sets = new Map<string, SetRef>();
  /** Per set key: when an apply last changed the set (ms since the epoch). */
  private readonly setChangedAt = new Map<string, number>();
  /** Keys of the sets the apply in flight changes. */
  private setsInFlight: ReadonlySet<string> = new Set();
  /** Per set key: applied filters naming the set. */
  private readonly refs = new Map<string, number>();
  /** Sets that do not exist because their creation failed (rules naming them are held back). */
  private readonly failedSets = new Map<string, Retry & { ref: SetRef }>();
  /** Existing sets whose update failed: rewritten whole at their retry. */
  private readonly failedUpdates = new Map<string, Retry & { groupId: string }>();
  private readonly failedPorts = new Map<string, Retry>();
  private readonly quarantine = new Map<string, QuarantineEntry>();
  /** Ports whose filter the apply running now writes. */
  private portsInFlight: ReadonlySet<string> = new Set();
  private retryTimer: NodeJS.Timeout | null = null;
  private reconcileTimer: NodeJS.Timeout | null = null;
  private closed = false;
  /** A previous run may have left objects of ours that the new state no longer has. They are removed
   *  right after the first successful apply, not before: until then they keep filtering. */
  private startupCleanupPending = true;
  private readonly tally = { conntrackDeleted: 0, repairs: 0, rejectedInput: 0 };
  private readonly view: AppliedView;
  /** A refresh for changed devices in flight, and whether more changes were heard meanwhile. */
  private deviceRefresh: Promise<void> | null = null;
  private devicesChangedAgain = false;

  constructor(
    readonly dataplane: Dataplane,
    private readonly opts: FirewallEngineOptions = {},
  ) {
    this.loop = new ApplyLoop((structure) => this.run(structure), {
      coalesceMs: opts.coalesceMs ?? 20,
      quietMs: opts.coalesceQuietMs ?? 5,
      structureIntervalMs: opts.structureIntervalMs ?? dataplane.structureIntervalMs ?? 500,
      structureIntervalMaxMs: opts.structureIntervalMaxMs ?? 2000,
      ...(opts.logger ? { logger: opts.logger } : {}),
    });
    const state = this.state;
    this.view = {
      filters: this.filters,
      sets: this.sets,
      members: (ref) => [...state.membersOf(ref.groupId)].filter((ip) => (ip.includes(':') ? 6 : 4) === ref.family),
    };
    dataplane.onDevicesChanged?.(() => this.devicesChanged());
    if (opts.reconcileIntervalMs) {
      // Cheap checks every interval (counts of set members, our chains as the tools print them), a full
      // read of every set every FULL_RECONCILE_EVERY intervals; skipped while an apply is pending, which
      // rewrites what it touches anyway.
      let n = 0;
      this.reconcileTimer = setInterval(() => {
        if (!this.loop.idle || this.startupCleanupPending) return;
        const full = ++n % FULL_RECONCILE_EVERY === 0;
        this.reconcile({ full }).catch((e: unknown) => this.opts.logger?.error({ err: e }, 'periodic reconcile failed'));
      }, opts.reconcileIntervalMs);
      this.reconcileTimer.unref();
    }
  }

  get stats(): EngineStats {
    const d = this.dataplane.stats;
    return {
      applies: this.loop.runs,
      applyErrors: this.loop.errors,
      setSyncs: d.setSyncs,
      setDeltas: d.setDeltas,
      restores: d.restores,
      repairs: this.tally.repairs + (d.repairs ?? 0),
      conntrackDeleted: this.tally.conntrackDeleted,
      rejectedInput: this.tally.rejectedInput,
      quarantined: this.quarantine.size,
    };
  }

  /** How many rule transactions (iptables-restore runs) the dataplane made. */
  get restoreCount(): number {
    return this.dataplane.stats.restores;
  }

  // ---- inputs: validated by the state, then one coalesced apply ----

  private input<T>(structural: boolean, what: string, f: () => T): T {
    let out: T;
    try {
      out = f();
    } catch (e) {
      if (e instanceof ValidationError) {
        this.tally.rejectedInput++;
        this.opts.logger?.warn({ err: e.message }, `rejected ${what}`);
      }
      throw e;
    }
    this.loop.kick(structural);
    return out;
  }

  setPort(port: PortInput): void {
    this.input(true, 'port', () => this.state.setPort(port));
  }
  removePort(portId: string): void {
    this.input(true, 'port id', () => this.state.removePort(portId));
  }
  setGroup(group: SecurityGroupInput): void {
    this.input(true, 'group', () => this.state.setGroup(group));
  }
  removeGroup(groupId: string): void {
    this.input(true, 'group id', () => this.state.removeGroup(groupId));
  }
  /** A group's security-group logs (what its ports log, docs/agent.md). */
  setGroupLogs(groupId: string, logs: unknown, revision?: number): void {
    this.input(true, 'logs', () => this.state.setGroupLogs(groupId, logs, revision));
  }
  setGroupMembers(groupId: string, ips: string[], revision?: number): void {
    this.input(false, 'members', () => this.state.setMembers(groupId, ips, revision));
  }
  applyMemberDelta(groupId: string, added: string[], removed: string[], revision?: number): void {
    this.input(false, 'members', () => this.state.applyMemberDelta(groupId, added, removed, revision));
  }
  forgetMembers(groupId: string): void {
    this.input(false, 'group id', () => this.state.forgetMembers(groupId));
  }
  replaceAll(snapshot: DesiredSnapshot): void {
    this.input(true, 'snapshot', () => this.state.replaceAll(snapshot));
  }

  /** Records an object refused before it reached the engine (a sync reply's invalid object). */
  quarantineInput(kind: 'port' | 'group' | 'members', id: string, reason: string): void {
    if (!this.quarantine.has(`${kind}:${id}`)) this.opts.logger?.warn({ kind, id, reason }, 'object quarantined');
    this.hold(kind, id, reason);
  }
  /** The object came valid again. */
  releaseInput(kind: 'port' | 'group' | 'members', id: string): void {
    this.release(kind, id);
  }

  // ---- applying ----

  /** Resolves once everything asked so far is applied (rejects if an apply failed as a whole). */
  flush(): Promise<void> {
    return this.loop.flush();
  }

  /** Resolves once what was asked so far is applied, without hurrying it. With `membersOnly`, once
   *  its membership is (filters may still wait for their interval). */
  settled(membersOnly = false): Promise<void> {
    return this.loop.settled(membersOnly);
  }

  private async run(structure: boolean): Promise<RunResult> {
    const state = this.state;
    if (structure) {
      const work = state.takeWork();
      const now = Date.now();
      const retryPorts = [...this.failedPorts].filter(([, r]) => r.retryAt <= now).map(([id]) => id);
      const retrySets = [...this.failedSets.values()].filter((r) => r.retryAt <= now && this.named(r.ref)).map((r) => r.ref);
      const changes = planStructure(
        state,
        this.view,
        this.refs,
        work,
        { failedSets: new Set(this.failedSets.keys()), retrySets },
        retryPorts,
        this.opts.logging,
      );
      await this.applyChanges(changes, work);
      if (this.startupCleanupPending) {
        this.startupCleanupPending = false;
        await this.dataplane
          .removeStale(this.view)
          .catch((e: unknown) => this.opts.logger?.warn({ err: e }, 'removing what a previous run left failed; reconcile will retry'));
      }
      return { structureLeft: state.structureChanged, membersComplete: true };
    }
    const work = state.takeMemberWork(!state.structureChanged);
    const m = planMembers(state, this.view, work);
    const groups = [...work.deltas.keys(), ...work.resync];
    const complete =
      !state.structureChanged ||
      groups.every((g) => this.sets.has(setKey({ groupId: g, family: 4 })) || this.sets.has(setKey({ groupId: g, family: 6 })));
    if (m.fill.length || m.delta.length || work.cuts.length) {
      await this.applyChanges(
        { sets: { fill: m.fill, delta: m.delta, destroy: [] }, filters: { upsert: [], remove: [] }, cuts: dedupePairs(work.cuts) },
        work,
      );
    }
    return { structureLeft: state.structureChanged, membersComplete: complete };
  }

  private async applyChanges(changes: ChangeSet, work: Partial<Work>): Promise<void> {
    let outcome;
    this.portsInFlight = new Set(changes.filters.upsert.map((f) => f.portId));
    this.setsInFlight = new Set([...changes.sets.fill, ...changes.sets.delta].map(setKey));
    try {
      outcome = await this.dataplane.apply(changes);
    } catch (e) {
      this.state.restoreWork(work);
      throw e;
    } finally {
      this.portsInFlight = new Set();
      this.setsInFlight = new Set();
    }
    const now = Date.now();
    this.tally.conntrackDeleted += outcome.conntrackDeleted;
    const failedSetKeys = new Map(outcome.failedSets.map((f) => [setKey(f.ref), f.error] as const));
    for (const s of [...changes.sets.fill, ...changes.sets.delta]) {
      const key = setKey(s);
      const err = failedSetKeys.get(key);
      if (err) {
        if (this.sets.has(key)) {
          // The set is there (its old content, or part of a delta): rewrite it whole at the retry.
          this.failedUpdates.set(key, { groupId: s.groupId, ...backoff(this.failedUpdates.get(key), now) });
        } else {
          this.failedSets.set(key, { ref: { groupId: s.groupId, family: s.family }, ...backoff(this.failedSets.get(key), now) });
        }
        this.hold('set', key, err.message);
        continue;
      }
      this.failedUpdates.delete(key);
      if (!this.sets.has(key)) this.sets.set(key, { groupId: s.groupId, family: s.family });
      this.setChangedAt.set(key, now);
      if (this.failedSets.delete(key)) {
        // Rules naming it were held back: their ports are planned again, now with them.
        for (const id of this.portsNaming({ groupId: s.groupId, family: s.family })) this.state.touchPort(id);
        this.loop.kick(true);
      }
      this.release('set', key);
    }
    for (const ref of changes.sets.destroy) {
      const key = setKey(ref);
      this.sets.delete(key);
      this.setChangedAt.delete(key);
      this.failedUpdates.delete(key);
    }
    const failedPorts = new Map(outcome.failedFilters.map((f) => [f.portId, f.error] as const));
    for (const r of changes.filters.remove) {
      if (changes.filters.upsert.some((f) => f.portId === r.portId)) continue;
      this.unref(this.filters.get(r.portId));
      this.filters.delete(r.portId);
      this.failedPorts.delete(r.portId);
      this.release('filter', r.portId);
    }
    for (const f of changes.filters.upsert) {
      const err = failedPorts.get(f.portId);
      if (err && f.sets.some((ref) => this.failedSets.has(setKey(ref)))) {
        // Refused only for naming a set that could not be made: planned again at once, without the
        // rules that name it.
        this.state.touchPort(f.portId);
        this.loop.kick(true);
        continue;
      }
      if (err) {
        this.failedPorts.set(f.portId, backoff(this.failedPorts.get(f.portId), now));
        this.hold('filter', f.portId, err.message);
        continue;
      }
      this.unref(this.filters.get(f.portId));
      for (const s of f.sets) this.refs.set(setKey(s), (this.refs.get(setKey(s)) ?? 0) + 1);
      this.filters.set(f.portId, f);
      this.failedPorts.delete(f.portId);
      this.release('filter', f.portId);
    }
    this.armRetry();
  }

  private unref(f: PortFilter | undefined): void {
    for (const s of f?.sets ?? []) {
      const n = (this.refs.get(setKey(s)) ?? 0) - 1;
      if (n <= 0) this.refs.delete(setKey(s));
      else this.refs.set(setKey(s), n);
    }
  }

  /** Ports whose rules name the set (whether or not their filter holds those rules now). */
  private portsNaming(ref: SetRef): string[] {
    const out: string[] = [];
    for (const port of this.state.allPorts()) {
      const names = port.securityGroups.some((g) =>
        this.state.group(g)?.rules.some((r) => r.remoteGroupId === ref.groupId && (r.ethertype === 'IPv4' ? 4 : 6) === ref.family),
      );
      if (names) out.push(port.id);
    }
    return out;
  }

  private named(ref: SetRef): boolean {
    return this.portsNaming(ref).length > 0;
  }

  private hold(kind: QuarantineEntry['kind'], id: string, reason: string): void {
    const key = `${kind}:${id}`;
    const had = this.quarantine.get(key);
    if (!had) this.opts.logger?.warn({ kind, id, reason }, 'quarantined: applied without it until it can be');
    this.quarantine.set(key, { kind, id, reason, since: had?.since ?? Date.now() });
  }

  private release(kind: QuarantineEntry['kind'], id: string): void {
    if (this.quarantine.delete(`${kind}:${id}`)) this.opts.logger?.info({ kind, id }, 'out of quarantine');
  }

  /** One timer for every failed object's retry. */
  private armRetry(): void {
    if (this.closed) return;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    const all = [...this.failedSets.values(), ...this.failedUpdates.values(), ...this.failedPorts.values()];
    if (all.length === 0) return;
    const at = Math.min(...all.map((r) => r.retryAt));
    this.retryTimer = setTimeout(
      () => {
        this.retryTimer = null;
        const now = Date.now();
        let structural = false;
        for (const [id, r] of this.failedPorts) {
          if (r.retryAt <= now) {
            this.state.touchPort(id);
            structural = true;
          }
        }
        for (const r of this.failedSets.values()) if (r.retryAt <= now) structural = true;
        for (const r of this.failedUpdates.values()) if (r.retryAt <= now) this.state.resyncMembers(r.groupId);
        this.loop.kick(structural);
        this.armRetry();
      },
      Math.max(0, at - Date.now()),
    );
    this.retryTimer.unref();
  }

  /** The host's devices changed (the backend heard it): what the backend derives from them is
   *  brought up to date with no apply alongside. Changes heard during a refresh make one more; a
   *  failure is left to the periodic check. Before the first apply there is nothing to update: it
   *  reads the devices itself. */
  private devicesChanged(): void {
    if (this.closed || !this.dataplane.refreshDevices) return;
    if (this.deviceRefresh) {
      this.devicesChangedAgain = true;
      return;
    }
    const refresh = this.dataplane.refreshDevices.bind(this.dataplane);
    this.deviceRefresh = this.loop
      .exclusive(() => (this.closed || this.startupCleanupPending ? Promise.resolve(false) : refresh()))
      .then(
        () => undefined,
        (e: unknown) =>
          this.opts.logger?.error({ err: e }, "bringing rules up to date with the host's devices failed; the periodic check retries"),
      )
      .finally(() => {
        this.deviceRefresh = null;
        if (this.devicesChangedAgain) {
          this.devicesChangedAgain = false;
          this.devicesChanged();
        }
      });
  }

  // ---- drift ----

  /** Compares the kernel with what was applied and repairs the difference; removes stale objects.
   *  `full: false` counts set members instead of reading them (a change of count is then read and
   *  repaired). */
  async reconcile(opts: { full?: boolean } = {}): Promise<ReconcileReport> {
    // Before the first apply there is nothing to compare with: what a previous run left keeps
    // filtering until this run's state is in (removing it now would open the host).
    if (this.startupCleanupPending) return { setsRepaired: 0, chainsRepaired: 0, staleRemoved: 0 };
    const report = await this.loop.exclusive(() => this.dataplane.reconcile(this.view, { full: opts.full ?? true }));
    const repaired = report.setsRepaired + report.chainsRepaired + report.staleRemoved;
    this.tally.repairs += repaired;
    if (repaired) this.opts.logger?.warn({ ...report }, 'firewall drift repaired');
    return report;
  }

  status(): EngineStatus {
    const dp = this.dataplane.status(this.view);
    return {
      ports: [...this.state.allPorts()].map((p) => ({
        id: p.id,
        device: p.device,
        filtered: p.portSecurityEnabled,
        inKernel: this.portInKernel(p.id),
      })),
      groups: [...this.state.allGroups().keys()],
      sets: dp.sets.map((x) => {
        const key = setKey(x);
        const changedAt = this.setChangedAt.get(key);
        const pending = this.setsInFlight.has(key) || this.state.membersWaiting(x.groupId);
        return { ...x, ...(pending ? { pending: true as const } : {}), ...(changedAt === undefined ? {} : { changedAt }) };
      }),
      chains: dp.chains,
      quarantined: [...this.quarantine.values()],
    };
  }

  /** Packets and bytes per rule of the ports' chains (of `portIds`, or every filtered port), read
   *  from the kernel; empty for a backend without counters. */
  async counters(portIds?: readonly string[]): Promise<PortCounters[]> {
    const read: Map<string, RuleCount[]> = (await this.dataplane.counters?.(portIds)) ?? new Map<string, RuleCount[]>();
    const out: PortCounters[] = [];
    for (const [portId, counts] of read) {
      const rules = new Map<string, PortCounters['rules'][number]>();
      const fixed = new Map<string, PortCounters['fixed'][number]>();
      for (const c of counts) {
        if ('rule' in c.tag) {
          for (const ruleId of c.tag.rule) {
            const r = rules.get(ruleId) ?? { ruleId, chain: c.chain === 'ingress' ? 'ingress' : 'egress', packets: 0, bytes: 0 };
            r.packets += c.packets;
            r.bytes += c.bytes;
            rules.set(ruleId, r);
          }
        } else if ('fixed' in c.tag) {
          const key = `${c.chain} ${c.tag.fixed}`;
          const r = fixed.get(key) ?? { name: c.tag.fixed, chain: c.chain, packets: 0, bytes: 0 };
          r.packets += c.packets;
          r.bytes += c.bytes;
          fixed.set(key, r);
        }
      }
      out.push({ portId, rules: [...rules.values()], fixed: [...fixed.values()] });
    }
    return out;
  }

  /** What the port's filter does with the packet, from the desired state alone (docs/firewall.md);
   *  undefined for a port the host does not have, `unfiltered` for one without port security. */
  explain(portId: string, packet: ProbePacket): Explanation | 'unfiltered' | undefined {
    const port = this.state.port(portId);
    if (!port) return undefined;
    if (!port.portSecurityEnabled) return 'unfiltered';
    const f = buildFilter(this.state, port, { failedSets: new Set(this.failedSets.keys()), retrySets: [] }, this.opts.logging);
    return explain(f, (g) => this.state.membersOf(g), packet);
  }

  /** Where the port's chains are in the kernel and what their rules are (for `sg-agent trace`). */
  portRules(portId: string): Promise<PortRuleMap | undefined> {
    return this.dataplane.portRules?.(portId) ?? Promise.resolve(undefined);
  }

  /** Whether a port's current filter is in the kernel (what a test waits for before checking a drop). */
  portInKernel(portId: string): boolean {
    // Applied, not refused, and nothing about it waiting or being written: the kernel holds its
    // current filter (rules naming a set that could not be made held back, as planned).
    return (
      this.state.port(portId) !== undefined &&
      this.filters.has(portId) &&
      !this.failedPorts.has(portId) &&
      !this.portsInFlight.has(portId) &&
      !this.state.portPending(portId)
    );
  }

  private stopTimers(): void {
    this.closed = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.reconcileTimer) clearInterval(this.reconcileTimer);
    this.retryTimer = null;
    this.reconcileTimer = null;
  }

  /** Stops; the firewall stays in place (traffic stays filtered). */
  async close(): Promise<void> {
    this.stopTimers();
    await this.deviceRefresh;
    await this.loop.close();
    await this.dataplane.close();
  }

  /** Removes every object of ours, applied or not; reports what could not be removed. */
  async cleanup(): Promise<{ removed: number; left: string[] }> {
    this.stopTimers();
    await this.deviceRefresh;
    await this.loop.close();
    const r = await this.dataplane.cleanup();
    this.filters.clear();
    this.sets.clear();
    this.setChangedAt.clear();
    this.refs.clear();
    await this.dataplane.close();
    return r;
  }
}

function backoff(prev: Retry | undefined, now: number): Retry {
  const attempts = (prev?.attempts ?? 0) + 1;
  return { attempts, retryAt: now + Math.min(RETRY_FIRST_MS * 2 ** (attempts - 1), RETRY_MAX_MS) };
}
