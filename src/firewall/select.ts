// Which backend a host gets, and moving a host from one backend to the other.
//
// `iptables` and `nftables` are taken as asked; `auto` takes nftables when the kernel can do all the
// nftables backend needs (probed by transactions the kernel checks and aborts: nothing is made) and
// iptables otherwise, and says why. Switching is safe by order: the new backend's first apply puts
// the whole firewall in place while the other's objects still filter; only after it do they go
// (both must accept a packet meanwhile, so there is no moment of open traffic).
import fs from 'node:fs';
import type {
  AppliedView,
  ApplyOutcome,
  ChangeSet,
  Dataplane,
  DataplaneStats,
  DataplaneStatus,
  Mode,
  PortRuleMap,
  ReconcileReport,
  RuleCount,
} from './dataplane.js';
import { IptablesDataplane, type IptablesOptions } from './iptables/backend.js';
import { NftablesDataplane, type NftablesOptions } from './nftables/backend.js';
import { probeNftables, type NftSupport } from '../addon/nftables.js';

export type DataplaneKind = 'iptables' | 'nftables';
export type DataplaneSetting = DataplaneKind | 'auto';

/** What either backend is opened with (`watch` concerns nftables alone). */
export type DataplaneOptions = IptablesOptions & NftablesOptions;

/** A setting the chosen backend cannot carry out (the operator's to change). */
export class UnsupportedSetting extends Error {}

export interface KernelSupport {
  nftables: NftSupport | { error: string };
  /** br_netfilter hands bridged traffic to the IP hooks (needed by both backends in bridged mode). */
  brNetfilter: boolean;
}

/** br_netfilter is there when its sysctls are (per namespace: /proc/sys of the namespace, which a
 *  process outside it cannot see without entering it; a loaded module shows in this one too). */
function brNetfilterLoaded(): boolean {
  return fs.existsSync('/proc/sys/net/bridge/bridge-nf-call-iptables') || fs.existsSync('/sys/module/br_netfilter');
}

export async function kernelSupport(netns?: string): Promise<KernelSupport> {
  const nftables = await probeNftables(netns).catch((e: unknown) => ({ error: (e as Error).message }));
  return { nftables, brNetfilter: brNetfilterLoaded() };
}

/** The backend `auto` takes here, and why. */
export function decide(support: KernelSupport, mode: Mode): { kind: DataplaneKind; reason: string } {
  const n = support.nftables;
  if ('error' in n) return { kind: 'iptables', reason: `nf_tables cannot be used: ${n.error}` };
  if (!n.inet)
    return { kind: 'iptables', reason: `the kernel lacks what the nftables backend needs in the inet family (${n.notes.join('; ')})` };
  if (mode === 'bridged' && !n.bridge)
    return {
      kind: 'iptables',
      reason: `the kernel lacks bridge-family nf_tables chains, needed to tell bridged ports apart (${n.notes.join('; ')})`,
    };
  return {
    kind: 'nftables',
    reason: `the kernel has nf_tables (inet${mode === 'bridged' ? ' and bridge families; bridged ports marked before br_netfilter' : ''}); no process per change`,
  };
}

/** Opens the backend `kind` itself: the one place a backend is made (`support`: what a probe of this
 *  kernel already found, so that it is not probed twice). */
export async function openBackend(kind: DataplaneKind, opts: DataplaneOptions, support?: KernelSupport): Promise<Dataplane> {
  const common = {
    ...(opts.netns ? { netns: opts.netns } : {}),
    prefix: opts.prefix ?? 'sg',
    mode: opts.mode ?? 'bridged',
    ...(opts.logger ? { logger: opts.logger } : {}),
    ...(opts.log ? { log: opts.log } : {}),
  };
  const unknown = opts.unknownDevicePrefixes?.length ? { unknownDevicePrefixes: opts.unknownDevicePrefixes } : {};
  const zones = opts.conntrackZoneBridges?.length ? { conntrackZoneBridges: opts.conntrackZoneBridges } : {};
  // Refused at start-up, not at the first apply: a kernel that cannot set a zone from a rule.
  if (kind === 'nftables' && opts.conntrackZoneBridges?.length) {
    const n = (support ?? (await kernelSupport(opts.netns))).nftables;
    if ('error' in n || !n.conntrackZones)
      throw new UnsupportedSetting(
        `the kernel cannot set conntrack zones (${'error' in n ? n.error : n.notes.filter((x) => x.startsWith('conntrack zones')).join('; ')})`,
      );
  }
  return kind === 'nftables'
    ? NftablesDataplane.open({ ...common, ...unknown, ...zones, watch: opts.watch ?? false })
    : IptablesDataplane.open({ ...common, ...unknown, ...zones, ...(opts.markBit !== undefined ? { markBit: opts.markBit } : {}) });
}

/** Removes every object the given backend owns in the namespace (what `sg-agent cleanup` does for
 *  each backend). */
export async function cleanupBackend(kind: DataplaneKind, opts: DataplaneOptions): Promise<{ removed: number; left: string[] }> {
  // What only shapes the rules a backend writes does not matter to removing them.
  const { unknownDevicePrefixes: _dispatchOnly, conntrackZoneBridges: _rulesOnly, ...rest } = opts;
  const dp = await openBackend(kind, { ...rest, watch: false });
  try {
    return await dp.cleanup();
  } finally {
    await dp.close();
  }
}

/**
 * A backend for `setting`, wrapped so that, once its first apply is in, the other backend's
 * objects (a previous run's, before a switch) are removed with the stale ones.
 */
export async function openDataplane(
  setting: DataplaneSetting,
  opts: DataplaneOptions,
): Promise<{ dataplane: Dataplane; kind: DataplaneKind; reason: string }> {
  let kind: DataplaneKind;
  let reason: string;
  let support: KernelSupport | undefined;
  if (setting === 'auto') {
    support = await kernelSupport(opts.netns);
    ({ kind, reason } = decide(support, opts.mode ?? 'bridged'));
  } else [kind, reason] = [setting, 'configured'];
  const inner = await openBackend(kind, opts, support);
  return { dataplane: new Switching(inner, kind === 'nftables' ? 'iptables' : 'nftables', opts), kind, reason };
}

/** Delegates to the chosen backend; its stale sweep after the first apply also sweeps the other
 *  backend's objects. */
class Switching implements Dataplane {
  constructor(
    readonly inner: Dataplane,
    private readonly other: DataplaneKind,
    private readonly opts: DataplaneOptions,
  ) {}
  get name(): string {
    return this.inner.name;
  }
  get stats(): DataplaneStats {
    return this.inner.stats;
  }
  get structureIntervalMs(): number | undefined {
    return this.inner.structureIntervalMs;
  }
  apply(c: ChangeSet): Promise<ApplyOutcome> {
    return this.inner.apply(c);
  }
  reconcile(v: AppliedView, o: { full: boolean }): Promise<ReconcileReport> {
    return this.inner.reconcile(v, o);
  }
  async removeStale(v: AppliedView): Promise<number> {
    const n = await this.inner.removeStale(v);
    // The other backend may not be usable here at all (no nf_tables, no iptables tools): then it has
    // nothing to remove either.
    const r = await cleanupBackend(this.other, this.opts).catch((e: unknown) => {
      this.opts.logger?.debug({ err: e, backend: this.other }, 'the other backend could not be asked for its objects');
      return { removed: 0, left: [] as string[] };
    });
    if (r.removed)
      this.opts.logger?.info(
        { backend: this.other, removed: r.removed },
        "removed the other backend's objects now that this one is in place",
      );
    for (const l of r.left) this.opts.logger?.warn({ backend: this.other }, `left in place: ${l}`);
    return n + r.removed;
  }
  cleanup(): Promise<{ removed: number; left: string[] }> {
    return this.inner.cleanup();
  }
  status(v: AppliedView): DataplaneStatus {
    return this.inner.status(v);
  }
  counters(portIds?: readonly string[]): Promise<Map<string, RuleCount[]>> {
    return this.inner.counters?.(portIds) ?? Promise.resolve(new Map<string, RuleCount[]>());
  }
  portRules(portId: string): Promise<PortRuleMap | undefined> {
    return this.inner.portRules?.(portId) ?? Promise.resolve(undefined);
  }
  onDevicesChanged(changed: () => void): void {
    this.inner.onDevicesChanged?.(changed);
  }
  refreshDevices(): Promise<boolean> {
    return this.inner.refreshDevices?.() ?? Promise.resolve(false);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
