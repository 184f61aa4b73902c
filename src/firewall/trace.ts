// `sg-agent trace`: packets of a port that match what the operator asks for are marked for tracing
// (`meta nftrace set 1`, by a rule in a table of its own, made for the trace and removed after it),
// the kernel announces every rule each marked packet meets (NFNLGRP_NFTRACE, read by the addon), and
// each step is named as sg-agent names it: which chain of the port, which security-group rule (by
// id) or fixed rule (anti-spoofing, DHCP guard, conntrack state, default drop…) gave the verdict.
// The backend says where the port's chains are and what each of their rules is (`PortRuleMap`); a
// rule is found by its handle, whose place in its chain the kernel lists (`ruleStats`). Both
// backends: iptables-nft's chains are nf_tables chains and announce themselves the same way; the
// legacy iptables tools' are not (their TRACE goes to the kernel log), which the map says.
import type { Family } from '../domain/address.js';
import { familyOf } from '../domain/address.js';
import { NftClient, TraceListener, type Op, type PacketInfo, type Stmt, type TraceEvent } from '../addon/nftables.js';
import type { Mode, PortChainKind, PortRuleMap, TraceFamily } from './dataplane.js';
import { NftNames } from './nftables/names.js';
import type { RuleTag } from './policy.js';

/** Which packets of the port to trace. */
export interface TraceMatch {
  /** To the port (ingress) or from it (egress). */
  direction: 'ingress' | 'egress';
  src?: string;
  dst?: string;
  /** IP protocol number. */
  proto?: number;
  dport?: number;
  icmpType?: number;
}

export interface TraceTarget {
  netns?: string;
  /** The agent's prefix (the trace table is named from it). */
  prefix: string;
  mode: Mode;
  portId: string;
  /** The port's device. */
  device: string;
  map: PortRuleMap;
}

/** One rule (or chain end, or policy) a traced packet met. */
export interface TraceStep {
  /** The kernel's trace id: the same for every step of one packet (and reused for later ones). */
  packet: number;
  /** Where, as an operator reads it: a chain of the port, another chain of ours, or another table's. */
  where: string;
  family: string;
  table: string;
  chain: string;
  /** rule: a rule matched; return: the chain ended; policy: a base chain's policy decided. */
  kind: 'rule' | 'return' | 'policy';
  /** The port's chain the step is in, if it is one of them. */
  portChain?: PortChainKind;
  /** The rule's place in its chain (from 0) and what it is. */
  position?: number;
  rule?: RuleTag;
  verdict?: string;
  target?: string;
  /** The packet's addresses, protocol and ports (from the headers last announced for its id). */
  packetInfo?: PacketInfo;
  /** The kernel announced the headers with this step (the first rule of a hook a packet meets). */
  headers?: true;
}

/** At most this many packets a second are marked: a trace left behind by a killed process costs
 *  the host little until `sg-agent cleanup` (or the next trace) removes it. */
const MARKED_PER_SECOND = 200;

const ETHERTYPE: Record<Family, number> = { 4: 0x0800, 6: 0x86dd };

/** The marking rule(s) for `m` at the port's device (one per family when no address fixes it). */
export function markingRules(device: string, mode: Mode, m: TraceMatch): Stmt[][] {
  const key = m.direction === 'egress' ? 'iifname' : 'oifname';
  const fixed = m.src ?? m.dst;
  const families: Family[] = fixed ? [familyOf(fixed)] : [4, 6];
  return families.map((v) => {
    const out: Stmt[] = [{ m: 'ifname', key, name: device }];
    out.push(mode === 'bridged' ? { m: 'ethertype', v: ETHERTYPE[v] } : { m: 'nfproto', v });
    if (m.src) out.push({ m: 'addr', family: v, dir: 'saddr', cidr: m.src });
    if (m.dst) out.push({ m: 'addr', family: v, dir: 'daddr', cidr: m.dst });
    if (m.proto !== undefined) out.push({ m: 'l4proto', v: m.proto });
    if (m.dport !== undefined) out.push({ m: 'port', dir: 'dport', min: m.dport, max: m.dport });
    if (m.icmpType !== undefined) out.push({ m: 'icmp', type: m.icmpType });
    out.push({ m: 'limit', rate: MARKED_PER_SECOND, burst: MARKED_PER_SECOND }, { m: 'nftraceSet' });
    return out;
  });
}

const key = (family: string, table: string, chain: string) => `${family} ${table} ${chain}`;

export class PortTrace {
  /** Per port chain: rule handle → place in the chain. */
  private readonly places = new Map<string, Map<number, number>>();
  private readonly chains = new Map<string, PortRuleMap['chains'][number]>();
  private readonly shared = new Map<string, string>();
  private lastReload = 0;
  private queue: Promise<void> = Promise.resolve();
  /** The headers last announced under each trace id: the kernel sends them at the first rule of
   *  each hook, and reuses an id for a later packet (it is derived from the buffer's address). */
  private readonly headers = new Map<number, PacketInfo>();

  private constructor(
    private readonly t: TraceTarget,
    private readonly client: NftClient,
    private readonly names: NftNames,
    private readonly onStep: (s: TraceStep) => void,
    private readonly onError: (m: string) => void,
  ) {
    for (const c of t.map.chains) this.chains.set(key(c.family, c.table, c.chain), c);
    for (const s of t.map.shared) this.shared.set(key(s.family, s.table, s.chain), s.what);
  }

  private listener?: TraceListener;

  /** Marks the port's packets that match `m` for tracing and reports each step until `stop()`. */
  static async start(
    t: TraceTarget,
    m: TraceMatch,
    onStep: (s: TraceStep) => void,
    onError: (message: string) => void = () => undefined,
  ): Promise<PortTrace> {
    if (t.map.untraceable) throw new Error(`cannot trace: ${t.map.untraceable}`);
    const client = await NftClient.open(t.netns);
    const trace = new PortTrace(t, client, new NftNames(t.prefix), onStep, onError);
    try {
      await trace.reload();
      trace.listener = await TraceListener.start(t.netns, (events) => trace.heard(events), onError);
      await trace.mark(m);
    } catch (e) {
      await trace.stop();
      throw e;
    }
    return trace;
  }

  private get markingTable(): { family: 'bridge' | 'inet'; table: string } {
    return { family: this.t.mode === 'bridged' ? 'bridge' : 'inet', table: this.names.traceTable };
  }

  /** The marking table, made afresh (a trace left behind by a killed process goes with it). Before
   *  the port's chains meet the packet: the bridge family's hooks run before br_netfilter's. */
  private async mark(m: TraceMatch): Promise<void> {
    const at = this.markingTable;
    const hook = m.direction === 'egress' ? 'prerouting' : 'forward';
    const ops: Op[] = [];
    if ((await this.client.listTables()).some(([f, n]) => f === at.family && n === at.table)) ops.push({ op: 'delTable', ...at });
    ops.push({ op: 'table', ...at }, { op: 'chain', ...at, chain: 'mark', hook: { hook, priority: -350 } });
    for (const stmts of markingRules(this.t.device, this.t.mode, m)) ops.push({ op: 'rule', ...at, chain: 'mark', stmts });
    const r = await this.client.transact(ops);
    if (!r.committed) throw new Error(`the tracing rule was refused: ${r.failures.map((f) => f.message).join('; ')}`);
  }

  /** Where each rule of the port's chains is (its handle), from the kernel's listing. */
  private async reload(): Promise<void> {
    this.lastReload = Date.now();
    const tables = new Map<string, { family: TraceFamily; table: string }>();
    for (const c of this.t.map.chains) tables.set(`${c.family} ${c.table}`, { family: c.family, table: c.table });
    this.places.clear();
    for (const { family, table } of tables.values()) {
      if (family === 'bridge') continue;
      const stats = await this.client.ruleStats(family, table);
      const byChain = new Map<string, typeof stats>();
      for (const r of stats) byChain.set(r.chain, [...(byChain.get(r.chain) ?? []), r]);
      for (const [chain, rules] of byChain) {
        const c = this.chains.get(key(family, table, chain));
        // The rules' places are the backend's only while the chain holds as many rules as it wrote
        // (the agent's own drift check puts a chain that differs back as written).
        if (!c || rules.length !== c.tags.length) continue;
        this.places.set(key(family, table, chain), new Map(rules.map((r) => [r.handle, r.position])));
      }
    }
  }

  private heard(events: TraceEvent[]): void {
    // In order, each after the reload an unknown rule may need.
    this.queue = this.queue
      .then(async () => {
        for (const e of events) await this.step(e);
      })
      .catch((err: unknown) => this.onError((err as Error).message));
  }

  private async step(e: TraceEvent): Promise<void> {
    if (e.table === this.names.traceTable) return;
    const k = key(e.family, e.table, e.chain);
    const port = this.chains.get(k);
    let position: number | undefined;
    if (port && e.kind === 'rule' && e.handle !== undefined) {
      position = this.places.get(k)?.get(e.handle);
      // A rule the listing did not have: the port's filter was rewritten since; read it again (at
      // most once a second).
      if (position === undefined && Date.now() - this.lastReload > 1000) {
        await this.reload();
        position = this.places.get(k)?.get(e.handle);
      }
    }
    const where = port ? `${port.kind} of port ${this.t.portId}` : (this.shared.get(k) ?? `${e.family} table ${e.table}, chain ${e.chain}`);
    const rule = port && position !== undefined ? port.tags[position] : undefined;
    if (e.packet) {
      if (this.headers.size > 10_000) this.headers.clear();
      this.headers.set(e.id, e.packet);
    }
    const info = e.packet ?? this.headers.get(e.id);
    this.onStep({
      packet: e.id,
      where,
      family: e.family,
      table: e.table,
      chain: e.chain,
      kind: e.kind,
      ...(port ? { portChain: port.kind } : {}),
      ...(position !== undefined ? { position } : {}),
      ...(rule ? { rule } : {}),
      ...(e.verdict !== undefined ? { verdict: e.verdict } : {}),
      ...(e.target !== undefined ? { target: e.target } : {}),
      ...(info ? { packetInfo: info } : {}),
      ...(e.packet ? { headers: true } : {}),
    });
  }

  /** Stops marking (the marking table goes), then listening. */
  async stop(): Promise<void> {
    const at = this.markingTable;
    if ((await this.client.listTables().catch(() => [])).some(([f, n]) => f === at.family && n === at.table)) {
      await this.client
        .transact([{ op: 'delTable', ...at }])
        .catch((e: unknown) => this.onError(`the tracing table could not be removed: ${(e as Error).message}`));
    }
    await this.listener?.stop();
    await this.queue;
    await this.client.close();
  }
}
