// Writing and reading the backend's rules with iptables-restore / iptables-save (and the ebtables
// pair), inside the target namespace when one is given. These tools are how rules are written; ipsets
// never go through a child process. The tools are started by the addon (posix_spawn from a thread in
// the namespace), which costs the agent far less than a fork of the Node process: see
// native/core/src/tool.rs.
import { native } from '../../addon/native.js';
import { fromNative, type NativeError } from '../../addon/errors.js';
import type { IpVersion } from './render.js';

export class IptablesError extends Error {
  /** `cause`: when the tool could not be run at all, the addon's NativeError (its `code` says why). */
  constructor(
    message: string,
    readonly stderr: string,
    cause?: NativeError,
  ) {
    super(message, cause ? { cause } : undefined);
    this.name = 'IptablesError';
  }
}

async function run(netns: string | undefined, tool: string, args: string[], input?: string): Promise<string> {
  let out;
  try {
    out = await native.runToolInNetns(netns ?? null, tool, args, Buffer.from(input ?? '', 'utf8'));
  } catch (e) {
    const cause = fromNative(e);
    throw new IptablesError(`${tool}: ${cause.code}: ${cause.message}`, '', cause);
  }
  if (out.code === 0) return out.stdout;
  throw new IptablesError(`${tool} ${args.join(' ')} exited ${out.code ?? 'on a signal'}: ${out.stderr.trim()}`, out.stderr);
}

const RESTORE: Record<IpVersion, string> = { 4: 'iptables-restore', 6: 'ip6tables-restore' };
const SAVE: Record<IpVersion, string> = { 4: 'iptables-save', 6: 'ip6tables-save' };

export type Table = 'filter' | 'raw';
export type EbTable = 'filter' | 'nat';

export class Iptables {
  restores = 0;
  constructor(readonly netns?: string) {}

  /** One atomic iptables-restore --noflush: touches only the chains the script names. */
  async restore(version: IpVersion, script: string): Promise<void> {
    this.restores++;
    await run(this.netns, RESTORE[version], ['--noflush', '-w', '10'], script);
  }

  async save(version: IpVersion, table: Table = 'filter'): Promise<string> {
    return run(this.netns, SAVE[version], ['-t', table]);
  }

  /** The filter table with each rule's packet and byte counts (`[packets:bytes] -A …`). */
  async saveCounted(version: IpVersion): Promise<string> {
    return run(this.netns, SAVE[version], ['-c', '-t', 'filter']);
  }

  /** ebtables-restore --noflush (its script may name both tables): the bridge's rules. */
  async ebRestore(script: string): Promise<void> {
    this.restores++;
    await run(this.netns, 'ebtables-restore', ['--noflush'], script);
  }

  async ebSave(table: EbTable = 'filter'): Promise<string> {
    return run(this.netns, 'ebtables-save', ['-t', table]);
  }

  /** Whether the tools write nf_tables (iptables-nft and ebtables-nft: every change they make moves
   *  the nf_tables ruleset generation) rather than the legacy xtables tables. */
  async onNftables(withEbtables: boolean): Promise<boolean> {
    const tools = [SAVE[4], SAVE[6], ...(withEbtables ? ['ebtables-save'] : [])];
    for (const tool of tools) {
      const out = await run(this.netns, tool, ['-V']).catch(() => '');
      if (!out.includes('(nf_tables)')) return false;
    }
    return true;
  }
}

/** The rules of each chain in iptables-save (or ebtables-save) output whose name `keep` accepts. */
export function parseChains(saved: string, keep: (chain: string) => boolean): Map<string, string[]> {
  const chains = new Map<string, string[]>();
  for (const line of saved.split('\n')) {
    if (line.startsWith(':')) {
      const name = line.slice(1).split(' ')[0]!;
      if (keep(name)) chains.set(name, []);
    } else if (line.startsWith('-A ')) {
      const rest = line.slice(3);
      const sp = rest.indexOf(' ');
      const name = sp < 0 ? rest : rest.slice(0, sp);
      if (keep(name)) chains.get(name)?.push(sp < 0 ? '' : rest.slice(sp + 1));
    }
  }
  return chains;
}

/** The counts of each rule of the chains `keep` accepts, in order, from `iptables-save -c` output. */
export function parseCounts(saved: string, keep: (chain: string) => boolean): Map<string, { packets: number; bytes: number }[]> {
  const out = new Map<string, { packets: number; bytes: number }[]>();
  for (const line of saved.split('\n')) {
    const m = /^\[(\d+):(\d+)\] -A (\S+)/.exec(line);
    if (!m || !keep(m[3]!)) continue;
    const list = out.get(m[3]!) ?? [];
    list.push({ packets: Number(m[1]), bytes: Number(m[2]) });
    out.set(m[3]!, list);
  }
  return out;
}

/** Lines of chain `chain` (e.g. FORWARD) in saved output, without the `-A chain ` part. */
export function chainLines(saved: string, chain: string): string[] {
  const head = `-A ${chain} `;
  return saved
    .split('\n')
    .filter((l) => l.startsWith(head))
    .map((l) => l.slice(head.length));
}
