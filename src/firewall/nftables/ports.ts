// Our ports' objects in nf_tables: each filtered port's chains (inet and bridge), its elements in
// the shared dispatch maps, its mark id (bridged mode), the drop elements of a new port whose filter
// the kernel refused, and the set of known devices. Operations are added to a transaction's plan; this
// mirror changes only through the plan's commit steps, run once the kernel committed it, so it always
// says what the kernel holds.
import type { Family } from '../../domain/address.js';
import type { LogSettings, PortChainKind, PortFilter } from '../dataplane.js';
import type { RuleTag } from '../policy.js';
import type { NftFamily, Op, OpFailure } from '../../addon/nftables.js';
import { dispatchElems, dropElems, elemOps, knownDeviceOps, statelessOps, type MacChange } from './dispatch.js';
import { MAX_MARK_ID, portChains, type Rules } from './render.js';
import { at, type Layout } from './tables.js';

/** Who an operation is for: a refused operation quarantines its owner alone. */
export type Owner = { kind: 'shared' } | { kind: 'set'; key: string } | { kind: 'port'; portId: string } | { kind: 'destroy'; key: string };

/** The operations of one transaction, and what to record once the kernel committed them. */
export interface Plan {
  ops: Op[];
  owners: Owner[];
  /** State changes to make once the kernel committed the plan. */
  commit: (() => void)[];
  /** Filters left out because a set they name could not be made. */
  blocked: { portId: string; groupId: string; family: Family }[];
  /** Mark ids: free ones taken (from the end of the free list), the next new one, ids freed. */
  ids: { fromFree: number; next: number; freed: number[] };
  /** Bridged mode: the count of stateless ports of each MAC this plan changes it for. */
  macUsers: Map<string, number>;
  /** The ruleset generation the plan was read at, when it deletes a table it found holding nothing
   *  of another program's: the kernel takes it only if nothing changed since (else it is planned
   *  again). */
  generation?: number;
}

/** Adds operations to a plan, each with its owner. */
export type Push = (o: Owner, ...ops: Op[]) => void;

export class NftablesError extends Error {
  constructor(
    message: string,
    readonly failures: OpFailure[] = [],
  ) {
    super(message);
    this.name = 'NftablesError';
  }
}

export class PortObjects {
  /** Filters whose chains are in the kernel (and, for ports without port security, none). */
  private readonly filters = new Map<string, PortFilter>();
  /** New ports whose filter the kernel refused: their device's traffic is dropped. */
  private readonly failed = new Map<string, string>();
  /** Bridged mode: each filtered port's mark id. */
  private readonly ids = new Map<string, number>();
  private readonly freeIds: number[] = [];
  private nextId = 1;
  /** Bridged mode: of how many stateless ports each MAC in the stateless-MAC set is a MAC. Ports may
   *  share one (a VRRP pair's virtual MAC, an allowed pair of both): it goes with the last of them. */
  private readonly statelessMacUsers = new Map<string, number>();
  /** Rules of each chain as last committed (`family/chain` → JSON), to rewrite only what changed. */
  private readonly written = new Map<string, string>();
  /** What each rule of the ports' inet chains is, by chain: counters and trace name rules by it. */
  private readonly tags = new Map<string, RuleTag[]>();

  constructor(
    private readonly layout: Layout,
    private readonly log: LogSettings | undefined,
    /** Operations making a chain, as this run's first transaction must write them (tables.ts). */
    private readonly fresh: (ops: Op[]) => Op[],
  ) {}

  /** A filter in the kernel. */
  filter(portId: string): PortFilter | undefined {
    return this.filters.get(portId);
  }

  /** What the rules of a port's inet chain are, in order. */
  tagsOf(chain: string): RuleTag[] | undefined {
    return this.tags.get(chain);
  }

  /** The ports' inet chains as written. */
  inetChains(): string[] {
    return [...this.written.keys()].filter((k) => k.startsWith('inet/')).map((k) => k.slice(5));
  }

  /** The port and chain kind of each of the ports' inet chains (of `portIds`, or all). */
  chainOwners(portIds?: readonly string[]): Map<string, { portId: string; kind: PortChainKind }> {
    const n = this.layout.names;
    const out = new Map<string, { portId: string; kind: PortChainKind }>();
    for (const f of portIds ? portIds.flatMap((id) => this.filters.get(id) ?? []) : this.filters.values()) {
      if (!f.filtered) continue;
      out.set(n.ingressChain(f.portId), { portId: f.portId, kind: 'ingress' });
      out.set(n.egressChain(f.portId), { portId: f.portId, kind: 'egress' });
      out.set(n.spoofChain(f.portId), { portId: f.portId, kind: 'anti-spoofing' });
    }
    return out;
  }

  /** A plan's mark ids start from here; `commitIds` records what it took and freed. */
  planIds(): Plan['ids'] {
    return { fromFree: 0, next: this.nextId, freed: [] };
  }

  commitIds(ids: Plan['ids']): void {
    this.freeIds.length -= ids.fromFree;
    this.nextId = ids.next;
    this.freeIds.push(...ids.freed);
  }

  commitMacUsers(macUsers: Plan['macUsers']): void {
    for (const [mac, n] of macUsers) {
      if (n > 0) this.statelessMacUsers.set(mac, n);
      else this.statelessMacUsers.delete(mac);
    }
  }

  /** The stateless-MAC set's change for one port, counted in the plan (dispatch.ts, MacChange). */
  private macChange(plan: Plan): MacChange {
    return (before, after) => {
      const users = (mac: string) => plan.macUsers.get(mac) ?? this.statelessMacUsers.get(mac) ?? 0;
      const add: string[] = [];
      const del: string[] = [];
      for (const mac of before) {
        if (after.includes(mac)) continue;
        const n = users(mac);
        plan.macUsers.set(mac, Math.max(0, n - 1));
        if (n === 1) del.push(mac);
      }
      for (const mac of after) {
        if (before.includes(mac)) continue;
        const n = users(mac);
        plan.macUsers.set(mac, n + 1);
        if (n === 0) add.push(mac);
      }
      return { add, del };
    };
  }

  /** Everything forgotten (our tables were removed). */
  clear(): void {
    this.filters.clear();
    this.failed.clear();
    this.ids.clear();
    this.freeIds.length = 0;
    this.nextId = 1;
    this.written.clear();
    this.tags.clear();
    this.statelessMacUsers.clear();
  }

  /** Writes a port's chains where they changed, and its dispatch. */
  upsert(f: PortFilter, push: Push, plan: Plan): boolean {
    const owner: Owner = { kind: 'port', portId: f.portId };
    const had = this.filters.get(f.portId);
    const hadIn = had?.filtered ? had : undefined;
    const failedDev = this.failed.get(f.portId);
    const hadId = this.ids.get(f.portId);
    const commit: (() => void)[] = [];
    let changed = false;
    if (failedDev !== undefined) {
      push(owner, ...elemOps(this.layout, [], dropElems(this.layout, failedDev)));
      changed = true;
    }
    const known = knownDeviceOps(this.layout, had?.device, f.device);
    if (known.length) {
      push(owner, ...known);
      changed = true;
    }
    if (!f.filtered) {
      if (hadIn) changed = this.removeChains(hadIn, hadId, push, owner, commit, plan) || changed;
      plan.commit.push(() => {
        for (const c of commit) c();
        this.failed.delete(f.portId);
        this.filters.set(f.portId, f);
      });
      return changed;
    }
    let id = hadId;
    if (this.layout.mode === 'bridged' && id === undefined) {
      const ids = plan.ids;
      id = ids.fromFree < this.freeIds.length ? this.freeIds[this.freeIds.length - 1 - ids.fromFree++]! : ids.next++;
      if (id > MAX_MARK_ID) throw new NftablesError(`no mark left for port ${f.portId}: ${MAX_MARK_ID} ports are bound`);
    }
    const chains = portChains(f, this.layout.names, this.layout.mode, id, this.log);
    const all: [NftFamily, string, Rules][] = [
      ...[...chains.inet].map(([c, r]): [NftFamily, string, Rules] => ['inet', c, r]),
      ...[...chains.bridge].map(([c, r]): [NftFamily, string, Rules] => ['bridge', c, r]),
    ];
    changed = this.writeChains(all, push, owner, commit) || changed;
    commit.push(() => {
      for (const [c, t] of chains.tags) this.tags.set(c, t);
    });
    const before = hadIn ? dispatchElems(this.layout, hadIn, hadId) : [];
    const after = dispatchElems(this.layout, f, id);
    const same = (a: (typeof after)[number], b: (typeof after)[number]) =>
      a.family === b.family && a.set === b.set && a.key === b.key && JSON.stringify(a.verdict) === JSON.stringify(b.verdict);
    const del = before.filter((b) => !after.some((a) => same(a, b)));
    const add = after.filter((a) => !before.some((b) => same(a, b)));
    const stateless = statelessOps(this.layout, hadIn, hadId, f, id, this.macChange(plan));
    if (del.length || add.length || stateless.length) {
      push(owner, ...elemOps(this.layout, add, del), ...stateless);
      changed = true;
    }
    plan.commit.push(() => {
      for (const c of commit) c();
      if (id !== undefined) this.ids.set(f.portId, id);
      this.failed.delete(f.portId);
      this.filters.set(f.portId, f);
    });
    return changed;
  }

  /** Chains made to hold their rules, skipping those that already do. New chains are all made before
   *  any rule is added: the egress chain jumps to the anti-spoof chain. */
  private writeChains(chains: [NftFamily, string, Rules][], push: Push, owner: Owner, commit: (() => void)[]): boolean {
    const changed = chains
      .map(([family, chain, rules]) => ({ family, chain, rules, key: `${family}/${chain}`, text: JSON.stringify(rules) }))
      .filter((c) => this.written.get(c.key) !== c.text);
    for (const c of changed) {
      const where = at(this.layout, c.family);
      push(
        owner,
        ...(this.written.has(c.key)
          ? [{ op: 'flushChain', ...where, chain: c.chain } as Op]
          : this.fresh([{ op: 'chain', ...where, chain: c.chain }])),
      );
    }
    for (const c of changed)
      push(owner, ...c.rules.map((stmts): Op => ({ op: 'rule', ...at(this.layout, c.family), chain: c.chain, stmts })));
    commit.push(() => {
      for (const c of changed) this.written.set(c.key, c.text);
    });
    return changed.length > 0;
  }

  /** Removes a filtered port's dispatch, untracked entries and chains. */
  private removeChains(f: PortFilter, id: number | undefined, push: Push, owner: Owner, commit: (() => void)[], plan: Plan): boolean {
    push(
      owner,
      ...elemOps(this.layout, [], dispatchElems(this.layout, f, id)),
      ...statelessOps(this.layout, f, id, undefined, undefined, this.macChange(plan)),
    );
    const chains = portChains(f, this.layout.names, this.layout.mode, id);
    const gone: [NftFamily, string][] = [
      ...[...chains.inet.keys()].map((c) => ['inet', c] as [NftFamily, string]),
      ...[...chains.bridge.keys()].map((c) => ['bridge', c] as [NftFamily, string]),
    ];
    // Emptied first: the egress chain jumps to the anti-spoof chain, which cannot go while it does.
    for (const [family, chain] of gone) push(owner, { op: 'flushChain', ...at(this.layout, family), chain });
    for (const [family, chain] of gone) push(owner, { op: 'delChain', ...at(this.layout, family), chain });
    if (id !== undefined) plan.ids.freed.push(id);
    commit.push(() => {
      for (const [family, chain] of gone) this.written.delete(`${family}/${chain}`);
      for (const c of chains.inet.keys()) this.tags.delete(c);
      this.ids.delete(f.portId);
    });
    return true;
  }

  remove(portId: string, push: Push, plan: Plan): boolean {
    const owner: Owner = { kind: 'port', portId };
    const had = this.filters.get(portId);
    const failedDev = this.failed.get(portId);
    const commit: (() => void)[] = [];
    let changed = false;
    if (failedDev !== undefined) {
      push(owner, ...elemOps(this.layout, [], dropElems(this.layout, failedDev)));
      changed = true;
    }
    if (had?.filtered) changed = this.removeChains(had, this.ids.get(portId), push, owner, commit, plan) || changed;
    const known = knownDeviceOps(this.layout, had?.device, undefined);
    if (known.length) {
      push(owner, ...known);
      changed = true;
    }
    plan.commit.push(() => {
      for (const c of commit) c();
      this.filters.delete(portId);
      this.failed.delete(portId);
    });
    return changed;
  }

  /** A port whose filter cannot go in: a port already filtered keeps its previous filter; a new one
   *  is dropped (never left unfiltered). */
  drop(f: PortFilter, push: Push, plan: Plan): boolean {
    if (this.filters.get(f.portId)?.filtered) return false;
    const had = this.failed.get(f.portId);
    if (had === f.device) return false;
    push(
      { kind: 'shared' },
      ...elemOps(this.layout, dropElems(this.layout, f.device), had === undefined ? [] : dropElems(this.layout, had)),
    );
    plan.commit.push(() => this.failed.set(f.portId, f.device));
    return true;
  }
}
