// The nf_tables client of the native addon, typed: the operations and rule statements it takes and
// the results it gives are declared in Rust and their types generated (nftables-types.ts). They
// cross the boundary as JSON text, which is 2–4× faster than napi reading the objects property by
// property (bench/nft-boundary.ts). Every call runs off the JS thread.
import { native } from './native.js';
import { callNative, fromNative } from './errors.js';
import { batchReader } from './listener.js';
import type {
  Family,
  HookSpec,
  KeySpec,
  Op,
  ReconcileReport,
  RuleStat,
  Support,
  TableDesc,
  TraceEvent,
  TransactResult,
  VerdictSpec,
} from './nftables-types.js';

// Declared once, in Rust (native/core/src/nftables/spec.rs and the result types), and generated.
export type {
  KeyType,
  Op,
  OpFailure,
  PacketInfo,
  ReconcileReport,
  RuleStat,
  Stmt,
  TableDesc,
  TraceEvent,
  TransactResult,
} from './nftables-types.js';
export type NftFamily = Family;
export type Verdict = VerdictSpec;
export type Hook = HookSpec;
/** A key of a mark or interface-name set or map. */
export type ElemKey = KeySpec;
/** What the kernel supports, found by transactions it checks and aborts. */
export type NftSupport = Support;

export type WatchEvent = { repaired: ReconcileReport } | { failed: string };

type Handle = Awaited<ReturnType<typeof native.NativeNftables.open>>;

export class NftClient {
  private constructor(private readonly h: Handle) {}

  static async open(netns?: string): Promise<NftClient> {
    return new NftClient(await callNative(() => native.NativeNftables.open(netns ?? null)));
  }

  /** One batch: committed whole, or refused whole with the refused operations named. With
   *  `generation` (a `describe`'s), only if the ruleset has not changed since: otherwise it is
   *  refused whole, code `RETRY`, and nothing changes. */
  async transact(ops: Op[], generation?: number): Promise<TransactResult> {
    return JSON.parse(await callNative(() => this.h.transact(JSON.stringify(ops), generation ?? null))) as TransactResult;
  }

  /** The kernel checks the operations and aborts (nothing changes). */
  async check(ops: Op[]): Promise<TransactResult> {
    return JSON.parse(await callNative(() => this.h.check(JSON.stringify(ops)))) as TransactResult;
  }

  async reconcile(opts: { quick: boolean; allElements: boolean }): Promise<ReconcileReport> {
    return JSON.parse(await callNative(() => this.h.reconcile(opts.quick, opts.allElements))) as ReconcileReport;
  }

  /** The ruleset's generation: it moves with every change committed to the namespace's nf_tables,
   *  anyone's (iptables-nft's and ebtables-nft's included). */
  async generation(): Promise<number> {
    return callNative(() => this.h.generation());
  }

  async listTables(): Promise<[NftFamily, string][]> {
    return JSON.parse(await callNative(() => this.h.listTables())) as [NftFamily, string][];
  }

  async describe(family: NftFamily, table: string): Promise<TableDesc | null> {
    return JSON.parse(await callNative(() => this.h.describe(family, table))) as TableDesc | null;
  }

  /** Every rule of a table (of ours, or iptables-nft's `ip`/`ip6` tables), or of one chain of it:
   *  its handle, its place in its chain, and what its counter counted. */
  async ruleStats(family: NftFamily | 'ip' | 'ip6', table: string, chain?: string): Promise<RuleStat[]> {
    return JSON.parse(await callNative(() => this.h.ruleStats(family, table, chain ?? null))) as RuleStat[];
  }

  async forget(family: NftFamily, table: string): Promise<void> {
    await callNative(() => this.h.forget(family, table));
  }

  async commits(): Promise<number> {
    return callNative(() => this.h.commits());
  }

  /** Repairs foreign changes to our tables as the kernel announces them; `onEvent` hears of each. */
  watch(onEvent: (e: WatchEvent) => void): void {
    try {
      this.h.watch((text: string) => {
        try {
          onEvent(JSON.parse(text) as WatchEvent);
        } catch {
          // An event we cannot read changes nothing; the periodic check still runs.
        }
      });
    } catch (e) {
      throw fromNative(e);
    }
  }

  async close(): Promise<void> {
    await callNative(() => this.h.close());
  }
}

/** Hears the nf_tables trace events of a namespace (packets marked `meta nftrace set 1`) until
 *  stopped; `onError` hears of events lost or of the listener ending. */
export class TraceListener {
  private constructor(private readonly h: Awaited<ReturnType<typeof native.NativeTraceListener.start>>) {}

  static async start(
    netns: string | undefined,
    onEvents: (events: TraceEvent[]) => void,
    onError: (message: string) => void = () => undefined,
  ): Promise<TraceListener> {
    const h = await callNative(() =>
      native.NativeTraceListener.start(netns ?? null, batchReader<TraceEvent[]>('events', 'trace events', onEvents, onError)),
    );
    return new TraceListener(h);
  }

  async stop(): Promise<void> {
    await callNative(() => this.h.stop());
  }
}

export async function probeNftables(netns?: string): Promise<NftSupport> {
  return JSON.parse(await callNative(() => native.nftablesProbe(netns ?? null))) as NftSupport;
}
