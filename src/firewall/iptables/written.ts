// Our chains in the iptables, ip6tables and ebtables tables as the tools acknowledged writing them,
// and the writes that keep the kernel equal to what is wanted: a chain is rewritten only where the
// wanted lines differ from the written ones, in one restore per table naming only those chains (one
// for both ebtables tables), with the jumps from the built-in chains (hooks) added where missing. This mirror is the
// baseline drift is judged by (`repair`) and changes only after a write the tools acknowledged.
import type { DataplaneStats, Mode, ReconcileReport } from '../dataplane.js';
import type { KernelNames } from './names.js';
import { editInPlace, type InPlace } from './edit.js';
import { restoreScript, type Chains, type IpVersion, type Sections } from './render.js';
import { chainLines, parseChains, type EbTable, type Iptables, type Table } from './tools.js';

export const VERSIONS: IpVersion[] = [4, 6];
const TABLES: Table[] = ['filter', 'raw'];
/** ebtables: filter (ARP protection, tagged frames) and nat (source MACs, in PREROUTING: before the
 *  bridge learns where a MAC is, which the filter table's chains run after). */
const EB_TABLES: EbTable[] = ['filter', 'nat'];

/** Where one of our chains is hooked in: table, built-in chain, our chain. */
interface Hook {
  table: Table | EbTable;
  builtin: string;
  chain: string;
  versions: (IpVersion | 'eb')[];
}

/** One table of one tool, as the writes, the repair and the removals reach it. */
interface Target {
  version: IpVersion | 'eb';
  table: Table | EbTable;
  /** Our chains in it as written. */
  had: Chains;
  save(): Promise<string>;
  /** The restore input making `changed` chains hold their rules (of `chains`) and removing `removed`
   *  ones, then `edits`, then `extra` lines. */
  script(chains: Chains, changed: string[], removed: string[], extra: string[], edits?: string[]): string;
  restore(script: string): Promise<void>;
}

/** What one table's write will do. */
interface TablePlan {
  target: Target;
  want: Chains;
  changed: string[];
  removed: string[];
  hooks: { lines: string[]; keys: string[] };
  edits: Map<string, InPlace>;
  commands: string[];
}

export class WrittenChains {
  private readonly ip: Record<IpVersion, Record<Table, Chains>> = {
    4: { filter: new Map(), raw: new Map() },
    6: { filter: new Map(), raw: new Map() },
  };
  private readonly eb: Record<EbTable, Chains> = { filter: new Map(), nat: new Map() };
  /** Chains that may read back differently from how we wrote them: re-read after each write. */
  private readonly inexact = new Set<string>();
  /** Hooks known to be in place. */
  private readonly hooked = new Set<string>();

  /** The nf_tables generation as our last write or compare left it. */
  private seenGen: number | undefined;

  constructor(
    private readonly tools: Iptables,
    private readonly names: KernelNames,
    private readonly mode: Mode,
    private readonly stats: DataplaneStats,
    /** The nf_tables ruleset generation, when the tools write nf_tables (undefined otherwise). */
    private readonly generation: () => Promise<number | undefined> = async () => undefined,
  ) {}

  /** An edit in place names rule positions as we wrote them: it is safe only if no one else has
   *  committed since our last write or compare (a rule of ours deleted by hand would move every
   *  insertion after it, one past a chain's final ACCEPT). Where the tools do not write nf_tables
   *  there is no generation to go by, and the mirror is trusted as before. */
  private async untouchedSinceOurs(): Promise<boolean> {
    const now = await this.generation();
    return now === undefined || now === this.seenGen;
  }

  /** Our chains of a table as written. */
  of(v: IpVersion, table: Table): ReadonlyMap<string, readonly string[]> {
    return this.ip[v][table];
  }

  private get hooks(): Hook[] {
    return this.hooksFor(this.mode);
  }

  private hooksFor(mode: Mode): Hook[] {
    const n = this.names;
    const hooks: Hook[] = [
      { table: 'filter', builtin: 'FORWARD', chain: n.dispatchChain, versions: [4, 6] },
      { table: 'filter', builtin: 'INPUT', chain: n.inputChain, versions: [4, 6] },
      { table: 'raw', builtin: 'PREROUTING', chain: n.rawChain, versions: [4, 6] },
    ];
    if (mode === 'bridged') {
      hooks.push({ table: 'filter', builtin: 'FORWARD', chain: n.arpDispatchChain, versions: ['eb'] });
      hooks.push({ table: 'filter', builtin: 'INPUT', chain: n.arpDispatchChain, versions: ['eb'] });
      hooks.push({ table: 'nat', builtin: 'PREROUTING', chain: n.macDispatchChain, versions: ['eb'] });
    }
    return hooks;
  }

  private ipTarget(v: IpVersion, table: Table): Target {
    return {
      version: v,
      table,
      had: this.ip[v][table],
      save: () => this.tools.save(v, table),
      script: (chains, changed, removed, extra, edits) => restoreScript(table, chains, changed, removed, extra, edits),
      restore: (script) => this.tools.restore(v, script),
    };
  }

  private ebTarget(table: EbTable): Target {
    return {
      version: 'eb',
      table,
      had: this.eb[table],
      save: () => this.tools.ebSave(table),
      script: (chains, changed, removed, extra, edits) => ebScript(table, chains, changed, removed, extra, edits),
      restore: (script) => this.tools.ebRestore(script),
    };
  }

  /** Every table our chains may be in: iptables' and ip6tables', and ebtables' in bridged mode. */
  private targets(mode: Mode = this.mode): Target[] {
    const ip = VERSIONS.flatMap((v) => TABLES.map((t) => this.ipTarget(v, t)));
    return mode === 'bridged' ? [...ip, ...EB_TABLES.map((t) => this.ebTarget(t))] : ip;
  }

  /** Makes the table hold `want`: chains that differ are rewritten, written chains neither wanted nor
   *  kept are removed, hooks to chains that are there are added; one restore, or none if nothing
   *  differs. `inexact`: chains among `want` that may read back otherwise. `sections`: chains among
   *  `want` whose rules are these sections, edited in place where they were written before
   *  (./edit.ts). Returns the removed chains. */
  async write(
    v: IpVersion,
    table: Table,
    want: Chains,
    keep: (chain: string) => boolean,
    opts: { inexact?: Iterable<string>; sections?: ReadonlyMap<string, Sections> } = {},
  ): Promise<string[]> {
    const [plan] = await this.writeTables([{ target: this.ipTarget(v, table), want }], keep, opts.sections);
    const changed = plan?.changed ?? [];
    for (const c of opts.inexact ?? []) this.inexact.add(c);
    if (changed.some((c) => this.inexact.has(c))) await this.rebase(v, table);
    return plan?.removed ?? [];
  }

  /** The same for the ebtables tables (filter: ARP protection and tagged frames; nat: source MACs),
   *  both in one ebtables-restore. */
  async writeEb(want: Record<EbTable, Chains>, keep: (chain: string) => boolean, sections?: ReadonlyMap<string, Sections>): Promise<void> {
    await this.writeTables(
      EB_TABLES.map((t) => ({ target: this.ebTarget(t), want: want[t] })),
      keep,
      sections,
    );
  }

  /** Tables of one tool written in one restore (see `write`): the chains to rewrite, the chains to
   *  remove, the hook lines and the in-place edits of each. `had` follows what the tool took. Returns
   *  the plans that were carried out. */
  private async writeTables(
    tables: { target: Target; want: Chains }[],
    keep: (chain: string) => boolean,
    sections: ReadonlyMap<string, Sections> | undefined,
  ): Promise<TablePlan[]> {
    const plans: TablePlan[] = [];
    for (const { target, want } of tables) {
      const plan = await this.plan(target, want, keep, sections);
      if (plan.changed.length || plan.commands.length || plan.removed.length || plan.hooks.lines.length) plans.push(plan);
    }
    if (plans.length === 0) return [];
    const script = plans.map((p) => p.target.script(p.want, p.changed, p.removed, p.hooks.lines, p.commands)).join('');
    try {
      await plans[0]!.target.restore(script);
    } catch (e) {
      // An edit names rules as we wrote them: one changed or gone behind our back fails it. Rewritten
      // whole, the chain needs nothing of what the kernel holds.
      if (plans.every((p) => p.commands.length === 0)) throw e;
      return this.writeTables(tables, keep, undefined);
    }
    this.stats.restores++;
    this.seenGen = await this.generation();
    for (const { target, want, hooks, changed, edits, removed } of plans) {
      for (const k of hooks.keys) this.hooked.add(k);
      for (const c of changed) target.had.set(c, want.get(c)!);
      for (const [c, e] of edits) target.had.set(c, e.lines);
      for (const c of removed) target.had.delete(c);
    }
    return plans;
  }

  /** What a write of `want` into one table must do (nothing yet is written). */
  private async plan(
    target: Target,
    want: Chains,
    keep: (chain: string) => boolean,
    sections: ReadonlyMap<string, Sections> | undefined,
  ): Promise<TablePlan> {
    const { had } = target;
    const differ = [...want.keys()].filter((c) => !same(want.get(c), had.get(c)));
    const removed = [...had.keys()].filter((c) => !want.has(c) && !keep(c));
    const hooks = await this.missingHooks(target, (c) => want.has(c) || had.has(c));
    const editable =
      sections && differ.some((c) => sections.has(c) && had.has(c)) && (await this.untouchedSinceOurs()) ? sections : undefined;
    return { target, want, removed, hooks, ...inPlace(differ, had, editable) };
  }

  /** Chains that read back otherwise than written take the kernel's form as the baseline. */
  private async rebase(v: IpVersion, table: Table): Promise<void> {
    const kernel = parseChains(await this.tools.save(v, table), (c) => this.names.owns(c));
    const had = this.ip[v][table];
    for (const c of had.keys()) if (kernel.has(c)) had.set(c, kernel.get(c)!);
  }

  /** Jump lines of `table` not yet known to be in place (checked against the kernel once), and the
   *  keys to mark once the write that adds them succeeded. Only jumps to chains that are there
   *  (`present`: written before, or in the same write): a host with no port yet has none of them. */
  private async missingHooks(
    target: Target,
    present: (chain: string) => boolean,
    savedNow?: string,
  ): Promise<{ lines: string[]; keys: string[] }> {
    const { table, version: v } = target;
    const unknown = this.hooks.filter(
      (h) => h.table === table && h.versions.includes(v) && present(h.chain) && !this.hooked.has(hookKey(h, v)),
    );
    if (unknown.length === 0) return { lines: [], keys: [] };
    const saved = savedNow ?? (await target.save());
    const lines: string[] = [];
    const keys: string[] = [];
    for (const h of unknown) {
      if (chainLines(saved, h.builtin).includes(`-j ${h.chain}`)) this.hooked.add(hookKey(h, v));
      else {
        lines.push(`-I ${h.builtin} 1 -j ${h.chain}`);
        keys.push(hookKey(h, v));
      }
    }
    return { lines, keys };
  }

  /** Drift: one save per table, compared with what we wrote; what differs is rewritten and missing
   *  hooks are added, in one restore per table. Chains of ours we did not write are removed after, in
   *  a restore of their own (and not those another program's rule jumps to): one that cannot go must
   *  not stop the repair of the rest. */
  async repair(report: ReconcileReport): Promise<void> {
    const n = this.names;
    this.hooked.clear();
    for (const target of this.targets()) {
      const { had, table } = target;
      // The raw table and the ebtables tables are left alone until a chain of ours is wanted there.
      if (had.size === 0 && (table === 'raw' || target.version === 'eb')) continue;
      const saved = await target.save();
      const kernel = parseChains(saved, (c) => n.owns(c));
      const changed = [...had.keys()].filter((c) => !same(kernel.get(c), had.get(c)));
      const referenced = new Set(referencedByOthers(saved, n));
      const stale = [...kernel.keys()].filter((c) => !had.has(c) && !referenced.has(c));
      const hooks = await this.missingHooks(target, (c) => had.has(c), saved);
      if (changed.length || hooks.lines.length) {
        await target.restore(target.script(had, changed, [], hooks.lines));
        this.stats.restores++;
        for (const k of hooks.keys) this.hooked.add(k);
        report.chainsRepaired += changed.length + hooks.lines.length;
        if (target.version !== 'eb' && changed.some((c) => this.inexact.has(c))) await this.rebase(target.version, table as Table);
      }
      if (stale.length) {
        this.stats.restores++;
        await target.restore(target.script(had, [], stale, [])).then(
          () => void (report.staleRemoved += stale.length),
          () => undefined, // still referenced (by a hook of an earlier run's, say): the full check tries again
        );
      }
    }
    // Compared and put back: the kernel holds our chains as the mirror says.
    this.seenGen = await this.generation();
  }

  /** Chains of ours in the kernel that we did not write (left by an earlier run), removed. */
  async removeStale(): Promise<number> {
    let removed = 0;
    const n = this.names;
    for (const target of this.targets()) {
      const { had } = target;
      const stale = [...parseChains(await target.save(), (c) => n.owns(c)).keys()].filter((c) => !had.has(c));
      if (stale.length === 0) continue;
      await target.restore(target.script(had, [], stale, []));
      this.stats.restores++;
      removed += stale.length;
    }
    return removed;
  }

  /** Every chain of ours and every hook to one, whoever wrote them, removed; a chain another
   *  program's rule still jumps to is emptied instead (its traffic returns at once) and reported. */
  async removeAll(): Promise<{ removed: number; left: string[] }> {
    const n = this.names;
    let removed = 0;
    const left: string[] = [];
    // Whatever the mode: chains and hooks an earlier run in bridged mode wrote go too.
    for (const target of this.targets('bridged')) {
      const { version: v, table } = target;
      // A host without ebtables has none of our ebtables chains.
      const saved = v === 'eb' ? await target.save().catch(() => '') : await target.save();
      const ours = [...parseChains(saved, (c) => n.owns(c)).keys()];
      const unhook = this.hooksFor('bridged')
        .filter((h) => h.table === table && h.versions.includes(v))
        .flatMap((h) =>
          chainLines(saved, h.builtin)
            .filter((l) => l === `-j ${h.chain}`)
            .map(() => `-D ${h.builtin} -j ${h.chain}`),
        );
      if (ours.length === 0 && unhook.length === 0) continue;
      const referenced = new Set(referencedByOthers(saved, n));
      const del = ours.filter((c) => !referenced.has(c));
      // Every chain of ours emptied (a chain a restore declares is flushed), the hooks taken out, and
      // the chains no other program's rule jumps to deleted.
      await target.restore(
        target.script(
          new Map(),
          ours.filter((c) => !del.includes(c)),
          del,
          [],
          unhook,
        ),
      );
      removed += del.length;
      for (const c of referenced) {
        const tool = v === 'eb' ? 'ebtables' : `ip${v === 6 ? '6' : ''}tables`;
        if (ours.includes(c)) left.push(`${tool} ${table} chain ${c} (referenced by another program's rule; emptied)`);
      }
    }
    this.clear();
    return { removed, left };
  }

  /** Forgets what was written (after a removal of everything). */
  clear(): void {
    this.hooked.clear();
    this.inexact.clear();
    for (const v of VERSIONS) for (const t of TABLES) this.ip[v][t].clear();
    for (const t of EB_TABLES) this.eb[t].clear();
  }
}

function hookKey(h: Hook, v: IpVersion | 'eb'): string {
  return `${h.table}/${v}/${h.builtin}/${h.chain}`;
}

/** Of the chains that differ from what was written, those edited in place (with the commands, in
 *  order, and each one's rules after them) and those rewritten whole (`changed`). A chain whose rules
 *  are only in another order within their sections is as wanted: no command. */
function inPlace(
  differ: string[],
  had: ReadonlyMap<string, readonly string[]>,
  sections: ReadonlyMap<string, Sections> | undefined,
): { changed: string[]; edits: Map<string, InPlace>; commands: string[] } {
  const edits = new Map<string, InPlace>();
  for (const c of differ) {
    const want = sections?.get(c);
    const held = had.get(c);
    const edit = want && held ? editInPlace(c, held, want) : undefined;
    if (edit) edits.set(c, edit);
  }
  return { changed: differ.filter((c) => !edits.has(c)), edits, commands: [...edits.values()].flatMap((e) => e.commands) };
}

function same(a: readonly string[] | undefined, b: readonly string[] | undefined): boolean {
  if (!a || !b || a.length !== b.length) return false;
  return a.every((l, i) => l === b[i]);
}

/** Chains of ours that a rule of a chain not ours jumps or goes to. */
function referencedByOthers(saved: string, n: KernelNames): string[] {
  const out: string[] = [];
  for (const line of saved.split('\n')) {
    if (!line.startsWith('-A ')) continue;
    const owner = line.slice(3).split(' ')[0]!;
    if (n.owns(owner)) continue;
    const m = / -[jg] (\S+)/.exec(line);
    if (m && n.owns(m[1]!) && !/^(FORWARD|INPUT|PREROUTING)$/.test(owner)) out.push(m[1]!);
    // A jump from a built-in chain to one of ours that is not our hook (someone added it by hand).
    else if (m && n.owns(m[1]!) && !(line === `-A ${owner} -j ${m[1]}`)) out.push(m[1]!);
  }
  return out;
}

/** ebtables-restore --noflush input for one table; the order of restoreScript's (./render.ts), a
 *  user chain's policy RETURN where iptables has none. */
function ebScript(table: EbTable, chains: Chains, changed: string[], removed: string[], extra: string[], edits: string[] = []): string {
  return restoreScript(table, chains, changed, removed, extra, edits).replace(/^(:\S+) - \[0:0\]$/gm, '$1 RETURN');
}
