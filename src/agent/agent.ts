// The agent daemon's core. Flow of an update: AMQP message on the agent's queue → `decode` (schema)
// → revision check against what is held → FirewallEngine input → coalesced apply → ipset (addon) /
// iptables-restore. Start-up, reconnects and gaps go through the sync RPC, ordered against live
// updates by per-group revisions: the agent binds first, buffers, syncs, then replays what is newer.
import amqp, { type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import { FirewallEngine } from '../firewall/engine.js';
import { openDataplane } from '../firewall/select.js';
import { decode, encode, MalformedMessage, type SyncReply, type SyncRequest, type UpdateMessage } from '../protocol/messages.js';
import { agentQueue, DEAD_LETTER_EXCHANGE, DEAD_LETTER_QUEUE, GROUP_EXCHANGE, groupKey, HOST_EXCHANGE, hostKey, SYNC_QUEUE } from '../protocol/routing.js';
import type { AgentConfig } from './config.js';
import { AgentMetrics } from './metrics.js';
import { computeNeeds, type Needs } from './needs.js';

const UPDATE_TYPES = ['group.members', 'group.rules', 'group.deleted', 'port.bound', 'port.updated', 'port.unbound'] as const;
const REPLY_QUEUE = 'amq.rabbitmq.reply-to';
/** Acks are batched (see ackLater); the batch stays well under the prefetch of 256. */
const ACK_INTERVAL_MS = 100;
const ACK_BATCH = 64;
/** Groups asked for in one sync request (the protocol allows up to LIMITS.groupsPerReply). */
const SYNC_GROUPS_PER_REQUEST = 1000;

/** Revisions of deleted groups are remembered this long, so a late duplicate cannot bring one back. */
const TOMBSTONES_MAX = 10_000;

export class Agent {
  readonly metrics: AgentMetrics;
  engine?: FirewallEngine;
  private conn?: ChannelModel;
  private ch?: Channel;
  /** Group keys bound on our queue. The desired state itself lives in the engine (engine.state). */
  private readonly bound = new Set<string>();
  /** What the host needs (recomputed when ports or rules change, not per member delta). */
  private needs: Needs = { rules: new Set(), members: new Set(), all: new Set() };
  private readonly deletedGroups = new Map<string, number>();
  private readonly byGroup = new Map<string, number>();
  private buffer: UpdateMessage[] | null = null;
  private work: Promise<void> = Promise.resolve();
  /** The latest handled delivery not yet acknowledged (see ackLater). */
  private unacked: { ch: Channel; msg: ConsumeMessage; count: number } | null = null;
  private ackTimer: NodeJS.Timeout | null = null;
  private readonly replies = new Map<string, (m: SyncReply) => void>();
  private stopping = false;
  private reconnectAttempt = 0;
  private http?: Server;
  private connected = false;
  private everConnected = false;
  private resyncTimer?: NodeJS.Timeout;

  /** This host's queue name (a hash of the host, so computed once). */
  private readonly queue: string;

  constructor(readonly cfg: AgentConfig, private readonly log: Logger) {
    this.metrics = new AgentMetrics(() => this.engine);
    this.queue = agentQueue(cfg.host);
  }

  async start(): Promise<void> {
    const netns = this.cfg.netns ? { netns: this.cfg.netns } : {};
    const dp = await openDataplane(this.cfg.dataplane, { ...netns, prefix: this.cfg.prefix, mode: this.cfg.mode, logger: this.log, watch: this.cfg.reconcileIntervalMs > 0 });
    this.log.info({ dataplane: dp.kind, setting: this.cfg.dataplane, reason: dp.reason }, 'firewall dataplane');
    this.engine = await FirewallEngine.create({
      ...netns,
      dataplane: dp.dataplane,
      prefix: this.cfg.prefix,
      mode: this.cfg.mode,
      coalesceMs: this.cfg.coalesceMs,
      ...(this.cfg.structureIntervalMs !== undefined ? { structureIntervalMs: this.cfg.structureIntervalMs } : {}),
      structureIntervalMaxMs: this.cfg.structureIntervalMaxMs,
      reconcileIntervalMs: this.cfg.reconcileIntervalMs,
      logger: this.log,
    });
    if (this.cfg.metricsListen) this.http = await this.metrics.serve(this.cfg.metricsListen, () => this.status());
    await this.connectWithRetry();
    if (this.cfg.fullSyncIntervalMs) {
      // A safety net, not the mechanism: revisions catch gaps in member deltas, but a rules or port
      // message lost between the controller and the broker would otherwise wait for a reconnect.
      this.resyncTimer = setInterval(() => {
        if (this.connected && !this.stopping) this.enqueue('periodic full sync', () => this.fullSync());
      }, this.cfg.fullSyncIntervalMs);
      this.resyncTimer.unref();
    }
  }

  private async connectWithRetry(): Promise<void> {
    while (!this.stopping) {
      try {
        await this.connect();
        this.reconnectAttempt = 0;
        return;
      } catch (e) {
        const delay = Math.min(30_000, 500 * 2 ** this.reconnectAttempt++) * (0.5 + Math.random());
        this.log.warn({ err: (e as Error).message, retryInMs: Math.round(delay) }, 'broker connection failed');
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  private async connect(): Promise<void> {
    // Heartbeats notice a dead broker within seconds; the URL may set its own.
    const url = /[?&]heartbeat=/.test(this.cfg.amqpUrl) ? this.cfg.amqpUrl : `${this.cfg.amqpUrl}${this.cfg.amqpUrl.includes('?') ? '&' : '?'}heartbeat=5`;
    const conn = await amqp.connect(url);
    let abandoned = false;
    conn.on('error', (e: Error) => this.log.warn({ err: e.message }, 'broker connection error'));
    conn.on('close', () => {
      this.connected = false;
      if (this.stopping || abandoned) return;
      this.metrics.reconnects.inc();
      this.log.warn('broker connection lost; reconnecting');
      this.buffer = null;
      void this.connectWithRetry();
    });
    try {
      const ch = await conn.createChannel();
      ch.on('error', (e: Error) => this.log.warn({ err: e.message }, 'channel error'));
      await ch.assertExchange(GROUP_EXCHANGE, 'direct', { durable: true });
      await ch.assertExchange(HOST_EXCHANGE, 'direct', { durable: true });
      await ch.assertExchange(DEAD_LETTER_EXCHANGE, 'fanout', { durable: true });
      await ch.assertQueue(DEAD_LETTER_QUEUE, { durable: true });
      await ch.bindQueue(DEAD_LETTER_QUEUE, DEAD_LETTER_EXCHANGE, '');
      const q = this.queue;
      // Durable with an expiry: its bindings survive a reconnect (RabbitMQ 4 refuses transient
      // non-exclusive queues), and a host gone for good does not leave it behind. If it expired (or never
      // existed) its bindings are gone too, and everything is bound anew after the sync.
      // checkQueue of a missing queue closes its channel with a 404: probe on a throwaway channel.
      const probe = await conn.createChannel();
      probe.on('error', () => undefined);
      let existed = await probe.checkQueue(q).then(() => probe.close().then(() => true), () => false);
      if (existed && !this.everConnected) {
        // A previous process's queue: its bindings are unknown to us, so start clean (the full sync
        // below makes up for whatever it held).
        await ch.deleteQueue(q);
        existed = false;
      }
      if (!existed) this.bound.clear();
      this.everConnected = true;
      await ch.assertQueue(q, { durable: true, arguments: { 'x-expires': this.cfg.queueExpiresMs, 'x-dead-letter-exchange': DEAD_LETTER_EXCHANGE } });
      await ch.prefetch(256);
      // Direct reply-to needs its consumer before the first request is published.
      await ch.consume(REPLY_QUEUE, (m) => m && this.onReply(m), { noAck: true });
      this.conn = conn;
      this.ch = ch;
      // Bind first and buffer: nothing published from here on is lost while the snapshot is taken.
      this.buffer = [];
      await ch.bindQueue(q, HOST_EXCHANGE, hostKey(this.cfg.host));
      await ch.consume(q, (m) => m && this.onMessage(m));
      this.connected = true;
      await this.serial(() => this.fullSync());
    } catch (e) {
      // Half set up: drop this connection quietly; the caller retries with a fresh one.
      abandoned = true;
      await conn.close().catch(() => undefined);
      throw e;
    }
    this.log.info({ host: this.cfg.host, groups: this.bound.size }, 'agent in sync');
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
      this.log.warn({ err: e instanceof MalformedMessage ? e.message : String(e), bytes: msg.content.length }, 'malformed message rejected');
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
        // Bound for its rules only (no local rule names it as remote group): members are not needed.
        if (!this.needs.members.has(m.groupId)) return;
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
        return this.updateBindings();
      }
      case 'group.deleted': {
        const held = state.group(m.groupId)?.revision ?? this.deletedGroups.get(m.groupId);
        if (held !== undefined && m.revision <= held) return void this.metrics.dropped.inc();
        this.tombstone(m.groupId, m.revision);
        engine.removeGroup(m.groupId);
        return this.updateBindings();
      }
      case 'port.bound':
      case 'port.updated': {
        if (m.host !== this.cfg.host) return;
        const held = state.port(m.port.id)?.revision;
        if (held !== undefined && m.revision <= held) return void this.metrics.dropped.inc();
        engine.setPort({ ...m.port, revision: m.revision });
        engine.releaseInput('port', m.port.id);
        this.observeLag(m.sentAt);
        return this.updateBindings();
      }
      case 'port.unbound': {
        const held = state.port(m.portId)?.revision;
        if (held === undefined || m.revision <= held) return void this.metrics.dropped.inc();
        engine.removePort(m.portId);
        return this.updateBindings();
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

  /** Binds keys of groups newly needed (then syncs them), unbinds those no longer needed. */
  private async updateBindings(): Promise<void> {
    const ch = this.ch;
    if (!ch) return;
    const engine = this.engine!;
    const needs = computeNeeds(engine.state.allPorts(), engine.state.allGroups());
    this.needs = needs;
    const q = this.queue;
    const added = [...needs.all].filter((g) => !this.bound.has(g));
    const gone = [...this.bound].filter((g) => !needs.all.has(g));
    // Issued together: the channel pipelines them instead of waiting a round trip for each.
    await Promise.all(gone.map((g) => ch.unbindQueue(q, GROUP_EXCHANGE, groupKey(g))));
    for (const g of gone) {
      this.bound.delete(g);
      engine.removeGroup(g);
      engine.releaseInput('group', g);
      engine.releaseInput('members', g);
    }
    await Promise.all(added.map((g) => ch.bindQueue(q, GROUP_EXCHANGE, groupKey(g))));
    for (const g of added) this.bound.add(g);
    this.metrics.bindings.set(this.bound.size);
    if (added.length) await this.syncGroups(added);
  }

  private async rpc(req: SyncRequest): Promise<SyncReply[]> {
    const ch = this.ch;
    if (!ch) throw new Error('not connected');
    for (let attempt = 0; ; attempt++) {
      const id = randomUUID();
      const parts: SyncReply[] = [];
      try {
        return await new Promise<SyncReply[]>((resolve, reject) => {
          const timer = setTimeout(() => {
            this.replies.delete(id);
            reject(new Error('sync RPC timed out'));
          }, this.cfg.syncTimeoutMs);
          this.replies.set(id, (m) => {
            if (m.error) {
              clearTimeout(timer);
              this.replies.delete(id);
              return reject(new Error(`sync refused: ${m.error}`));
            }
            parts[m.part] = m;
            if (parts.filter(Boolean).length === m.parts) {
              clearTimeout(timer);
              this.replies.delete(id);
              resolve(parts);
            }
          });
          ch.sendToQueue(SYNC_QUEUE, encode(req), { replyTo: REPLY_QUEUE, correlationId: id, contentType: 'application/json' });
        });
      } catch (e) {
        // Direct reply-to is at-most-once: a lost reply is only a timeout, so ask again.
        if (attempt >= 4 || this.stopping) throw e;
        this.log.warn({ err: (e as Error).message, attempt }, 'sync RPC failed; retrying');
        await new Promise((r) => setTimeout(r, 200 * 2 ** attempt));
      }
    }
  }

  private onReply(msg: ConsumeMessage): void {
    this.metrics.bytes.inc(msg.content.length);
    const cb = this.replies.get(msg.properties.correlationId as string);
    if (!cb) return;
    try {
      cb(decode<SyncReply>(msg.content, ['sync.reply']));
    } catch (e) {
      this.metrics.rejected.inc();
      this.log.warn({ err: (e as Error).message }, 'malformed sync reply ignored');
    }
  }

  /** Snapshot of the whole host: replaces everything held, then replays buffered newer updates. */
  private async fullSync(): Promise<void> {
    this.metrics.resyncs.inc({ scope: 'host' });
    this.buffer ??= [];
    const parts = await this.rpc({ v: 1, type: 'sync.request', host: this.cfg.host });
    const engine = this.engine!;
    const ports = parts.flatMap((p) => (p.ports ?? []).map((w) => ({ ...w, revision: w.revision ?? 0 })));
    const groups = parts.flatMap((p) => p.groups);
    const members = this.collectMembers(parts);
    const quarantined = this.quarantine(parts);
    engine.replaceAll({
      ports,
      groups,
      members: Object.fromEntries([...members].map(([g, m]) => [g, m.ips])),
      memberRevisions: Object.fromEntries([...members].map(([g, m]) => [g, m.revision])),
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
      parts.push(...(await this.rpc({ v: 1, type: 'sync.request', host: this.cfg.host, groupIds: ids.slice(i, i + SYNC_GROUPS_PER_REQUEST) })));
    }
    const engine = this.engine!;
    const quarantined = new Set(this.quarantine(parts).groups);
    const members = this.collectMembers(parts);
    for (const g of parts.flatMap((p) => p.groups)) {
      if (quarantined.has(g.id)) continue;
      const held = engine.state.group(g.id);
      if (!held || held.revision !== g.revision) engine.setGroup(g);
    }
    for (const id of ids) {
      const m = members.get(id);
      engine.setGroupMembers(id, m?.ips ?? [], m?.revision ?? 0);
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
      ports: [...(state?.allPorts() ?? [])].map((p) => ({ id: p.id, device: p.device, groups: p.securityGroups, revision: p.revision, inKernel: engine!.portInKernel(p.id) })),
      groups: [...this.bound].map((id) => ({
        id,
        membersNeeded: this.needs.members.has(id),
        rulesRevision: state?.group(id)?.revision ?? null,
        membersRevision: state?.membersRevision(id) ?? null,
        members: state?.membersOf(id).size ?? 0,
        messages: this.byGroup.get(id) ?? 0,
      })),
      messagesByGroup: Object.fromEntries(this.byGroup),
      sets: es?.sets ?? [],
      quarantined: es?.quarantined ?? [],
      engine: engine?.stats,
    };
  }

  /** Stops consuming; the firewall stays in place. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    await this.work.catch(() => undefined);
    this.ackNow();
    await this.conn?.close().catch(() => undefined);
    await this.engine?.flush().catch(() => undefined);
    await this.engine?.close();
    await new Promise<void>((r) => (this.http ? this.http.close(() => r()) : r()));
  }
}
