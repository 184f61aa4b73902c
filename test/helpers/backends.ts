// Both firewall backends behind one face for the packet tests: an engine on either, and an oracle
// that reads what the backend put in the kernel through the tools (iptables-save, ipset, nft) — never
// through the backend itself.
import fs from 'node:fs';
import type { LogSettings, Mode } from '../../src/firewall/dataplane.js';
import { FirewallEngine, type FirewallEngineOptions } from '../../src/firewall/engine.js';
import { KernelNames } from '../../src/firewall/iptables/names.js';
import { NftNames } from '../../src/firewall/nftables/names.js';
import { openBackend } from '../../src/firewall/select.js';
import type { Netns } from './netns.js';
import { ipsetSave } from './ipset-oracle.js';

/** The system's nft, by path: under npm, node_modules/.bin has an unrelated `nft` (@vercel/nft). */
export const NFT = ['/usr/sbin/nft', '/sbin/nft', '/usr/bin/nft'].find((p) => fs.existsSync(p)) ?? '/usr/sbin/nft';

export type Backend = 'iptables' | 'nftables';
export const BACKENDS: readonly Backend[] = ['iptables', 'nftables'];

/** What a test's engine is opened with: the engine's options and the backend's. */
export type EngineOptions = FirewallEngineOptions & {
  prefix?: string;
  mode?: Mode;
  unknownDevicePrefixes?: string[];
  log?: LogSettings;
  /** The iptables backend's mark bit (its own default when unset). */
  markBit?: number;
  /** Bridges (name prefixes) whose traffic is tracked in a zone each (src/firewall/zones.ts). */
  conntrackZoneBridges?: string[];
};

/** An engine on `backend` in the namespace; the nftables backend watches for foreign changes when
 *  the periodic check is on, as the agent has it. */
export async function openEngine(backend: Backend, netns: Netns, opts: EngineOptions = {}): Promise<FirewallEngine> {
  const { prefix, mode, unknownDevicePrefixes, log, markBit, conntrackZoneBridges, ...engine } = opts;
  const dataplane = await openBackend(backend, {
    netns: netns.path,
    prefix: prefix ?? 'sg',
    mode: mode ?? 'bridged',
    watch: (opts.reconcileIntervalMs ?? 0) > 0,
    ...(opts.logger ? { logger: opts.logger } : {}),
    ...(unknownDevicePrefixes ? { unknownDevicePrefixes } : {}),
    ...(log ? { log } : {}),
    ...(markBit !== undefined ? { markBit } : {}),
    ...(conntrackZoneBridges ? { conntrackZoneBridges } : {}),
  });
  return new FirewallEngine(dataplane, { ...engine, ...(log ? { logging: true } : {}) });
}

interface NftJson {
  nftables: Record<string, { family: string; table?: string; name?: string; chain?: string; elem?: unknown[] }>[];
}

/** An nft set element as text: an address, `addr/len`, or `a-b`. */
function elemText(e: unknown): string {
  if (typeof e === 'string' || typeof e === 'number') return String(e);
  const o = e as { prefix?: { addr: string; len: number }; range?: [string, string]; elem?: { val: unknown } };
  if (o.prefix) return `${o.prefix.addr}/${o.prefix.len}`;
  if (o.range) return `${o.range[0]}-${o.range[1]}`;
  if (o.elem) return elemText(o.elem.val);
  return JSON.stringify(e);
}

/** What a backend holds in the kernel, read with the tools. */
export class Oracle {
  readonly ipt: KernelNames;
  readonly nft: NftNames;
  constructor(
    readonly backend: Backend,
    readonly host: Netns,
    prefix = 'sg',
  ) {
    this.ipt = new KernelNames(prefix);
    this.nft = new NftNames(prefix);
  }

  private nftJson(): NftJson['nftables'] {
    return (JSON.parse(this.host.exec(NFT, ['-j', 'list', 'ruleset'])) as NftJson).nftables;
  }

  /** Our rules as the tool prints them, set contents and counter values left out (a membership
   *  change never touches them; the rules count the packets the test sends). */
  rules(): string {
    if (this.backend === 'iptables')
      return ['iptables-save', 'ip6tables-save'].map((c) => this.host.exec(c, ['-t', 'filter']).replace(/^#.*\n/gm, '')).join('');
    return ['inet', 'bridge'].map((f) => this.host.run(NFT, ['-s', '-t', 'list', 'table', f, this.nft.table]).stdout).join('');
  }

  setName(groupId: string, family: 4 | 6): string {
    return this.backend === 'iptables' ? this.ipt.groupSet(groupId, family) : this.nft.groupSet(groupId, family);
  }

  /** Members of a group's set, or undefined when the set does not exist. */
  setMembers(groupId: string, family: 4 | 6): Set<string> | undefined {
    const name = this.setName(groupId, family);
    if (this.backend === 'iptables') return ipsetSave(this.host).get(name)?.members;
    const r = this.host.run(NFT, ['-j', 'list', 'set', 'inet', this.nft.table, name]);
    if (r.status !== 0) return undefined;
    const set = (JSON.parse(r.stdout) as NftJson).nftables.find((o) => o.set)?.set;
    return new Set((set?.elem ?? []).map(elemText));
  }

  /** Our member sets. */
  memberSets(): string[] {
    if (this.backend === 'iptables') return [...ipsetSave(this.host).keys()].filter((n) => this.ipt.owns(n));
    return this.nftJson().flatMap((o) =>
      o.set && o.set.table === this.nft.table && /^g[46]-/.test(o.set.name ?? '') ? [o.set.name!] : [],
    );
  }

  /** Whether any chain of the port is in the kernel. */
  hasPortChains(portId: string): boolean {
    if (this.backend === 'iptables') return this.rules().includes(this.ipt.ingressChain(portId));
    const names = [this.nft.ingressChain(portId), this.nft.egressChain(portId), this.nft.spoofChain(portId)];
    return this.nftJson().some((o) => o.chain && o.chain.table === this.nft.table && names.includes(o.chain.name!));
  }

  /** Every chain, set and table of ours still in the kernel. */
  ours(): string[] {
    if (this.backend === 'iptables') {
      const saved = [
        ...['iptables-save', 'ip6tables-save'].flatMap((c) => ['filter', 'raw'].map((t) => this.host.exec(c, ['-t', t]))),
        ...['filter', 'nat'].map((t) => this.host.exec('ebtables-save', ['-t', t])),
      ];
      const chains = saved
        .join('\n')
        .split('\n')
        .filter((l) => l.startsWith(':') && this.ipt.owns(l.slice(1).split(' ')[0]!));
      return [...chains, ...this.memberSets()];
    }
    return this.nftJson().flatMap((o) => (o.table && o.table.name === this.nft.table ? [`${o.table.family} table ${o.table.name}`] : []));
  }
}
