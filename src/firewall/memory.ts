// A dataplane in memory: holds the sets and filters it was asked to hold and records every call, so
// the engine core (state, planner, loop) is tested without root, and simulated hosts (bench:scale) run
// the real agent with no kernel. Failures can be injected per set or port.
import {
  setKey,
  type AppliedView,
  type ApplyOutcome,
  type ChangeSet,
  type Dataplane,
  type DataplaneStats,
  type DataplaneStatus,
  type PortFilter,
  type ReconcileReport,
  type SetRef,
} from './dataplane.js';
import type { AddressPair } from './cuts.js';

export class MemoryDataplane implements Dataplane {
  readonly name = 'memory';
  readonly stats: DataplaneStats = { setSyncs: 0, setDeltas: 0, restores: 0 };
  /** What the "kernel" holds. */
  readonly sets = new Map<string, Set<string>>();
  readonly filters = new Map<string, PortFilter>();
  readonly cuts: AddressPair[] = [];
  /** Every apply's change set, in order. */
  readonly applied: ChangeSet[] = [];
  /** Set keys / port ids whose next writes fail (until removed from here). */
  readonly failSets = new Set<string>();
  readonly failPorts = new Set<string>();
  /** When set, the next apply fails as a whole with this error (then clears). */
  failNext: Error | null = null;
  /** Runs inside apply before it returns: tests use it to interleave inputs with a running apply. */
  during: (() => Promise<void> | void) | null = null;
  closed = false;

  async apply(c: ChangeSet): Promise<ApplyOutcome> {
    this.applied.push(c);
    if (this.during) await this.during();
    if (this.failNext) {
      const e = this.failNext;
      this.failNext = null;
      throw e;
    }
    const out: ApplyOutcome = { failedSets: [], failedFilters: [], conntrackDeleted: 0 };
    const newlyFailed = new Set<string>();
    for (const s of c.sets.fill) {
      if (this.failSets.has(setKey(s))) {
        out.failedSets.push({ ref: s, error: new Error('injected set failure') });
        if (!this.sets.has(setKey(s))) newlyFailed.add(setKey(s));
        continue;
      }
      this.sets.set(setKey(s), new Set(s.members));
      this.stats.setSyncs++;
    }
    for (const d of c.sets.delta) {
      const set = this.sets.get(setKey(d));
      if (!set) continue;
      if (this.failSets.has(setKey(d))) {
        out.failedSets.push({ ref: d, error: new Error('injected set failure') });
        continue;
      }
      for (const ip of d.del) set.delete(ip);
      for (const ip of d.add) set.add(ip);
      this.stats.setDeltas++;
    }
    if (c.filters.upsert.length || c.filters.remove.length) this.stats.restores++;
    for (const r of c.filters.remove) this.filters.delete(r.portId);
    for (const f of c.filters.upsert) {
      const blocked = f.sets.some((s) => newlyFailed.has(setKey(s)));
      if (blocked || this.failPorts.has(f.portId)) {
        out.failedFilters.push({ portId: f.portId, error: new Error('injected filter failure') });
        continue;
      }
      for (const s of f.sets) if (!this.sets.has(setKey(s))) throw new Error(`filter of ${f.portId} names missing set ${setKey(s)}`);
      this.filters.set(f.portId, f);
    }
    for (const ref of c.sets.destroy) this.sets.delete(setKey(ref));
    this.cuts.push(...c.cuts);
    out.conntrackDeleted = c.cuts.length;
    return out;
  }

  async reconcile(expected: AppliedView, _opts: { full: boolean } = { full: true }): Promise<ReconcileReport> {
    const report: ReconcileReport = { setsRepaired: 0, chainsRepaired: 0, staleRemoved: 0 };
    for (const [key, ref] of expected.sets) {
      const want = expected.members(ref);
      const have = this.sets.get(key);
      if (!have || have.size !== want.length || want.some((ip) => !have.has(ip))) {
        this.sets.set(key, new Set(want));
        report.setsRepaired++;
      }
    }
    for (const [id, f] of expected.filters) {
      if (this.filters.get(id)?.key !== f.key) {
        this.filters.set(id, f);
        report.chainsRepaired++;
      }
    }
    report.staleRemoved = await this.removeStale(expected);
    return report;
  }

  async removeStale(expected: AppliedView): Promise<number> {
    let n = 0;
    for (const k of [...this.sets.keys()]) if (!expected.sets.has(k) && this.sets.delete(k)) n++;
    for (const id of [...this.filters.keys()]) if (!expected.filters.has(id) && this.filters.delete(id)) n++;
    return n;
  }

  async cleanup(): Promise<{ removed: number; left: string[] }> {
    const removed = this.sets.size + this.filters.size;
    this.sets.clear();
    this.filters.clear();
    return { removed, left: [] };
  }

  status(expected: AppliedView): DataplaneStatus {
    return {
      sets: [...expected.sets.values()].map((r: SetRef) => ({
        name: setKey(r),
        groupId: r.groupId,
        family: r.family,
        size: this.sets.get(setKey(r))?.size ?? 0,
      })),
      chains: { v4: [...this.filters.keys()], v6: [...this.filters.keys()] },
    };
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}
