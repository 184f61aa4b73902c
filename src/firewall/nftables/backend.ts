// The nftables backend: the whole firewall in nf_tables, programmed over netlink by the addon — no
// `nft` process, no libnftnl. Every apply is one batch transaction (all or nothing). Member sets are
// interval sets (one per group and family) changed element by element; each port has its own
// chains, reached through verdict maps, so binding a port is one transaction that adds its chains
// and its map elements and never rewrites a shared chain.
//
// Bridged ports are told apart without physdev: a bridge-family chain that runs before
// br_netfilter's hooks gives a frame from (prerouting) or to (forward) one of our ports that port's
// mark, and the inet chains — stateful, as br_netfilter hands them the bridged traffic — dispatch
// on the mark through verdict maps (docs/firewall.md says why and how it was measured). Routed
// ports are dispatched on their device.
//
// The first apply replaces our tables whole, in the same transaction that fills them, so a previous
// run's objects filter until this run's are in, and none survives it (a table of ours that another
// program put objects into is kept, and everything of ours in it written afresh; what is left of a
// previous run goes right after, with the stale sweep). A port's objects are planned by ports.ts,
// the shared ones by tables.ts and dispatch.ts; this file plans the member sets, runs the
// transaction and retries it without what the kernel refused. What was committed is kept by
// the addon (its mirror); drift is repaired against it — on the periodic check and, with `watch`,
// as soon as the kernel announces someone else's change to our tables.
import type { Logger } from 'pino';
import { deleteConntrackBetween } from '../../addon/conntrack.js';
import { cutsInZones } from '../zones.js';
import {
  setKey,
  type AppliedView,
  type ApplyOutcome,
  type ChangeSet,
  type Dataplane,
  type DataplaneStats,
  type LogSettings,
  type DataplaneStatus,
  type Mode,
  type PortRuleMap,
  type ReconcileReport,
  type RuleCount,
  type SetRef,
} from '../dataplane.js';
import { dedupePairs } from '../cuts.js';
import { BRIDGE, INET, NftNames } from './names.js';
import { at, emptiedAsMade, sharedOps, zoned, type Layout } from './tables.js';
import { NftablesError, PortObjects, type Owner, type Plan } from './ports.js';
import { NftClient, type NftFamily, type Op, type ReconcileReport as NftReport, type TableDesc } from '../../addon/nftables.js';

export interface NftablesOptions {
  netns?: string;
  prefix?: string;
  mode?: Mode;
  logger?: Logger;
  /** Repair foreign changes to our tables as the kernel announces them (the agent turns it on with
   *  its periodic check). */
  watch?: boolean;
  /** VM-port devices of these name prefixes that no port of the agent owns are dropped, both ways,
   *  rather than passed (Neutron: `tap`); the devices of known ports are kept in a set for it. */
  unknownDevicePrefixes?: string[];
  /** Bridges of these name prefixes track their traffic in a conntrack zone each (bridged mode):
   *  networks with overlapping addresses no longer share one table (tables.ts, `zones`). */
  conntrackZoneBridges?: string[];
  /** Security-group logging: where the logging rules send packets, and their rate limit. */
  log?: LogSettings;
}

export { NftablesError };

/** A refused transaction is tried again without the objects it refused, this many times at most. */
const MAX_ROUNDS = 6;

export class NftablesDataplane implements Dataplane {
  readonly name = 'nftables';
  readonly stats: DataplaneStats & { repairs: number } = { setSyncs: 0, setDeltas: 0, restores: 0, repairs: 0 };
  /** A binding costs one small transaction: structural work needs no pacing. */
  readonly structureIntervalMs = 0;
  readonly names: NftNames;
  readonly mode: Mode;
  /** Our ports' chains, dispatch elements and mark ids, as committed. */
  private readonly ports: PortObjects;
  /** Member sets in the kernel. */
  private readonly sets = new Map<string, SetRef>();
  private started = false;

  private readonly layout: Layout;

  private constructor(
    readonly client: NftClient,
    private readonly opts: NftablesOptions,
  ) {
    this.names = new NftNames(opts.prefix ?? 'sg');
    this.mode = opts.mode ?? 'bridged';
    this.layout = {
      names: this.names,
      mode: this.mode,
      unknownDevicePrefixes: opts.unknownDevicePrefixes ?? [],
      // A routed port has no bridge: no zones, whatever the setting.
      zoneBridges: this.mode === 'bridged' ? (opts.conntrackZoneBridges ?? []) : [],
    };
    this.ports = new PortObjects(this.layout, opts.log, (ops) => this.fresh(ops));
  }

  static async open(opts: NftablesOptions = {}): Promise<NftablesDataplane> {
    const dp = new NftablesDataplane(await NftClient.open(opts.netns), opts);
    if (opts.watch) dp.watchDrift();
    return dp;
  }

  /** Our tables, by family. */
  get tables(): NftFamily[] {
    return this.mode === 'bridged' ? ['inet', 'bridge'] : ['inet'];
  }

  private at(family: NftFamily): { family: NftFamily; table: string } {
    return at(this.layout, family);
  }

  // ---- apply ----

  async apply(c: ChangeSet): Promise<ApplyOutcome> {
    const out: ApplyOutcome = { failedSets: [], failedFilters: [], conntrackDeleted: 0 };
    const badSets = new Map<string, Error>();
    const badPorts = new Map<string, Error>();
    let plan: Plan | undefined;
    for (let round = 0; ; round++) {
      plan = await this.plan(c, badSets, badPorts);
      if (plan.ops.length === 0) break;
      const r = await this.client.transact(plan.ops, plan.generation);
      if (r.committed) break;
      // The ruleset changed since the plan's read of our tables: read and plan again.
      if (plan.generation !== undefined && r.failures.every((f) => f.op === null && f.code === 'RETRY') && round + 1 < MAX_ROUNDS) continue;
      // Refused: the objects whose operations the kernel refused are left out and the rest tried
      // again. Sets first: a rule naming a refused set fails with it, through no fault of its own.
      const owned = r.failures.map((f) => ({ f, owner: f.op === null ? undefined : plan!.owners[f.op] }));
      const whole = owned.filter((o) => !o.owner || o.owner.kind === 'shared');
      if (whole.length || round + 1 >= MAX_ROUNDS)
        throw new NftablesError(`nf_tables transaction refused: ${r.failures.map((f) => f.message).join('; ')}`, r.failures);
      const sets = owned.filter((o) => o.owner?.kind === 'set' || o.owner?.kind === 'destroy');
      for (const { f, owner } of sets.length ? sets : owned) {
        if (owner?.kind === 'set' || owner?.kind === 'destroy') badSets.set(owner.key, new NftablesError(f.message, [f]));
        else if (owner?.kind === 'port') badPorts.set(owner.portId, new NftablesError(f.message, [f]));
      }
    }
    for (const f of plan.commit) f();
    for (const [key, error] of badSets) {
      const ref = [...c.sets.fill, ...c.sets.delta].find((s) => setKey(s) === key);
      if (ref) out.failedSets.push({ ref: { groupId: ref.groupId, family: ref.family }, error });
      else this.opts.logger?.warn({ err: error, set: key }, 'stale set not destroyed; reconcile will retry');
    }
    for (const [portId, error] of badPorts) out.failedFilters.push({ portId, error });
    for (const b of plan.blocked)
      out.failedFilters.push({ portId: b.portId, error: new Error(`set of group ${b.groupId} (IPv${b.family}) could not be made`) });
    if (c.cuts.length)
      out.conntrackDeleted = await deleteConntrackBetween(
        await cutsInZones(dedupePairs(c.cuts), this.layout.zoneBridges, this.opts.netns),
        this.opts.netns,
      );
    return out;
  }

  /** The operations of one transaction for `c`, leaving out the sets and ports the kernel refused. */
  private async plan(c: ChangeSet, badSets: Map<string, Error>, badPorts: Map<string, Error>): Promise<Plan> {
    const plan: Plan = { ops: [], owners: [], commit: [], blocked: [], ids: this.ports.planIds(), macUsers: new Map() };
    const push = (owner: Owner, ...ops: Op[]) => {
      for (const op of ops) {
        plan.ops.push(op);
        plan.owners.push(owner);
      }
    };
    const shared: Owner = { kind: 'shared' };
    const inet = this.at('inet');

    if (!this.started) {
      for (const [family, table] of await this.client.listTables()) {
        if (!this.names.ownsTable(table)) continue;
        const d = await this.client.describe(family, table);
        if (!d) continue;
        const foreign = this.foreignIn(d);
        if (foreign.length === 0) {
          // Deleted only if nothing was added to it since this read (the first read's generation:
          // a later one cannot be current if an earlier one is not).
          plan.generation ??= d.generation;
          push(shared, { op: 'delTable', family, table });
        } else
          this.opts.logger?.warn(
            { family, table, foreign },
            'our nftables table holds objects of another program: they are kept, ours written afresh',
          );
      }
      push(shared, ...sharedOps(this.layout, !this.started));
      plan.commit.push(() => {
        this.started = true;
      });
    }

    // 1. Member sets exist and hold their members before any rule names them.
    const lost = new Set<string>();
    for (const s of c.sets.fill) {
      const key = setKey(s);
      if (badSets.has(key)) {
        if (!this.sets.has(key)) lost.add(key);
        continue;
      }
      const owner: Owner = { kind: 'set', key };
      const set = this.names.groupSet(s.groupId, s.family);
      if (!this.sets.has(key))
        push(owner, ...this.fresh([{ op: 'set', ...inet, set, key: s.family === 4 ? 'ipv4' : 'ipv6' }]), {
          op: 'members',
          ...inet,
          set,
          add: s.members,
        });
      else push(owner, { op: 'members', ...inet, set, add: s.members, replace: true });
      const ref = { groupId: s.groupId, family: s.family };
      plan.commit.push(() => {
        this.sets.set(key, ref);
        this.stats.setSyncs++;
      });
    }
    for (const d of c.sets.delta) {
      const key = setKey(d);
      if (!this.sets.has(key) || badSets.has(key) || (!d.add.length && !d.del.length)) continue;
      push({ kind: 'set', key }, { op: 'members', ...inet, set: this.names.groupSet(d.groupId, d.family), add: d.add, del: d.del });
      plan.commit.push(() => this.stats.setDeltas++);
    }

    // 2. Filters. A port moved to another device comes as a removal and an upsert: the upsert says it all.
    const upserted = new Set(c.filters.upsert.map((f) => f.portId));
    let structural = false;
    for (const r of c.filters.remove) {
      if (upserted.has(r.portId)) continue;
      structural = this.ports.remove(r.portId, push, plan) || structural;
    }
    for (const f of c.filters.upsert) {
      const blocked = f.sets.find((s) => lost.has(setKey(s)));
      if (blocked) plan.blocked.push({ portId: f.portId, groupId: blocked.groupId, family: blocked.family });
      if (blocked || badPorts.has(f.portId)) {
        structural = this.ports.drop(f, push, plan) || structural;
        continue;
      }
      structural = this.ports.upsert(f, push, plan) || structural;
    }
    if (structural) plan.commit.push(() => this.stats.restores++);

    plan.commit.push(() => {
      this.ports.commitIds(plan.ids);
      this.ports.commitMacUsers(plan.macUsers);
    });

    // 3. Sets no rule names any more.
    for (const ref of c.sets.destroy) {
      const key = setKey(ref);
      if (!this.sets.has(key) || badSets.has(key)) continue;
      push({ kind: 'destroy', key }, { op: 'delSet', ...inet, set: this.names.groupSet(ref.groupId, ref.family) });
      plan.commit.push(() => this.sets.delete(key));
    }
    return plan;
  }

  /** What in a table of ours is another program's: chains and sets not of our shapes, and any
   *  flowtable or named object (we make none). */
  private foreignIn(d: TableDesc): string[] {
    const named = [...d.chains.map((c) => c.name), ...d.sets.map((x) => x.name)].filter((n) => !this.names.owns(n));
    return d.others > 0 ? [...named, `${d.others} flowtable(s) or named object(s)`] : named;
  }

  /** Until the first apply is in, a chain or set may be there already (a previous run's, in a table
   *  that was kept): what is made is emptied too, in the same transaction. */
  private fresh(ops: Op[]): Op[] {
    return this.started ? ops : emptiedAsMade(ops);
  }

  // ---- drift ----

  private watchDrift(): void {
    this.client.watch((e) => {
      if ('repaired' in e) {
        const r = e.repaired;
        this.stats.repairs += r.tablesRebuilt + r.chainsRepaired + r.setsRepaired;
        this.opts.logger?.warn(
          {
            tablesRebuilt: r.tablesRebuilt,
            chainsRepaired: r.chainsRepaired,
            setsRepaired: r.setsRepaired,
            elementsAdded: r.elementsAdded,
            elementsRemoved: r.elementsRemoved,
          },
          'nftables: a foreign change to our tables was repaired',
        );
      } else {
        this.opts.logger?.error({ err: e.failed }, 'nftables: repairing a foreign change failed; the periodic check will retry');
      }
    });
  }

  async reconcile(_expected: AppliedView, opts: { full: boolean }): Promise<ReconcileReport> {
    if (!this.started) return { setsRepaired: 0, chainsRepaired: 0, staleRemoved: 0 };
    // Quick: nothing is read while the ruleset generation stands where our last commit or compare
    // left it; once it moved, everything is compared, elements included (a member swapped for
    // another keeps the set's count).
    const r = await this.client.reconcile({ quick: !opts.full, allElements: true });
    failIfRefused(r, 'repair');
    const staleRemoved = opts.full ? await this.removeUnknown(r) : 0;
    return { setsRepaired: r.setsRepaired, chainsRepaired: r.chainsRepaired + r.tablesRebuilt, staleRemoved };
  }

  /** Removes chains and sets of our shape that this run did not make (found by a reconcile). */
  private async removeUnknown(r: NftReport): Promise<number> {
    const ours = r.unknown.filter((u) => u.table === this.names.table && this.names.owns(u.name));
    if (ours.length === 0) return 0;
    const ops: Op[] = [];
    for (const u of ours) if (u.kind === 'chain') ops.push({ op: 'flushChain', ...this.at(u.family), chain: u.name });
    for (const u of ours) if (u.kind === 'chain') ops.push({ op: 'delChain', ...this.at(u.family), chain: u.name });
    for (const u of ours) if (u.kind === 'set') ops.push({ op: 'delSet', ...this.at(u.family), set: u.name });
    const t = await this.client.transact(ops);
    if (!t.committed) {
      this.opts.logger?.warn(
        { failures: t.failures.map((f) => f.message) },
        'stale nftables objects not removed (in use by another rule); left in place',
      );
      return 0;
    }
    return ours.length;
  }

  async removeStale(_expected: AppliedView): Promise<number> {
    // The first apply replaced our tables: only what was made in them since, by hand, can be stale.
    if (!this.started) return 0;
    const r = await this.client.reconcile({ quick: false, allElements: false });
    return this.removeUnknown(r);
  }

  // ---- removal ----

  async cleanup(): Promise<{ removed: number; left: string[] }> {
    let removed = 0;
    const left: string[] = [];
    for (const [family, table] of await this.client.listTables()) {
      // A trace's marking table that its process, killed, left behind.
      if (table === this.names.traceTable) {
        const r = await this.client.transact([{ op: 'delTable', family, table }]);
        if (r.committed) removed++;
        await this.client.forget(family, table);
        continue;
      }
      if (!this.names.ownsTable(table)) continue;
      const at = { family, table };
      // Deleted whole only if it holds nothing of another program's, read at a generation the
      // delete names: anything added after the read refuses it, and the table is read again.
      let d: TableDesc | null = null;
      let refused: string | undefined;
      for (let attempt = 0; attempt < MAX_ROUNDS; attempt++) {
        d = await this.client.describe(family, table);
        if (!d || this.foreignIn(d).length > 0) break;
        const r = await this.client.transact([{ op: 'delTable', ...at }], d.generation);
        refused = r.committed ? undefined : r.failures.map((f) => f.message).join('; ');
        if (r.committed) removed += d.chains.length + d.sets.length;
        if (r.committed || !r.failures.every((f) => f.code === 'RETRY')) break;
      }
      if (!d) continue;
      const foreign = this.foreignIn(d);
      if (foreign.length === 0) {
        if (refused !== undefined) left.push(`nftables ${family} table ${table}: ${refused}`);
      } else {
        // Another program put objects into our table: ours are emptied (their traffic no longer
        // meets our rules at once), then removed one by one; one another program's rule refers to
        // stays, emptied, and is reported, as does the table.
        const chains = d.chains.filter((c) => this.names.owns(c.name)).map((c) => c.name);
        const sets = d.sets.filter((x) => this.names.owns(x.name)).map((x) => x.name);
        await this.client.transact([
          ...chains.map((chain): Op => ({ op: 'flushChain', ...at, chain })),
          ...sets.map((set): Op => ({ op: 'flushSet', ...at, set })),
        ]);
        for (const [kind, name] of [...chains.map((n) => ['chain', n] as const), ...sets.map((n) => ['set', n] as const)]) {
          const r = await this.client.transact([
            kind === 'chain' ? { op: 'delChain', ...at, chain: name } : { op: 'delSet', ...at, set: name },
          ]);
          if (r.committed) removed++;
          else left.push(`nftables ${family} ${kind} ${name} (referenced by another program's rule; emptied)`);
        }
        left.push(`nftables ${family} table ${table} (holds ${foreign.join(', ')} of another program)`);
      }
      await this.client.forget(family, table);
    }
    this.ports.clear();
    this.sets.clear();
    this.started = false;
    return { removed, left };
  }

  status(expected: AppliedView): DataplaneStatus {
    const chains = this.ports.inetChains();
    return {
      sets: [...expected.sets.values()].map((ref) => ({
        name: this.names.groupSet(ref.groupId, ref.family),
        groupId: ref.groupId,
        family: ref.family,
        size: expected.members(ref).length,
      })),
      chains: { v4: chains, v6: chains },
    };
  }

  async counters(portIds?: readonly string[]): Promise<Map<string, RuleCount[]>> {
    const owners = this.ports.chainOwners(portIds);
    const out = new Map<string, RuleCount[]>();
    if (owners.size === 0 || !this.started) return out;
    for (const r of await this.client.ruleStats('inet', this.names.table)) {
      const owner = owners.get(r.chain);
      const tag = this.ports.tagsOf(r.chain)?.[r.position];
      // A chain that drifted is read again once repaired: its rules' places are not ours now.
      if (!owner || !tag || !r.asWritten || !r.counted) continue;
      const list = out.get(owner.portId) ?? [];
      list.push({ chain: owner.kind, tag, packets: r.packets, bytes: r.bytes });
      out.set(owner.portId, list);
    }
    return out;
  }

  async portRules(portId: string): Promise<PortRuleMap | undefined> {
    const f = this.ports.filter(portId);
    if (!f?.filtered || !this.started) return undefined;
    const table = this.names.table;
    const chains: PortRuleMap['chains'] = [];
    for (const [chain, { kind }] of this.ports.chainOwners([portId])) {
      chains.push({ family: 'inet', table, chain, kind, tags: this.ports.tagsOf(chain) ?? [] });
    }
    const inet = (chain: string, what: string) => ({ family: 'inet' as const, table, chain, what });
    const bridge = (chain: string, what: string) => ({ family: 'bridge' as const, table, chain, what });
    return Promise.resolve({
      chains,
      shared: [
        inet(INET.fromPorts, 'dispatch of what ports send'),
        inet(INET.toPorts, 'dispatch of what goes to ports'),
        inet(
          INET.untracked,
          zoned(this.layout) ? "no conntrack for stateless ports; the bridges' conntrack zones" : 'no conntrack for stateless ports',
        ),
        bridge(BRIDGE.markFrom, 'port marks: from a port'),
        bridge(BRIDGE.markTo, 'port marks: to a port'),
        bridge(this.names.fromDevChain(portId), "this port's mark and ARP check"),
        bridge(this.names.toDevChain(portId), "this port's mark"),
      ],
    });
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}

function failIfRefused(r: NftReport, what: string): void {
  if (r.failures.length) throw new NftablesError(`nf_tables ${what} refused: ${r.failures.map((f) => f.message).join('; ')}`, r.failures);
}
