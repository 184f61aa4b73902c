// The nf_tables client of the native addon, typed: the operations and rule statements it takes
// and the results it gives, declared once here (the addon speaks JSON text across the boundary;
// native/core/src/nftables/spec.rs reads the same shapes). Every call runs off the JS thread.
import { native } from './native.js';
import { fromNative } from './errors.js';

export type NftFamily = 'inet' | 'bridge';
export type Verdict = 'accept' | 'drop' | 'return' | { jump: string } | { goto: string };

/** One statement of a rule (a match, an action or the verdict), in nft's words. */
export type Stmt =
  | { m: 'nfproto'; v: 4 | 6 }
  | { m: 'l4proto'; v: number }
  | { m: 'ethertype'; v: number }
  | { m: 'addr'; family: 4 | 6; dir: 'saddr' | 'daddr'; cidr: string }
  | { m: 'addrIn'; family: 4 | 6; dir: 'saddr' | 'daddr'; set: string }
  | { m: 'port'; dir: 'sport' | 'dport'; min: number; max: number }
  | { m: 'icmp'; type: number; code?: number }
  | { m: 'icmpIn'; set: string }
  /** The target address of a neighbour solicitation or advertisement in CIDR (nft prints `@th,64,128`). */
  | { m: 'ndTarget'; cidr: string }
  | { m: 'ctState'; states: ('invalid' | 'established' | 'related' | 'new' | 'untracked')[] }
  | { m: 'ctStateVmap'; map: string }
  | { m: 'etherSaddr'; mac: string }
  | { m: 'arpSender'; mac: string; cidr?: string }
  | { m: 'markSet'; mask: number; id: number }
  | { m: 'markIn'; mask: number; set: string }
  | { m: 'ifnameIn'; key: 'iifname' | 'oifname'; set: string; negate?: boolean }
  | { m: 'ifnamePrefix'; key: 'iifname' | 'oifname'; prefix: string }
  | { m: 'vmap'; key: { mark: number } | 'iifname' | 'oifname'; map: string }
  | { m: 'notrack' }
  | { m: 'verdict'; v: Verdict };

export type KeyType = 'ipv4' | 'ipv6' | 'mark' | 'ifname' | 'icmp6type' | 'ctstate';
export type Hook = { hook: 'prerouting' | 'input' | 'forward' | 'output' | 'postrouting'; priority: number };
export type ElemKey = number | string;

interface At {
  family: NftFamily;
  table: string;
}

/** One operation of a transaction, applied in order. */
export type Op =
  | ({ op: 'table' } & At)
  | ({ op: 'delTable' } & At)
  | ({ op: 'chain'; chain: string; hook?: Hook } & At)
  | ({ op: 'delChain'; chain: string } & At)
  | ({ op: 'flushChain'; chain: string } & At)
  | ({ op: 'rule'; chain: string; stmts: Stmt[] } & At)
  | ({ op: 'set'; set: string; key: KeyType; map?: boolean } & At)
  | ({ op: 'delSet'; set: string } & At)
  | ({ op: 'flushSet'; set: string } & At)
  | ({ op: 'members'; set: string; add?: string[]; del?: string[]; replace?: boolean } & At)
  | ({ op: 'elems'; set: string; add?: { key: ElemKey; verdict?: Verdict }[]; del?: ElemKey[] } & At);

export interface OpFailure {
  /** Index of the refused operation; null for the transaction as a whole. */
  op: number | null;
  /** NOT_FOUND, EXISTS, BUSY, PERMISSION_DENIED, UNSUPPORTED, NO_ROOM, LOOP, INVALID, RETRY, KERNEL. */
  code: string;
  errno: number;
  message: string;
}

export interface TransactResult {
  committed: boolean;
  failures: OpFailure[];
}

export interface ReconcileReport {
  checked: boolean;
  tablesRebuilt: number;
  chainsRepaired: number;
  setsRepaired: number;
  elementsAdded: number;
  elementsRemoved: number;
  unknown: { family: NftFamily; table: string; kind: 'chain' | 'set'; name: string }[];
  failures: OpFailure[];
}

export interface TableDesc {
  family: NftFamily;
  name: string;
  chains: { name: string; base: boolean; rules: number }[];
  sets: { name: string; map: boolean; elements: number }[];
}

/** What the kernel supports, found by transactions it checks and aborts. */
export interface NftSupport {
  inet: boolean;
  bridge: boolean;
  conntrackBridge: boolean;
  bridgeMeta: boolean;
  notes: string[];
}

export type WatchEvent = { repaired: ReconcileReport } | { failed: string };

type Handle = Awaited<ReturnType<typeof native.NativeNftables.open>>;

async function call<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (e) {
    throw fromNative(e);
  }
}

export class NftClient {
  private constructor(private readonly h: Handle) {}

  static async open(netns?: string): Promise<NftClient> {
    return new NftClient(await call(() => native.NativeNftables.open(netns ?? null)));
  }

  /** One batch: committed whole, or refused whole with the refused operations named. */
  async transact(ops: Op[]): Promise<TransactResult> {
    return JSON.parse(await call(() => this.h.transact(JSON.stringify(ops)))) as TransactResult;
  }

  /** The kernel checks the operations and aborts (nothing changes). */
  async check(ops: Op[]): Promise<TransactResult> {
    return JSON.parse(await call(() => this.h.check(JSON.stringify(ops)))) as TransactResult;
  }

  async reconcile(opts: { quick: boolean; allElements: boolean }): Promise<ReconcileReport> {
    return JSON.parse(await call(() => this.h.reconcile(opts.quick, opts.allElements))) as ReconcileReport;
  }

  /** The ruleset's generation: it moves with every change committed to the namespace's nf_tables,
   *  anyone's (iptables-nft's and ebtables-nft's included). */
  async generation(): Promise<number> {
    return call(() => this.h.generation());
  }

  async listTables(): Promise<[NftFamily, string][]> {
    return JSON.parse(await call(() => this.h.listTables())) as [NftFamily, string][];
  }

  async describe(family: NftFamily, table: string): Promise<TableDesc | null> {
    return JSON.parse(await call(() => this.h.describe(family, table))) as TableDesc | null;
  }

  async forget(family: NftFamily, table: string): Promise<void> {
    await call(() => this.h.forget(family, table));
  }

  async commits(): Promise<number> {
    return call(() => this.h.commits());
  }

  /** Repairs foreign changes to our tables as the kernel announces them; `onEvent` hears of each. */
  watch(onEvent: (e: WatchEvent) => void): void {
    this.h.watch((text: string) => {
      try {
        onEvent(JSON.parse(text) as WatchEvent);
      } catch {
        // An event we cannot read changes nothing; the periodic check still runs.
      }
    });
  }

  async close(): Promise<void> {
    await call(() => this.h.close());
  }
}

export async function probeNftables(netns?: string): Promise<NftSupport> {
  return JSON.parse(await call(() => native.nftablesProbe(netns ?? null))) as NftSupport;
}
