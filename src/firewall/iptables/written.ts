// Our chains in the iptables, ip6tables and ebtables tables as the tools acknowledged writing them,
// and the writes that keep the kernel equal to what is wanted: a chain is rewritten only where the
// wanted lines differ from the written ones, in one restore per table naming only those chains, with
// the jumps from the built-in chains (hooks) added where they are missing. This mirror is the
// baseline drift is judged by (`repair`) and changes only after a write the tools acknowledged.
import type { DataplaneStats, Mode, ReconcileReport } from '../dataplane.js';
import type { KernelNames } from './names.js';
import { editInPlace, type InPlace } from './edit.js';
import { restoreScript, type Chains, type IpVersion, type Sections } from './render.js';
import { chainLines, parseChains, type Iptables, type Table } from './tools.js';

export const VERSIONS: IpVersion[] = [4, 6];
const TABLES: Table[] = ['filter', 'raw'];

/** Where one of our chains is hooked in: table, built-in chain, our chain. */
interface Hook {
  table: Table | 'eb';
  builtin: string;
  chain: string;
  versions: (IpVersion | 'eb')[];
}

export class WrittenChains {
  private readonly ip: Record<IpVersion, Record<Table, Chains>> = {
    4: { filter: new Map(), raw: new Map() },
    6: { filter: new Map(), raw: new Map() },
  };
  private readonly eb: Chains = new Map();
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
    const n = this.names;
    const hooks: Hook[] = [
      { table: 'filter', builtin: 'FORWARD', chain: n.dispatchChain, versions: [4, 6] },
      { table: 'filter', builtin: 'INPUT', chain: n.inputChain, versions: [4, 6] },
      { table: 'raw', builtin: 'PREROUTING', chain: n.rawChain, versions: [4, 6] },
    ];
    if (this.mode === 'bridged') {
      hooks.push({ table: 'eb', builtin: 'FORWARD', chain: n.arpDispatchChain, versions: ['eb'] });
      hooks.push({ table: 'eb', builtin: 'INPUT', chain: n.arpDispatchChain, versions: ['eb'] });
    }
    return hooks;
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
    const { changed, removed } = await this.writeTable(
      { had: this.ip[v][table], table, version: v, restore: (script) => this.tools.restore(v, restoreScript(table, want, ...script)) },
      want,
      keep,
      opts.sections,
    );
    for (const c of opts.inexact ?? []) this.inexact.add(c);
    if (changed.some((c) => this.inexact.has(c))) await this.rebase(v, table);
    return removed;
  }

  /** The same for the ebtables filter table (ARP protection). */
  async writeEb(want: Chains, keep: (chain: string) => boolean, sections?: ReadonlyMap<string, Sections>): Promise<void> {
    await this.writeTable(
      { had: this.eb, table: 'eb', version: 'eb', restore: (script) => this.tools.ebRestore(ebScript(want, ...script)) },
      want,
      keep,
      sections,
    );
  }

  /** One table's write (see `write`), its script made by `target.restore` from the chains to rewrite,
   *  the chains to remove, the hook lines and the in-place edits. `had` follows what the tool took. */
  private async writeTable(
    target: {
      had: Chains;
      table: Table | 'eb';
      version: IpVersion | 'eb';
      restore: (script: [changed: string[], removed: string[], hooks: string[], edits: string[]]) => Promise<void>;
    },
    want: Chains,
    keep: (chain: string) => boolean,
    sections: ReadonlyMap<string, Sections> | undefined,
  ): Promise<{ changed: string[]; removed: string[] }> {
    const { had } = target;
    const differ = [...want.keys()].filter((c) => !same(want.get(c), had.get(c)));
    const removed = [...had.keys()].filter((c) => !want.has(c) && !keep(c));
    const hooks = await this.missingHooks(target.table, target.version, (c) => want.has(c) || had.has(c));
    const editable =
      sections && differ.some((c) => sections.has(c) && had.has(c)) && (await this.untouchedSinceOurs()) ? sections : undefined;
    const { changed, edits, commands } = inPlace(differ, had, editable);
    if (changed.length === 0 && commands.length === 0 && removed.length === 0 && hooks.lines.length === 0) return { changed, removed: [] };
    try {
      await target.restore([changed, removed, hooks.lines, commands]);
    } catch (e) {
      // An edit names rules as we wrote them: one changed or gone behind our back fails it. Rewritten
      // whole, the chain needs nothing of what the kernel holds.
      if (commands.length === 0) throw e;
      return this.writeTable(target, want, keep, undefined);
    }
    this.stats.restores++;
    this.seenGen = await this.generation();
    for (const k of hooks.keys) this.hooked.add(k);
    for (const c of changed) had.set(c, want.get(c)!);
    for (const [c, e] of edits) had.set(c, e.lines);
    for (const c of removed) had.delete(c);
    return { changed, removed };
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
    table: Table | 'eb',
    v: IpVersion | 'eb',
    present: (chain: string) => boolean,
    savedNow?: string,
  ): Promise<{ lines: string[]; keys: string[] }> {
    const unknown = this.hooks.filter(
      (h) => h.table === table && h.versions.includes(v) && present(h.chain) && !this.hooked.has(hookKey(h, v)),
    );
    if (unknown.length === 0) return { lines: [], keys: [] };
    const saved = savedNow ?? (v === 'eb' ? await this.tools.ebSave() : await this.tools.save(v, table as Table));
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
    for (const v of VERSIONS) {
      for (const table of TABLES) {
        const had = this.ip[v][table];
        if (had.size === 0 && table === 'raw') continue;
        const saved = await this.tools.save(v, table);
        const kernel = parseChains(saved, (c) => n.owns(c));
        const changed = [...had.keys()].filter((c) => !same(kernel.get(c), had.get(c)));
        const referenced = new Set(referencedByOthers(saved, n));
        const stale = [...kernel.keys()].filter((c) => !had.has(c) && !referenced.has(c));
        const hooks = await this.missingHooks(table, v, (c) => had.has(c), saved);
        if (changed.length || hooks.lines.length) {
          await this.tools.restore(v, restoreScript(table, had, changed, [], hooks.lines));
          this.stats.restores++;
          for (const k of hooks.keys) this.hooked.add(k);
          report.chainsRepaired += changed.length + hooks.lines.length;
          if (changed.some((c) => this.inexact.has(c))) await this.rebase(v, table);
        }
        if (stale.length) {
          this.stats.restores++;
          await this.tools.restore(v, restoreScript(table, had, [], stale)).then(
            () => void (report.staleRemoved += stale.length),
            () => undefined, // still referenced (by a hook of an earlier run's, say): the full check tries again
          );
        }
      }
    }
    if (this.mode === 'bridged' && this.eb.size) {
      const saved = await this.tools.ebSave();
      const kernel = parseChains(saved, (c) => n.owns(c));
      const changed = [...this.eb.keys()].filter((c) => !same(kernel.get(c), this.eb.get(c)));
      const referenced = new Set(referencedByOthers(saved, n));
      const stale = [...kernel.keys()].filter((c) => !this.eb.has(c) && !referenced.has(c));
      const hooks = await this.missingHooks('eb', 'eb', (c) => this.eb.has(c), saved);
      if (changed.length || hooks.lines.length) {
        await this.tools.ebRestore(ebScript(this.eb, changed, [], hooks.lines));
        this.stats.restores++;
        for (const k of hooks.keys) this.hooked.add(k);
        report.chainsRepaired += changed.length + hooks.lines.length;
      }
      if (stale.length) {
        this.stats.restores++;
        await this.tools.ebRestore(ebScript(this.eb, [], stale, [])).then(
          () => void (report.staleRemoved += stale.length),
          () => undefined,
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
    for (const v of VERSIONS) {
      for (const table of TABLES) {
        const had = this.ip[v][table];
        const stale = [...parseChains(await this.tools.save(v, table), (c) => n.owns(c)).keys()].filter((c) => !had.has(c));
        if (stale.length === 0) continue;
        await this.tools.restore(v, restoreScript(table, had, [], stale));
        this.stats.restores++;
        removed += stale.length;
      }
    }
    if (this.mode === 'bridged') {
      const stale = [...parseChains(await this.tools.ebSave(), (c) => n.owns(c)).keys()].filter((c) => !this.eb.has(c));
      if (stale.length) {
        await this.tools.ebRestore(ebScript(this.eb, [], stale, []));
        removed += stale.length;
      }
    }
    return removed;
  }

  /** Every chain of ours and every hook to one, whoever wrote them, removed; a chain another
   *  program's rule still jumps to is emptied instead (its traffic returns at once) and reported. */
  async removeAll(): Promise<{ removed: number; left: string[] }> {
    const n = this.names;
    let removed = 0;
    const left: string[] = [];
    const tables: [IpVersion | 'eb', Table | 'eb'][] = [
      [4, 'filter'],
      [6, 'filter'],
      [4, 'raw'],
      [6, 'raw'],
      ['eb', 'eb'],
    ];
    for (const [v, table] of tables) {
      const saved = v === 'eb' ? await this.tools.ebSave().catch(() => '') : await this.tools.save(v, table as Table);
      const ours = [...parseChains(saved, (c) => n.owns(c)).keys()];
      const unhook = this.hooks
        .filter((h) => h.table === table)
        .flatMap((h) =>
          chainLines(saved, h.builtin)
            .filter((l) => l === `-j ${h.chain}`)
            .map(() => `-D ${h.builtin} -j ${h.chain}`),
        );
      if (ours.length === 0 && unhook.length === 0) continue;
      const referenced = new Set(referencedByOthers(saved, n));
      const del = ours.filter((c) => !referenced.has(c));
      const lines = [...unhook, ...ours.map((c) => `:${c} ${v === 'eb' ? 'RETURN' : '- [0:0]'}`), ...del.map((c) => `-X ${c}`)];
      const script = [`*${table === 'eb' ? 'filter' : table}`, ...lines, 'COMMIT', ''].join('\n');
      if (v === 'eb') await this.tools.ebRestore(script);
      else await this.tools.restore(v, script);
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
    this.eb.clear();
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

/** ebtables-restore --noflush input; the order of restoreScript's (./render.ts). */
function ebScript(chains: Chains, changed: string[], removed: string[], extra: string[], edits: string[] = []): string {
  const lines = ['*filter'];
  for (const c of [...changed, ...removed]) lines.push(`:${c} RETURN`);
  for (const c of changed) for (const r of chains.get(c) ?? []) lines.push(`-A ${c} ${r}`);
  lines.push(...edits);
  for (const c of removed) lines.push(`-X ${c}`);
  lines.push(...extra, 'COMMIT', '');
  return lines.join('\n');
}
