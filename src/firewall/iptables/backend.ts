// The iptables backend: member sets as ipsets through the native addon (netlink, no child process),
// port filters as iptables chains written by one `iptables-restore --noflush` per family that names
// only the chains that changed, ARP and source-MAC protection as ebtables chains, and NOTRACK for stateless ports in
// the raw table. This file decides what the chains should hold (rendered by render.ts) and keeps the
// sets; written.ts writes the chains and keeps what the tools acknowledged, the baseline drift is
// judged by. A filter the kernel refuses is found by writing the ports one by one, reported, and its
// port dropped (never left unfiltered); the other ports go in.
import type { Logger } from 'pino';
import { IpsetClient, tempSetName, type SetSpec } from '../../addon/ipset.js';
import { deleteConntrackBetween, LinkWatch, listLinks } from '../../addon/conntrack.js';
import { bridgeZones, cutsInZones, ZONED_KIND } from '../zones.js';
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
  type PortChainKind,
  type PortFilter,
  type PortRuleMap,
  type ReconcileReport,
  type RuleCount,
  type SetRef,
} from '../dataplane.js';
import { isUntracked, type RuleTag } from '../policy.js';
import { dedupePairs } from '../cuts.js';
import { NftClient } from '../../addon/nftables.js';
import { KernelNames } from './names.js';
import { Iptables, parseCounts } from './tools.js';
import {
  DEFAULT_MARK_BIT,
  markHex,
  maxelemFor,
  renderArp,
  renderArpDispatch,
  renderDispatch,
  renderMacDispatch,
  renderMacSources,
  renderPortChains,
  renderRaw,
  type Chains,
  type IpVersion,
} from './render.js';
import { VERSIONS, WrittenChains } from './written.js';

export interface IptablesOptions {
  netns?: string;
  prefix?: string;
  mode?: Mode;
  /** Interface-name prefixes of VM ports (e.g. Neutron's `tap`): such a device the engine does not
   *  know is dropped rather than passed. Default none. */
  unknownDevicePrefixes?: string[];
  logger?: Logger;
  /** Security-group logging: where the logging rules send packets, and their rate limit. */
  log?: LogSettings;
  /** The bit of the packet mark that tells raw PREROUTING a frame goes to a stateless port (bridged
   *  mode; render.ts, DEFAULT_MARK_BIT). */
  markBit?: number;
  /** Bridges of these name prefixes track their traffic in a conntrack zone each (bridged mode;
   *  ../zones.ts): a rule per bridge present, brought up to date by every write and check. */
  conntrackZoneBridges?: string[];
}

interface OwnSet {
  name: string;
  spec: SetSpec;
}

export class IptablesDataplane implements Dataplane {
  readonly name = 'iptables';
  readonly stats: DataplaneStats = { setSyncs: 0, setDeltas: 0, restores: 0 };
  readonly names: KernelNames;
  private readonly mode: Mode;
  /** The filters whose chains are in the kernel (what the dispatch chains send traffic to). */
  private readonly filters = new Map<string, PortFilter>();
  /** Ports whose filter the kernel refused: their traffic is dropped until it is in. */
  private readonly failed = new Set<string>();
  /** Our chains as the tools acknowledged writing them. */
  private readonly written: WrittenChains;
  /** What each line of the ports' filter chains is, per family and chain: counters and trace name
   *  rules by it. */
  private readonly tags: Record<IpVersion, Map<string, RuleTag[]>> = { 4: new Map(), 6: new Map() };
  private readonly sets = new Map<string, OwnSet>();
  /** The mark bit of frames to a stateless port, as the tools print it. */
  private readonly statelessMark: string;
  /** Reads the nf_tables ruleset generation when the tools write nf_tables (null: they do not;
   *  undefined: not asked yet). */
  private generation: NftClient | null | undefined;
  /** The generation at the end of the last compare of our chains. */
  private chainsComparedAt: number | undefined;
  /** Prefixes of the bridges whose traffic is zoned (bridged mode; empty: none). */
  private readonly zoneBridges: readonly string[];
  /** The zoned bridges the raw chain was last written for. */
  private zones: { bridge: string; zone: number }[] = [];
  /** Whom to tell of bridges made or gone (the engine, which then calls refreshDevices), and the
   *  watch that hears them (started by the first read of the bridges; null if it could not be). */
  private devicesChanged: (() => void) | null = null;
  private linkWatch: Promise<LinkWatch | null> | null = null;

  private constructor(
    private readonly ipset: IpsetClient,
    private readonly tools: Iptables,
    private readonly opts: IptablesOptions,
  ) {
    this.names = new KernelNames(opts.prefix ?? 'sg');
    this.mode = opts.mode ?? 'bridged';
    this.statelessMark = markHex(opts.markBit ?? DEFAULT_MARK_BIT);
    this.zoneBridges = this.mode === 'bridged' ? (opts.conntrackZoneBridges ?? []) : [];
    this.written = new WrittenChains(tools, this.names, this.mode, this.stats, () => this.rulesetGeneration());
  }

  static async open(opts: IptablesOptions = {}): Promise<IptablesDataplane> {
    const ipset = await IpsetClient.open(opts.netns ? { netns: opts.netns } : {});
    return new IptablesDataplane(ipset, new Iptables(opts.netns), opts);
  }

  // ---- apply ----

  async apply(c: ChangeSet): Promise<ApplyOutcome> {
    const out: ApplyOutcome = { failedSets: [], failedFilters: [], conntrackDeleted: 0 };
    const newlyFailedSets = new Set<string>();

    // 1. Sets exist and hold their members before any rule names them.
    for (const s of c.sets.fill) {
      try {
        await this.fillSet(s, s.members);
      } catch (e) {
        out.failedSets.push({ ref: s, error: e as Error });
        if (!this.sets.has(setKey(s))) newlyFailedSets.add(setKey(s));
      }
    }
    for (const d of c.sets.delta) {
      const own = this.sets.get(setKey(d));
      if (!own) continue;
      try {
        const size = d.members().length;
        if (maxelemFor(size) > (own.spec.maxelem ?? 0)) {
          await this.fillSet(d, d.members());
        } else {
          if (d.del.length) await this.ipset.del(own.name, d.del, { exist: true });
          if (d.add.length) await this.ipset.add(own.name, d.add, { exist: true });
          this.stats.setDeltas++;
        }
      } catch (e) {
        out.failedSets.push({ ref: d, error: e as Error });
      }
    }

    // 2. Filters: rules naming a set that could not be made are not written (their port keeps its
    //    previous filter, or is dropped if new).
    if (c.filters.upsert.length || c.filters.remove.length) {
      const upsert: PortFilter[] = [];
      for (const f of c.filters.upsert) {
        const blocked = f.sets.find((s) => newlyFailedSets.has(setKey(s)));
        if (blocked)
          out.failedFilters.push({
            portId: f.portId,
            error: new Error(`set of group ${blocked.groupId} (IPv${blocked.family}) could not be made`),
          });
        else upsert.push(f);
      }
      await this.writeFilters(upsert, c.filters.remove, out);
    }

    // 3. Sets no rule names any more.
    for (const ref of c.sets.destroy) {
      const own = this.sets.get(setKey(ref));
      if (!own) continue;
      this.sets.delete(setKey(ref));
      await this.ipset
        .destroy(own.name)
        .catch((e: unknown) => this.opts.logger?.warn({ err: e, set: own.name }, 'stale set not destroyed; reconcile will retry'));
    }

    // 4. Cut what the new state no longer admits.
    if (c.cuts.length)
      out.conntrackDeleted = await deleteConntrackBetween(
        await cutsInZones(dedupePairs(c.cuts), this.zoneBridges, this.opts.netns),
        this.opts.netns,
      );
    return out;
  }

  private async fillSet(ref: SetRef, members: string[]): Promise<void> {
    const name = this.names.groupSet(ref.groupId, ref.family);
    const spec: SetSpec = { type: 'hash:net', family: ref.family === 4 ? 'inet' : 'inet6', maxelem: maxelemFor(members.length) };
    await this.ipset.syncSet(name, spec, members);
    this.stats.setSyncs++;
    this.sets.set(setKey(ref), { name, spec });
  }

  /** Writes the chains of `upsert`, removes those of `remove`, and the dispatch; a port the kernel
   *  refuses is found by writing ports one at a time, and reported. */
  private async writeFilters(upsert: PortFilter[], remove: { portId: string }[], out: ApplyOutcome): Promise<void> {
    const next = new Map(this.filters);
    // Ports dropped in this write: failed before and not written again now, or refused just now.
    const failed = new Set(this.failed);
    for (const r of remove) {
      next.delete(r.portId);
      failed.delete(r.portId);
    }
    for (const f of out.failedFilters) if (!this.filters.has(f.portId)) failed.add(f.portId);
    for (const f of upsert) {
      next.set(f.portId, f);
      failed.delete(f.portId);
    }
    try {
      await this.writeState(next, upsert, failed);
    } catch (e) {
      // Find the ports the kernel refuses; write the rest with them dropped.
      const bad: PortFilter[] = [];
      for (const f of upsert) {
        const alone = new Map(this.filters);
        alone.set(f.portId, f);
        try {
          await this.writeState(alone, [f], this.failed);
        } catch (err) {
          bad.push(f);
          out.failedFilters.push({ portId: f.portId, error: err as Error });
        }
      }
      if (bad.length === 0) throw e;
      for (const f of bad) {
        const prev = this.filters.get(f.portId);
        if (prev) next.set(f.portId, prev);
        else failed.add(f.portId);
      }
      await this.writeState(
        next,
        upsert.filter((f) => !bad.includes(f)),
        failed,
      );
    }
    this.filters.clear();
    for (const [id, f] of next) this.filters.set(id, f);
    this.failed.clear();
    for (const id of failed) this.failed.add(id);
  }

  /** Makes the kernel hold `filters` (ports in `failed` dropped), rewriting only what differs from
   *  what was written. `changedPorts` are the ports whose own chains may differ. */
  private async writeState(filters: Map<string, PortFilter>, changedPorts: PortFilter[], failed: ReadonlySet<string>): Promise<void> {
    const n = this.names;
    const dispatch = renderDispatch(filters.values(), failed, this.mode, n, this.opts.unknownDevicePrefixes);
    for (const v of VERSIONS) {
      const sections = new Map([
        [n.dispatchChain, dispatch.forward],
        [n.portsChain, dispatch.ports],
        [n.inputChain, dispatch.input],
      ]);
      const want: Chains = new Map([...sections].map(([c, s]) => [c, s.flat()]));
      want.set(n.fallbackChain, ['-j DROP']);
      const inexact = new Set<string>();
      const tags = new Map<string, RuleTag[]>();
      for (const f of changedPorts) {
        if (!f.filtered || !filters.has(f.portId) || failed.has(f.portId)) continue;
        const pc = renderPortChains(f, n, this.opts.log);
        for (const [c, lines] of v === 4 ? pc.v4 : pc.v6) want.set(c, lines);
        for (const [c, t] of v === 4 ? pc.tags.v4 : pc.tags.v6) tags.set(c, t);
        for (const c of pc.inexact) inexact.add(c);
      }
      const keep = this.chainsOf(filters, failed);
      const removed = await this.written.write(v, 'filter', want, (c) => keep.has(c), { inexact, sections });
      for (const [c, t] of tags) this.tags[v].set(c, t);
      for (const c of removed) this.tags[v].delete(c);
    }
    // After the filter chains, as before: the zones only divide what they admit.
    const zones = await this.zonedBridgesNow();
    for (const v of VERSIONS) await this.writeRaw(v, filters, zones);
    this.zones = zones;
    if (this.mode === 'bridged') await this.writeBridge(filters, changedPorts, failed);
  }

  /** The zoned bridges present now (a link dump), none without zones. The watch of the devices is
   *  on before the dump, so a bridge made after it is heard. */
  private async zonedBridgesNow(): Promise<{ bridge: string; zone: number }[]> {
    if (!this.zoneBridges.length) return [];
    await this.hearDevices();
    return bridgeZones(this.zoneBridges, await listLinks(this.opts.netns));
  }

  onDevicesChanged(changed: () => void): void {
    this.devicesChanged = changed;
  }

  /** Starts the watch of bridges made or gone, once. If it cannot be had, new bridges are zoned at
   *  each apply and periodic check, as they would be without it. */
  private async hearDevices(): Promise<void> {
    const tell = this.devicesChanged;
    if (tell && !this.linkWatch) {
      this.linkWatch = LinkWatch.start(this.opts.netns, [ZONED_KIND], tell, (message) =>
        this.opts.logger?.error(
          { err: message },
          'iptables: bridges made from now on are zoned at the periodic check (device notifications ended)',
        ),
      ).catch((e: unknown) => {
        this.opts.logger?.error(
          { err: e },
          'iptables: bridges made from now on are zoned at the periodic check (device notifications unavailable)',
        );
        return null;
      });
    }
    await this.linkWatch;
  }

  async refreshDevices(): Promise<boolean> {
    return this.refreshZones();
  }

  /** A bridge made or gone since the raw chain was written gets or loses its zone rule: iptables
   *  reads no device index, so each bridge has a rule of its own, written when the agent hears of
   *  the bridge (the device watch; failing it, the next apply or periodic check: meanwhile its
   *  traffic is tracked in the zone 0, and a connection moved to its zone later goes on where the
   *  rules admit it). */
  private async refreshZones(): Promise<boolean> {
    if (!this.zoneBridges.length) return false;
    const now = await this.zonedBridgesNow();
    if (JSON.stringify(now) === JSON.stringify(this.zones)) return false;
    for (const v of VERSIONS) await this.writeRaw(v, this.filters, now);
    this.opts.logger?.info({ zones: now }, 'iptables: conntrack zones of the bridges brought up to date');
    this.zones = now;
    return true;
  }

  /** The per-port chains the given filters own (kept while their ports stay). */
  private chainsOf(filters: Map<string, PortFilter>, failed: ReadonlySet<string>): Set<string> {
    const n = this.names;
    const out = new Set<string>();
    for (const f of filters.values()) {
      if (!f.filtered || failed.has(f.portId)) continue;
      out.add(n.ingressChain(f.portId)).add(n.egressChain(f.portId)).add(n.spoofChain(f.portId));
    }
    return out;
  }

  private async writeRaw(
    v: IpVersion,
    filters: Map<string, PortFilter>,
    zones: readonly { bridge: string; zone: number }[],
  ): Promise<void> {
    const chain = this.names.rawChain;
    const lines = renderRaw(filters.values(), this.mode, v === 6, this.statelessMark, zones);
    // The raw table is left alone until some port is stateless, or bridges are zoned.
    if (![...filters.values()].some(isUntracked) && !this.zoneBridges.length && !this.written.of(v, 'raw').has(chain)) return;
    await this.written.write(v, 'raw', new Map([[chain, lines]]), () => true);
  }

  /** The ebtables chains (bridged mode), both tables in one restore: ARP protection and tagged
   *  frames (filter), and source MACs (nat). */
  private async writeBridge(filters: Map<string, PortFilter>, changedPorts: PortFilter[], failed: ReadonlySet<string>): Promise<void> {
    const n = this.names;
    const arpDispatch = renderArpDispatch(filters.values(), failed, n);
    const macDispatch = renderMacDispatch(filters.values(), failed, n, this.statelessMark);
    const want = { filter: new Map([[n.arpDispatchChain, arpDispatch]]), nat: new Map([[n.macDispatchChain, macDispatch.flat()]]) };
    for (const f of changedPorts)
      if (f.filtered && filters.has(f.portId) && !failed.has(f.portId)) {
        want.filter.set(n.arpChain(f.portId), renderArp(f));
        want.nat.set(n.macChain(f.portId), renderMacSources(f));
      }
    const keep = new Set(
      [...filters.values()].filter((f) => f.filtered && !failed.has(f.portId)).flatMap((f) => [n.arpChain(f.portId), n.macChain(f.portId)]),
    );
    // In any order within a section: one rule per device, or per MAC.
    const sections = new Map([
      [n.arpDispatchChain, [arpDispatch]],
      [n.macDispatchChain, macDispatch],
    ]);
    await this.written.writeEb(want, (c) => keep.has(c), sections);
  }

  // ---- drift ----

  async reconcile(expected: AppliedView, opts: { full: boolean }): Promise<ReconcileReport> {
    const report: ReconcileReport = { setsRepaired: 0, chainsRepaired: 0, staleRemoved: 0 };
    // Sets: every check reads each set whole (one netlink dump each, well under a millisecond for a
    // few hundred members) and repairs it to what was written. Counting members is not enough: a
    // member swapped for another leaves the count as it was.
    for (const [key, ref] of expected.sets) {
      const own = this.sets.get(key);
      const members = expected.members(ref);
      if (!own) {
        await this.fillSet(ref, members);
        report.setsRepaired++;
        continue;
      }
      const r = await this.ipset.reconcile(own.name).catch(async () => {
        await this.fillSet(ref, members);
        return { repaired: true };
      });
      if (r.repaired) report.setsRepaired++;
    }
    // Chains: read with the tools and compared with what we wrote — unless the tools write nf_tables
    // and its generation has not moved since the last compare (nothing of anyone's changed: the
    // tools, which are most of a check's cost, need not run).
    if (await this.refreshZones()) report.chainsRepaired++;
    const generation = opts.full ? undefined : await this.rulesetGeneration();
    if (generation === undefined || generation !== this.chainsComparedAt) {
      await this.written.repair(report);
      this.chainsComparedAt = await this.rulesetGeneration();
    }
    // Sets of ours no rule names (listing every set's name is the costly part): in full checks.
    if (opts.full) report.staleRemoved += await this.removeStaleSets(expected);
    return report;
  }

  /** The nf_tables ruleset generation, when the tools write nf_tables (undefined otherwise, or when
   *  it cannot be read: then every check compares). */
  private async rulesetGeneration(): Promise<number | undefined> {
    if (this.generation === undefined) {
      const nft = (await this.tools.onNftables(this.mode === 'bridged')) ? await NftClient.open(this.opts.netns).catch(() => null) : null;
      this.generation = nft;
    }
    return this.generation ? await this.generation.generation().catch(() => undefined) : undefined;
  }

  /** Sets of ours no rule names, and the temp sets a replace of one of ours left behind (a process
   *  killed in the middle of it): no sync is running now, so none of them is in use. */
  private async removeStaleSets(expected: AppliedView): Promise<number> {
    let removed = 0;
    const n = this.names;
    const wanted = new Set([...expected.sets.values()].map((r) => n.groupSet(r.groupId, r.family)));
    const ourTemp = (name: string) => {
      const base = name.slice(0, name.lastIndexOf('.'));
      return n.owns(base) && tempSetName(base) === name;
    };
    for (const name of await this.ipset.listNames()) {
      const stale = (n.owns(name) && !wanted.has(name)) || ourTemp(name);
      if (stale)
        await this.ipset.destroy(name).then(
          () => removed++,
          () => undefined,
        );
    }
    return removed;
  }

  async removeStale(expected: AppliedView): Promise<number> {
    return (await this.written.removeStale()) + (await this.removeStaleSets(expected));
  }

  // ---- removal ----

  async cleanup(): Promise<{ removed: number; left: string[] }> {
    const n = this.names;
    const { removed: chains, left } = await this.written.removeAll();
    let removed = chains;
    for (const name of await this.ipset.listNames()) {
      if (!n.owns(name)) continue;
      await this.ipset.destroy(name).then(
        () => removed++,
        (e: unknown) => left.push(`ipset ${name} (${(e as Error).message})`),
      );
    }
    this.filters.clear();
    this.failed.clear();
    this.sets.clear();
    this.chainsComparedAt = undefined;
    this.zones = [];
    for (const v of VERSIONS) this.tags[v].clear();
    return { removed, left };
  }

  status(expected: AppliedView): DataplaneStatus {
    return {
      sets: [...expected.sets.values()].map((ref) => ({
        name: this.names.groupSet(ref.groupId, ref.family),
        groupId: ref.groupId,
        family: ref.family,
        size: expected.members(ref).length,
      })),
      chains: { v4: [...this.written.of(4, 'filter').keys()], v6: [...this.written.of(6, 'filter').keys()] },
    };
  }

  async counters(portIds?: readonly string[]): Promise<Map<string, RuleCount[]>> {
    const n = this.names;
    const owners = new Map<string, { portId: string; kind: PortChainKind }>();
    for (const f of portIds ? portIds.flatMap((id) => this.filters.get(id) ?? []) : this.filters.values()) {
      if (!f.filtered || this.failed.has(f.portId)) continue;
      owners.set(n.ingressChain(f.portId), { portId: f.portId, kind: 'ingress' });
      owners.set(n.egressChain(f.portId), { portId: f.portId, kind: 'egress' });
      owners.set(n.spoofChain(f.portId), { portId: f.portId, kind: 'anti-spoofing' });
    }
    const out = new Map<string, RuleCount[]>();
    if (owners.size === 0) return out;
    for (const v of VERSIONS) {
      for (const [chain, counts] of parseCounts(await this.tools.saveCounted(v), (c) => owners.has(c))) {
        const tags = this.tags[v].get(chain);
        // A chain that drifted is read again once repaired: its rules' places are not ours now.
        if (!tags || tags.length !== counts.length) continue;
        const owner = owners.get(chain)!;
        const list = out.get(owner.portId) ?? [];
        counts.forEach((c, i) => list.push({ chain: owner.kind, tag: tags[i]!, ...c }));
        out.set(owner.portId, list);
      }
    }
    return out;
  }

  async portRules(portId: string): Promise<PortRuleMap | undefined> {
    const f = this.filters.get(portId);
    if (!f?.filtered || this.failed.has(portId)) return undefined;
    const n = this.names;
    const chains: PortRuleMap['chains'] = [];
    const shared: PortRuleMap['shared'] = [];
    for (const v of VERSIONS) {
      const family = v === 4 ? 'ip' : 'ip6';
      const at = (chain: string, kind: PortChainKind) =>
        chains.push({ family, table: 'filter', chain, kind, tags: this.tags[v].get(chain) ?? [] });
      at(n.ingressChain(portId), 'ingress');
      at(n.egressChain(portId), 'egress');
      at(n.spoofChain(portId), 'anti-spoofing');
      shared.push(
        { family, table: 'filter', chain: n.dispatchChain, what: "dispatch of our ports' forwarded traffic (FORWARD)" },
        { family, table: 'filter', chain: n.portsChain, what: 'per-port jumps' },
        { family, table: 'filter', chain: n.inputChain, what: 'dispatch of what ports send to the host (INPUT)' },
        { family, table: 'filter', chain: n.fallbackChain, what: 'fallback drop' },
        { family, table: 'raw', chain: n.rawChain, what: 'no conntrack for stateless ports' },
      );
    }
    // The legacy tools' TRACE goes to the kernel log (nf_log), not to nf_tables' trace events.
    const traceable = await this.tools.onNftables(false).catch(() => false);
    const untraceable =
      "the iptables tools here are the legacy ones (xtables): their TRACE writes to the kernel log, not to nf_tables' trace events " +
      "that sg-agent trace reads; with iptables-nft (Debian's default) it can";
    return { chains, shared, ...(traceable ? {} : { untraceable }) };
  }

  async close(): Promise<void> {
    const watch = await this.linkWatch;
    this.linkWatch = null;
    this.devicesChanged = null;
    await Promise.all([this.ipset.close(), this.generation?.close(), watch?.stop()]);
  }
}
