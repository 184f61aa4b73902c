// The agent daemon's core. Flow of an update: AMQP message on the agent's queue → `decode` (schema)
// → revision check against what is held → FirewallEngine input → coalesced apply → ipset (addon) /
// iptables-restore. Start-up, reconnects and gaps go through the sync RPC, ordered against live
// updates by per-group revisions: the agent binds first, buffers, syncs, then replays what is newer.
import type { Channel, ConsumeMessage } from 'amqplib';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import type { Dataplane } from '../firewall/dataplane.js';
import { FirewallEngine } from '../firewall/engine.js';
import { decode, MalformedMessage, type SyncReply, type UpdateMessage } from '../protocol/messages.js';
import { agentQueue, GROUP_EXCHANGE, groupKey } from '../protocol/routing.js';
import { AgentBroker, SessionEnded } from './broker.js';
import { openDataplane, UnsupportedSetting } from '../firewall/select.js';
import { bridgeZones } from '../firewall/zones.js';
import { listLinks } from '../addon/conntrack.js';
import type { AgentConfig } from './config.js';
import { AgentMetrics, InputError } from './metrics.js';
import { NetworkLog } from './network-log.js';
import { probePacket, readProbe } from './probe.js';
import { computeNeeds, type Needs } from './needs.js';
import { IpsetError, NativeError } from '../addon/errors.js';
import { ConfigError } from '../settings.js';

const UPDATE_TYPES = ['group.members', 'group.rules', 'group.logs', 'group.deleted', 'port.bound', 'port.updated', 'port.unbound'] as const;
/** Acks are batched (see ackLater); the batch stays well under the prefetch of 256. */
const ACK_INTERVAL_MS = 100;
const ACK_BATCH = 64;
/** Groups asked for in one sync request (the protocol allows up to LIMITS.groupsPerReply). */
const SYNC_GROUPS_PER_REQUEST = 1000;

/** Revisions of deleted groups are remembered this long, so a late duplicate cannot bring one back. */
const TOMBSTONES_MAX = 10_000;

export interface AgentOptions {
  /** The firewall backend itself, in place of the kernel one `cfg.dataplane` names. Simulated hosts
   *  (bench:scale) give the in-memory one, so that everything above the kernel is the real agent. */
  dataplane?: Dataplane;
}

export class Agent {
  readonly metrics: AgentMetrics;
  engine?: FirewallEngine;
  /** Connection, queue, signature checks and the sync RPC (broker.ts). */
  private readonly broker: AgentBroker;
  /** The live session's channel; undefined while disconnected. */
  private ch?: Channel;
  /** Group keys bound on our queue. The desired state itself lives in the engine (engine.state). */
  private readonly bound = new Set<string>();
  /** An update of the bindings is queued (`bindingsChanged`). */
  private bindingsPending = false;
  /** What the host needs (recomputed when ports or rules change, not per member delta). */
  private needs: Needs = { rules: new Set(), members: new Set(), all: new Set() };
  /** Groups whose member list is current: set by a sync, and no delta of theirs skipped since. */
  private readonly membersCurrent = new Set<string>();
  private readonly deletedGroups = new Map<string, number>();
  private readonly byGroup = new Map<string, number>();
  private buffer: UpdateMessage[] | null = null;
  private work: Promise<void> = Promise.resolve();
  /** The latest handled delivery not yet acknowledged (see ackLater). */
  private unacked: { ch: Channel; msg: ConsumeMessage; count: number } | null = null;
  private ackTimer: NodeJS.Timeout | null = null;
  private stopping = false;
  private http?: Server;
  private connected = false;
  private resyncTimer?: NodeJS.Timeout;
  /** Security-group logging's reader and writer (with `networkLog`). */
  networkLog?: NetworkLog;

  /** This host's queue name (a hash of the host, so computed once). */
  private readonly queue: string;

  constructor(
    readonly cfg: AgentConfig,
    private readonly log: Logger,
    private readonly opts: AgentOptions = {},
  ) {
    this.metrics = new AgentMetrics(() => this.engine);
    this.queue = agentQueue(cfg.host);
    this.broker = new AgentBroker(cfg, log, this.metrics, {
      opened: (ch, queueKept) => {
        if (!queueKept) this.bound.clear();
        this.ch = ch;
        // Bind first and buffer: nothing published from here on is lost while the snapshot is taken.
        this.buffer = [];
      },
      ready: async () => {
        this.connected = true;
        await this.serial(() => this.fullSync());
        this.log.info({ host: this.cfg.host, groups: this.bound.size }, 'agent in sync');
      },
      deliver: (m) => this.onMessage(m),
      lost: () => {
        this.connected = false;
        this.ch = undefined;
        this.buffer = null;
      },
    });
  }

  async start(): Promise<void> {
    const netns = this.cfg.netns ? { netns: this.cfg.netns } : {};
    // First the listener: a port that cannot be had stops start-up before the kernel is touched.
    if (this.cfg.ruleCounters) this.metrics.countRules(() => this.engine);
    if (this.cfg.metricsListen) {
      this.http = await this.metrics.serve(this.cfg.metricsListen, {
        '/status': async (q) => ({
          ...(this.status() as object),
          ...(await this.conntrackZones()),
          ...(q.has('counters') ? { counters: await this.engine?.counters() } : {}),
        }),
        '/explain': (q) => this.explain(q),
        '/port-rules': (q) => this.portRules(q.get('port') ?? ''),
      });
    }
    try {
      const dataplane = this.opts.dataplane ?? (await this.openKernelDataplane(netns));
      this.engine = new FirewallEngine(dataplane, {
        coalesceMs: this.cfg.coalesceMs,
        ...(this.cfg.structureIntervalMs !== undefined ? { structureIntervalMs: this.cfg.structureIntervalMs } : {}),
        structureIntervalMaxMs: this.cfg.structureIntervalMaxMs,
        reconcileIntervalMs: this.cfg.reconcileIntervalMs,
        logger: this.log,
        ...(this.cfg.networkLog ? { logging: true } : {}),
      });
      if (this.cfg.networkLog) {
        this.networkLog = await NetworkLog.start(
          {
            ...netns,
            prefix: this.cfg.prefix,
            ...this.logLimits(),
            ...(this.cfg.networkLogFile ? { file: this.cfg.networkLogFile } : {}),
            logger: this.log,
          },
          () => this.engine?.state,
        ).catch((e: unknown) => {
          const where = netns.netns ? ` in netns ${netns.netns}` : '';
          if (e instanceof NativeError)
            throw new ConfigError(`security-group logging: cannot read log group ${this.cfg.networkLogGroup}${where}: ${e.message}`);
          throw e;
        });
        this.metrics.countNetworkLog(() => this.networkLog?.stats);
      }
    } catch (e) {
      this.http?.close();
      await this.engine?.close().catch(() => undefined);
      throw e;
    }
    await this.broker.start();
    if (this.cfg.fullSyncIntervalMs) {
      // A safety net, not the mechanism: revisions catch gaps in member deltas, but a rules or port
      // message lost between the controller and the broker would otherwise wait for a reconnect.
      this.resyncTimer = setInterval(() => {
        if (this.connected && !this.stopping) this.enqueue('periodic full sync', () => this.fullSync());
      }, this.cfg.fullSyncIntervalMs);
      this.resyncTimer.unref();
    }
  }

  /** The NFLOG group and its limits, as the logging rules and the log's reader share them. */
  private logLimits(): { group: number; rateLimit: number; burstLimit: number } {
    return { group: this.cfg.networkLogGroup, rateLimit: this.cfg.networkLogRateLimit, burstLimit: this.cfg.networkLogBurstLimit };
  }

  /** The backend the config asks for (`auto`: the one this kernel can run), with the choice logged. */
  private async openKernelDataplane(netns: { netns?: string }): Promise<Dataplane> {
    const log = this.cfg.networkLog ? { log: this.logLimits() } : {};
    const dp = await openDataplane(this.cfg.dataplane, {
      ...netns,
      prefix: this.cfg.prefix,
      mode: this.cfg.mode,
      logger: this.log,
      watch: this.cfg.reconcileIntervalMs > 0,
      unknownDevicePrefixes: this.cfg.dropUnknownDevices,
      markBit: this.cfg.iptablesMarkBit,
      conntrackZoneBridges: this.cfg.conntrackZoneBridges,
      ...log,
    }).catch((e: unknown) => {
      // What the kernel side refuses at start (a namespace that is not there, a missing module or
      // capability) is the host's to fix: said in one line, with where.
      if (e instanceof IpsetError || e instanceof NativeError || e instanceof UnsupportedSetting)
        throw new ConfigError(
          `cannot open the ${this.cfg.dataplane} firewall${netns.netns ? ` in netns ${netns.netns}` : ''}: ${e.message}`,
        );
      throw e;
    });
    this.log.info({ dataplane: dp.kind, setting: this.cfg.dataplane, reason: dp.reason }, 'firewall dataplane');
    return dp.dataplane;
  }

  /** Runs handlers one at a time, in arrival order; the caller gets the outcome. */
  private serial(f: () => Promise<void>): Promise<void> {
    const run = this.work.then(f);
    this.work = run.catch(() => undefined);
    return run;
  }

  /** `serial` for work nobody awaits: a failure is counted and logged, never an unhandled rejection. */
  private enqueue(what: string, f: () => Promise<void>): void {
    this.serial(f).catch((e: unknown) => {
      // A sync cut short by a lost connection is expected: the reconnect's full sync replaces it.
      if (e instanceof SessionEnded) return void this.log.info({ reason: e.message }, `${what} ended with the broker session`);
      this.metrics.handlerErrors.inc();
      this.log.error({ err: e }, `${what} failed`);
    });
  }

  private onMessage(msg: ConsumeMessage): void {
    this.metrics.bytes.inc(msg.content.length);
    let m: UpdateMessage;
    try {
      m = decode<UpdateMessage>(msg.content, UPDATE_TYPES);
    } catch (e) {
      this.metrics.rejected.inc();
      this.log.warn(
        { err: e instanceof MalformedMessage ? e.message : String(e), bytes: msg.content.length },
        'malformed message rejected',
      );
      this.ch?.nack(msg, false, false);
      return;
    }
    this.metrics.messages.inc({ type: m.type });
    const gid = 'groupId' in m ? m.groupId : undefined;
    if (gid) this.byGroup.set(gid, (this.byGroup.get(gid) ?? 0) + 1);
    const ch = this.ch;
    this.enqueue(`handling ${m.type}`, async () => {
      try {
        if (this.buffer) this.buffer.push(m);
        else await this.handle(m);
      } finally {
        if (ch) this.ackLater(ch, msg);
      }
    });
  }

  /** Handlers finish in delivery order, so one ack with `allUpTo` of the latest covers all before it.
   *  Acks go out every ACK_INTERVAL_MS or ACK_BATCH messages, whichever first: on loopback each ack
   *  frame costs the agent a TCP send (a third of its own CPU in the storm benchmark before batching). A delivery
   *  handled but not yet acked when the agent dies is redelivered, and revisions drop it. Rejected
   *  messages were nacked singly on arrival and are no longer outstanding, so the multiple ack does
   *  not touch them. */
  private ackLater(ch: Channel, msg: ConsumeMessage): void {
    if (this.unacked && this.unacked.ch !== ch) this.ackNow();
    this.unacked = { ch, msg, count: (this.unacked?.count ?? 0) + 1 };
    if (this.unacked.count >= ACK_BATCH) this.ackNow();
    else this.ackTimer ??= setTimeout(() => this.ackNow(), ACK_INTERVAL_MS);
  }

  private ackNow(): void {
    if (this.ackTimer) clearTimeout(this.ackTimer);
    this.ackTimer = null;
    const u = this.unacked;
    this.unacked = null;
    try {
      u?.ch.ack(u.msg, true);
    } catch {
      // channel gone: the broker redelivers, and revisions make that harmless
    }
  }

  private async handle(m: UpdateMessage): Promise<void> {
    const engine = this.engine!;
    const state = engine.state;
    switch (m.type) {
      case 'group.members': {
        // Bound for its rules only (no local rule names it as remote group): members are not needed,
        // and those held are stale from here on.
        if (!this.needs.members.has(m.groupId)) return void this.membersCurrent.delete(m.groupId);
        const held = state.membersRevision(m.groupId);
        if (held !== undefined && m.revision <= held) return void this.metrics.dropped.inc();
        if (m.resync || held === undefined || held !== m.baseRevision) return this.syncGroups([m.groupId]);
        engine.applyMemberDelta(m.groupId, m.added, m.removed, m.revision);
        this.observeLag(m.sentAt, true);
        return;
      }
      case 'group.rules': {
        const held = state.group(m.groupId)?.revision ?? this.deletedGroups.get(m.groupId);
        if (held !== undefined && m.revision <= held) return void this.metrics.dropped.inc();
        this.deletedGroups.delete(m.groupId);
        engine.setGroup({ id: m.groupId, stateful: m.stateful, rules: m.rules, revision: m.revision });
        engine.releaseInput('group', m.groupId);
        this.observeLag(m.sentAt);
        return this.bindingsChanged();
      }
      case 'group.logs': {
        const held = state.groupLogs(m.groupId)?.revision;
        if (held !== undefined && m.revision <= held) return void this.metrics.dropped.inc();
        engine.setGroupLogs(m.groupId, m.logs, m.revision);
        this.observeLag(m.sentAt);
        return;
      }
      case 'group.deleted': {
        const held = state.group(m.groupId)?.revision ?? this.deletedGroups.get(m.groupId);
        if (held !== undefined && m.revision <= held) return void this.metrics.dropped.inc();
        this.tombstone(m.groupId, m.revision);
        engine.removeGroup(m.groupId);
        return this.bindingsChanged();
      }
      case 'port.bound':
      case 'port.updated': {
        if (m.host !== this.cfg.host) return;
        const held = state.port(m.port.id)?.revision;
        if (held !== undefined && m.revision <= held) return void this.metrics.dropped.inc();
        engine.setPort({ ...m.port, revision: m.revision });
        engine.releaseInput('port', m.port.id);
        this.observeLag(m.sentAt);
        return this.bindingsChanged();
      }
      case 'port.unbound': {
        const held = state.port(m.portId)?.revision;
        if (held === undefined || m.revision <= held) return void this.metrics.dropped.inc();
        engine.removePort(m.portId);
        return this.bindingsChanged();
      }
    }
  }

  private tombstone(groupId: string, revision: number): void {
    if (this.deletedGroups.size >= TOMBSTONES_MAX) this.deletedGroups.delete(this.deletedGroups.keys().next().value!);
    this.deletedGroups.set(groupId, revision);
  }

  /** Convergence lag: from the publisher's send to the update being in the kernel. Waits for the
   *  engine's own applies; forcing one here would defeat its coalescing. */
  private observeLag(sentAt: number | undefined, membersOnly = false): void {
    if (!sentAt) return;
    this.engine!.settled(membersOnly).then(
      () => this.metrics.lag.observe(Math.max(0, Date.now() - sentAt) / 1000),
      () => undefined,
    );
  }

  /**
   * Ports or rules changed: the groups the host needs may have. The bindings are brought up to date
   * by a handler queued behind the messages already waiting, so a burst of them (a bulk boot: each
   * port naming a group new to the host) is applied first and every group it made needed is bound and
   * synced in one request, instead of one sync round trip per message while the rest wait. Messages
   * of a group arrive only once it is bound, so none is missed meanwhile.
   */
  private bindingsChanged(): void {
    if (this.bindingsPending) return;
    this.bindingsPending = true;
    this.enqueue('updating bindings', () => {
      this.bindingsPending = false;
      return this.updateBindings();
    });
  }

  /** Binds keys of groups newly needed (then syncs them), unbinds those no longer needed. */
  private async updateBindings(): Promise<void> {
    const ch = this.ch;
    if (!ch) return;
    const engine = this.engine!;
    const needs = computeNeeds(engine.state.allPorts(), engine.state.allGroups());
    const before = this.needs;
    this.needs = needs;
    const q = this.queue;
    const added = [...needs.all].filter((g) => !this.bound.has(g));
    // Bound for its rules alone, a group's member deltas were not followed: the members it holds may
    // be stale, so a group whose members became needed is synced as a new one is — unless a sync set
    // them and none was skipped since (a group just bound and synced, whose rules, now known, name it:
    // a second sync would only repeat the first, one more round trip on the host's queue).
    const membersNowNeeded = [...needs.members].filter((g) => this.bound.has(g) && !before.members.has(g) && !this.membersCurrent.has(g));
    const gone = [...this.bound].filter((g) => !needs.all.has(g));
    // Issued together: the channel pipelines them instead of waiting a round trip for each.
    await this.onSession(ch, Promise.all(gone.map((g) => ch.unbindQueue(q, GROUP_EXCHANGE, groupKey(g)))));
    for (const g of gone) {
      this.bound.delete(g);
      this.membersCurrent.delete(g);
      engine.removeGroup(g);
      engine.releaseInput('group', g);
      engine.releaseInput('members', g);
    }
    await this.onSession(ch, Promise.all(added.map((g) => ch.bindQueue(q, GROUP_EXCHANGE, groupKey(g)))));
    for (const g of added) this.bound.add(g);
    this.metrics.bindings.set(this.bound.size);
    const toSync = [...added, ...membersNowNeeded];
    if (toSync.length) await this.syncGroups(toSync);
  }

  /** A change on the session's channel `ch`. Failing because that session ended (its channel is no
   *  longer the agent's), it ends as a sync RPC does then: the next session's full sync binds afresh,
   *  and a connection lost mid-change is no handler fault. */
  private async onSession<T>(ch: Channel, op: Promise<T>): Promise<T> {
    try {
      return await op;
    } catch (e) {
      if (this.ch === ch) throw e;
      throw new SessionEnded(`broker session ended during a binding change: ${(e as Error).message}`);
    }
  }

  /** Snapshot of the whole host: replaces everything held, then replays buffered newer updates. */
  private async fullSync(): Promise<void> {
    this.metrics.resyncs.inc({ scope: 'host' });
    this.buffer ??= [];
    const parts = await this.broker.rpc({ v: 1, type: 'sync.request', host: this.cfg.host });
    const engine = this.engine!;
    const ports = parts.flatMap((p) => (p.ports ?? []).map((w) => ({ ...w, revision: w.revision ?? 0 })));
    const groups = parts.flatMap((p) => p.groups);
    const members = this.collectMembers(parts);
    const quarantined = this.quarantine(parts);
    this.membersCurrent.clear();
    for (const g of members.keys()) this.membersCurrent.add(g);
    engine.replaceAll({
      ports,
      groups: groups.map(({ logs: _logs, logsRevision: _revision, ...g }) => g),
      members: Object.fromEntries([...members].map(([g, m]) => [g, m.ips])),
      memberRevisions: Object.fromEntries([...members].map(([g, m]) => [g, m.revision])),
      logs: Object.fromEntries(groups.map((g) => [g.id, { logs: g.logs ?? [], revision: g.logsRevision ?? 0 }])),
      // An object the validator refused keeps its last good version (or none, if never seen valid).
      keep: { ports: quarantined.ports, groups: quarantined.groups },
    });
    await this.bindAndReplay();
  }

  /** Snapshot of some groups (newly needed, or a revision gap). */
  private async syncGroups(ids: string[]): Promise<void> {
    this.metrics.resyncs.inc({ scope: 'group' }, ids.length);
    const outer = this.buffer;
    this.buffer ??= [];
    const parts: SyncReply[] = [];
    for (let i = 0; i < ids.length; i += SYNC_GROUPS_PER_REQUEST) {
      parts.push(
        ...(await this.broker.rpc({
          v: 1,
          type: 'sync.request',
          host: this.cfg.host,
          groupIds: ids.slice(i, i + SYNC_GROUPS_PER_REQUEST),
        })),
      );
    }
    const engine = this.engine!;
    const quarantined = new Set(this.quarantine(parts).groups);
    const members = this.collectMembers(parts);
    for (const g of parts.flatMap((p) => p.groups)) {
      if (quarantined.has(g.id)) continue;
      const held = engine.state.group(g.id);
      const { logs, logsRevision, ...rules } = g;
      if (!held || held.revision !== g.revision) engine.setGroup(rules);
      if (engine.state.groupLogs(g.id)?.revision !== (logsRevision ?? 0)) engine.setGroupLogs(g.id, logs ?? [], logsRevision ?? 0);
    }
    for (const id of ids) {
      const m = members.get(id);
      engine.setGroupMembers(id, m?.ips ?? [], m?.revision ?? 0);
      this.membersCurrent.add(id);
    }
    if (!outer) await this.bindAndReplay();
  }

  /** Member lists of a reply (a large group spans several parts). */
  private collectMembers(parts: SyncReply[]): Map<string, { revision: number; ips: string[] }> {
    const out = new Map<string, { revision: number; ips: string[] }>();
    for (const part of parts) {
      for (const m of part.members) {
        const held = out.get(m.groupId) ?? { revision: m.revision, ips: [] };
        held.ips.push(...m.ips);
        held.revision = m.revision;
        out.set(m.groupId, held);
      }
    }
    return out;
  }

  /** Records the objects of a reply that the validator refused (decode left them out); returns their ids. */
  private quarantine(parts: SyncReply[]): { ports: string[]; groups: string[] } {
    const out = { ports: [] as string[], groups: [] as string[] };
    const engine = this.engine!;
    const refused = new Set<string>();
    for (const q of parts.flatMap((p) => p.quarantined ?? [])) {
      engine.quarantineInput(q.kind, q.id, q.reason);
      this.metrics.quarantined.inc({ kind: q.kind });
      refused.add(`${q.kind}:${q.id}`);
      if (q.kind === 'port') out.ports.push(q.id);
      if (q.kind === 'group') out.groups.push(q.id);
    }
    // Objects that came valid this time are out of quarantine.
    for (const part of parts) {
      for (const p of part.ports ?? []) if (!refused.has(`port:${p.id}`)) engine.releaseInput('port', p.id);
      for (const g of part.groups) if (!refused.has(`group:${g.id}`)) engine.releaseInput('group', g.id);
      for (const m of part.members) if (!refused.has(`members:${m.groupId}`)) engine.releaseInput('members', m.groupId);
    }
    return out;
  }

  /** After a snapshot: bind what it showed is needed, then apply buffered updates (revisions drop the old). */
  private async bindAndReplay(): Promise<void> {
    await this.updateBindings();
    const buffered = this.buffer ?? [];
    this.buffer = null;
    for (const m of buffered) await this.handle(m);
  }

  status(): unknown {
    const engine = this.engine;
    const state = engine?.state;
    const es = engine?.status();
    return {
      host: this.cfg.host,
      connected: this.connected,
      ports: [...(state?.allPorts() ?? [])].map((p) => ({
        id: p.id,
        device: p.device,
        groups: p.securityGroups,
        revision: p.revision,
        inKernel: engine!.portInKernel(p.id),
      })),
      groups: [...this.bound].map((id) => ({
        id,
        rulesNeeded: this.needs.rules.has(id),
        membersNeeded: this.needs.members.has(id),
        rulesRevision: state?.group(id)?.revision ?? null,
        membersRevision: state?.membersRevision(id) ?? null,
        members: state?.membersOf(id).size ?? 0,
        logs: state?.groupLogs(id)?.logs.length ?? 0,
        logsRevision: state?.groupLogs(id)?.revision ?? null,
        messages: this.byGroup.get(id) ?? 0,
      })),
      messagesByGroup: Object.fromEntries(this.byGroup),
      sets: es?.sets ?? [],
      quarantined: es?.quarantined ?? [],
      engine: engine?.stats,
      ...(this.networkLog ? { networkLog: this.networkLog.stats } : {}),
    };
  }

  /** With conntrack zones: the bridges present whose traffic is tracked in a zone of its own, and
   *  each one's zone (a link dump; src/firewall/zones.ts). */
  private async conntrackZones(): Promise<{ conntrackZones?: { bridge: string; zone: number }[] }> {
    if (!this.cfg.conntrackZoneBridges.length) return {};
    const links = await listLinks(this.cfg.netns).catch(() => undefined);
    return links ? { conntrackZones: bridgeZones(this.cfg.conntrackZoneBridges, links) } : {};
  }

  /** What the port's filter does with the packet the query describes, from the desired state. */
  private explain(q: URLSearchParams): unknown {
    let probe;
    try {
      probe = readProbe(
        (k) => q.get(k) ?? undefined,
        (k) => q.has(k),
      );
    } catch (e) {
      throw new InputError((e as Error).message);
    }
    const port = this.engine?.state.port(probe.port);
    if (!port) throw new InputError(`no port ${probe.port} on this host`);
    let packet;
    try {
      packet = probePacket(probe, port.fixedIps);
    } catch (e) {
      throw new InputError((e as Error).message);
    }
    const answer = this.engine!.explain(probe.port, packet);
    return { port: port.id, packet, ...(answer === 'unfiltered' ? { unfiltered: true } : { explanation: answer }) };
  }

  /** The port's device and where its chains are (for `sg-agent trace`). */
  private async portRules(portId: string): Promise<unknown> {
    const port = this.engine?.state.port(portId);
    if (!port) throw new InputError(`no port ${portId} on this host`);
    const map = await this.engine!.portRules(portId);
    if (!map) throw new InputError(`port ${portId} has no filter in the kernel (port security off, or not written yet)`);
    return { port: port.id, device: port.device, map };
  }

  /** Stops consuming; the firewall stays in place. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    // A sync waiting on an absent controller would otherwise hold the handlers (and the stop) forever.
    this.broker.stopRequests();
    await this.work.catch(() => undefined);
    this.ackNow();
    await this.broker.close();
    await this.engine?.flush().catch(() => undefined);
    await this.networkLog?.close();
    await this.engine?.close();
    await new Promise<void>((r) => (this.http ? this.http.close(() => r()) : r()));
  }
}
