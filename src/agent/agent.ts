// The agent daemon's core. Flow of an update: AMQP message on the agent's queue → `decode` (schema)
// → revision check against what is held → FirewallEngine input → coalesced apply → ipset (addon) /
// iptables-restore. Start-up, reconnects and gaps go through the sync RPC, ordered against live
// updates by per-group revisions: the agent binds first, buffers, syncs, then replays what is newer.
import type { Channel, ConsumeMessage } from 'amqplib';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import { FirewallEngine } from '../firewall/engine.js';
import type { Port, SecurityGroup } from '../model.js';
import { decode, MalformedMessage, toPort, type SyncReply, type UpdateMessage } from '../protocol/messages.js';
import { agentQueue, GROUP_EXCHANGE, groupKey } from '../protocol/routing.js';
import { AgentBroker } from './broker.js';
import type { AgentConfig } from './config.js';
import { AgentMetrics } from './metrics.js';
import { computeNeeds } from './needs.js';

const UPDATE_TYPES = ['group.members', 'group.rules', 'group.deleted', 'port.bound', 'port.updated', 'port.unbound'] as const;
/** Acks are batched (see ackLater); the batch stays well under the prefetch of 256. */
const ACK_INTERVAL_MS = 100;
const ACK_BATCH = 64;
/** Groups asked for in one sync request (the protocol allows up to LIMITS.groupsPerReply). */
const SYNC_GROUPS_PER_REQUEST = 1000;

interface HeldGroup extends SecurityGroup {
  revision: number;
}
interface HeldMembers {
  revision: number;
  ips: Set<string>;
}

export class Agent {
  readonly metrics: AgentMetrics;
  engine?: FirewallEngine;
  /** Connection, queue, signature checks and the sync RPC (broker.ts). */
  private readonly broker: AgentBroker;
  /** The live session's channel; undefined while disconnected. */
  private ch?: Channel;
  private readonly ports = new Map<string, Port & { revision: number }>();
  private readonly groups = new Map<string, HeldGroup>();
  private readonly members = new Map<string, HeldMembers>();
  private readonly bound = new Set<string>();
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

  /** This host's queue name (a hash of the host, so computed once). */
  private readonly queue: string;

  constructor(readonly cfg: AgentConfig, private readonly log: Logger) {
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
    this.engine = await FirewallEngine.create({
      ...(this.cfg.netns ? { netns: this.cfg.netns } : {}),
      prefix: this.cfg.prefix,
      mode: this.cfg.mode,
      coalesceMs: this.cfg.coalesceMs,
      structureIntervalMs: this.cfg.structureIntervalMs,
      structureIntervalMaxMs: this.cfg.structureIntervalMaxMs,
      reconcileIntervalMs: this.cfg.reconcileIntervalMs,
      logger: this.log,
    });
    if (this.cfg.metricsListen) this.http = await this.metrics.serve(this.cfg.metricsListen, () => this.status());
    await this.broker.start();
    if (this.cfg.fullSyncIntervalMs) {
      // A safety net, not the mechanism: revisions catch gaps in member deltas, but a rules or port
      // message lost between the controller and the broker would otherwise wait for a reconnect.
      this.resyncTimer = setInterval(() => {
        if (this.connected && !this.stopping) void this.serial(() => this.fullSync()).catch(() => undefined);
      }, this.cfg.fullSyncIntervalMs);
      this.resyncTimer.unref();
    }
  }

  /** Runs handlers one at a time, in arrival order. */
  private serial(f: () => Promise<void>): Promise<void> {
    const run = this.work.then(f);
    this.work = run.catch((e: unknown) => this.log.error({ err: e }, 'update handling failed'));
    return run;
  }

  private onMessage(msg: ConsumeMessage): void {
    this.metrics.bytes.inc(msg.content.length);
    let m: UpdateMessage;
    try {
      m = decode<UpdateMessage>(msg.content, UPDATE_TYPES);
    } catch (e) {
      this.metrics.rejected.inc();
      this.log.warn({ err: e instanceof MalformedMessage ? e.message : String(e), bytes: msg.content.length }, 'malformed message rejected');
      this.ch?.nack(msg, false, false);
      return;
    }
    this.metrics.messages.inc({ type: m.type });
    const gid = 'groupId' in m ? m.groupId : undefined;
    if (gid) this.byGroup.set(gid, (this.byGroup.get(gid) ?? 0) + 1);
    const ch = this.ch;
    void this.serial(async () => {
      if (this.buffer) this.buffer.push(m);
      else await this.handle(m);
    })
      .finally(() => {
        if (ch) this.ackLater(ch, msg);
      })
      // serial() logged the failure; a sync ended by a lost connection is made up for by the next full sync.
      .catch(() => undefined);
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
    switch (m.type) {
      case 'group.members': {
        // Bound for its rules only (no local rule names it as remote group): members are not needed.
        if (!computeNeeds(this.ports.values(), this.groups).members.has(m.groupId)) return;
        const held = this.members.get(m.groupId);
        if (held && m.revision <= held.revision) return void this.metrics.dropped.inc();
        if (m.resync || !held || held.revision !== m.baseRevision) return this.syncGroups([m.groupId]);
        for (const ip of m.removed) held.ips.delete(ip);
        for (const ip of m.added) held.ips.add(ip);
        held.revision = m.revision;
        engine.applyMemberDelta(m.groupId, m.added, m.removed);
        this.observeLag(m.sentAt, true);
        return;
      }
      case 'group.rules': {
        const held = this.groups.get(m.groupId);
        if (held && m.revision <= held.revision) return void this.metrics.dropped.inc();
        const g: HeldGroup = { id: m.groupId, stateful: m.stateful, rules: m.rules, revision: m.revision };
        this.groups.set(m.groupId, g);
        engine.setGroup(g);
        this.observeLag(m.sentAt);
        return this.updateBindings();
      }
      case 'group.deleted': {
        const held = this.groups.get(m.groupId);
        if (held && m.revision <= held.revision) return void this.metrics.dropped.inc();
        this.groups.delete(m.groupId);
        engine.removeGroup(m.groupId);
        return this.updateBindings();
      }
      case 'port.bound':
      case 'port.updated': {
        if (m.host !== this.cfg.host) return;
        const held = this.ports.get(m.port.id);
        if (held && m.revision <= held.revision) return void this.metrics.dropped.inc();
        const p = { ...toPort(m.port), revision: m.revision };
        this.ports.set(p.id, p);
        engine.setPort(p);
        this.observeLag(m.sentAt);
        return this.updateBindings();
      }
      case 'port.unbound': {
        const held = this.ports.get(m.portId);
        if (!held || m.revision <= held.revision) return void this.metrics.dropped.inc();
        this.ports.delete(m.portId);
        engine.removePort(m.portId);
        return this.updateBindings();
      }
    }
  }

  /** Convergence lag: from the publisher's send to the update being in the kernel. Waits for the
   *  engine's own applies; forcing one here would defeat its coalescing. */
  private observeLag(sentAt: number | undefined, membersOnly = false): void {
    if (!sentAt) return;
    void this.engine!.settled(membersOnly).then(() => this.metrics.lag.observe(Math.max(0, Date.now() - sentAt) / 1000));
  }

  /** Binds keys of groups newly needed (then syncs them), unbinds those no longer needed. */
  private async updateBindings(): Promise<void> {
    const ch = this.ch;
    if (!ch) return;
    const needs = computeNeeds(this.ports.values(), this.groups);
    const q = this.queue;
    const added = [...needs.all].filter((g) => !this.bound.has(g));
    const gone = [...this.bound].filter((g) => !needs.all.has(g));
    // Issued together: the channel pipelines them instead of waiting a round trip for each.
    await Promise.all(gone.map((g) => ch.unbindQueue(q, GROUP_EXCHANGE, groupKey(g))));
    for (const g of gone) {
      this.bound.delete(g);
      this.groups.delete(g);
      this.members.delete(g);
      this.engine!.removeGroup(g);
    }
    await Promise.all(added.map((g) => ch.bindQueue(q, GROUP_EXCHANGE, groupKey(g))));
    for (const g of added) this.bound.add(g);
    this.metrics.bindings.set(this.bound.size);
    if (added.length) await this.syncGroups(added);
  }

  /** Snapshot of the whole host: replaces everything held, then replays buffered newer updates. */
  private async fullSync(): Promise<void> {
    this.metrics.resyncs.inc({ scope: 'host' });
    this.buffer ??= [];
    const parts = await this.broker.rpc({ v: 1, type: 'sync.request', host: this.cfg.host });
    this.ports.clear();
    this.groups.clear();
    this.members.clear();
    this.absorb(parts, true);
    this.engine!.replaceAll({
      ports: [...this.ports.values()],
      groups: [...this.groups.values()],
      members: Object.fromEntries([...this.members].map(([g, m]) => [g, [...m.ips]])),
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
      parts.push(...(await this.broker.rpc({ v: 1, type: 'sync.request', host: this.cfg.host, groupIds: ids.slice(i, i + SYNC_GROUPS_PER_REQUEST) })));
    }
    for (const id of ids) this.members.delete(id);
    this.absorb(parts, false);
    for (const id of ids) {
      const g = this.groups.get(id);
      if (g) this.engine!.setGroup(g);
      this.engine!.setGroupMembers(id, [...(this.members.get(id)?.ips ?? [])]);
    }
    if (!outer) await this.bindAndReplay();
  }

  private absorb(parts: SyncReply[], withPorts: boolean): void {
    for (const part of parts) {
      if (withPorts) for (const w of part.ports ?? []) this.ports.set(w.id, { ...toPort(w), revision: w.revision ?? 0 });
      for (const g of part.groups) this.groups.set(g.id, { ...g });
      for (const m of part.members) {
        const held = this.members.get(m.groupId) ?? { revision: m.revision, ips: new Set<string>() };
        for (const ip of m.ips) held.ips.add(ip);
        held.revision = m.revision;
        this.members.set(m.groupId, held);
      }
    }
  }

  /** After a snapshot: bind what it showed is needed, then apply buffered updates (revisions drop the old). */
  private async bindAndReplay(): Promise<void> {
    await this.updateBindings();
    const buffered = this.buffer ?? [];
    this.buffer = null;
    for (const m of buffered) await this.handle(m);
  }

  status(): unknown {
    const needs = computeNeeds(this.ports.values(), this.groups);
    return {
      host: this.cfg.host,
      connected: this.connected,
      ports: [...this.ports.values()].map((p) => ({ id: p.id, device: p.device, groups: p.securityGroups, revision: p.revision })),
      groups: [...this.bound].map((id) => ({
        id,
        membersNeeded: needs.members.has(id),
        rulesRevision: this.groups.get(id)?.revision ?? null,
        membersRevision: this.members.get(id)?.revision ?? null,
        members: this.members.get(id)?.ips.size ?? 0,
        messages: this.byGroup.get(id) ?? 0,
      })),
      messagesByGroup: Object.fromEntries(this.byGroup),
      sets: this.engine?.status().sets ?? [],
      engine: this.engine?.stats,
    };
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
    await this.engine?.close();
    await new Promise<void>((r) => (this.http ? this.http.close(() => r()) : r()));
  }
}
