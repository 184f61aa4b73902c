// The reference control plane: store + outbox relay + publisher + sync RPC + admin API, wired
// together. Each change is stored with the messages announcing it in one transaction; the relay then
// publishes them (with broker confirms, signed) to exactly the hosts and groups they concern. Several
// controller processes may share one store — the same data directory on one machine (LMDB), or one
// etcd cluster from several machines: each serves the admin API it is given and consumes the shared
// sync queue; one of them at a time, the holder of the leadership (leadership.ts), publishes what any
// of them stored. The broker may be down at start or go away at any time: the controller keeps
// (re)connecting, to the next broker of its list, the API keeps answering reads, and changes wait in
// the outbox.
import type { Channel, ChannelModel, ConfirmChannel } from 'amqplib';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import type { LogResource, PortInput, SecurityGroupRuleInput } from '../domain/model.js';
import { validateLogResource, ValidationError } from '../domain/validate.js';
import { GroupLogsFollower } from './network-logs.js';
import { BrokerUrls, closeUnawaited, closeWithin, retryDelay, type BrokerTls } from '../protocol/connection.js';
import type { MessageSigner } from '../protocol/signing.js';
import type { ControllerStore, GroupRecord, PortRecord } from './records.js';
import { Store } from './store.js';
import { EtcdStore, type EtcdStoreOptions } from './etcd-store.js';
import { EtcdLeadership } from './etcd-leadership.js';
import { BrokerLease, type Leadership } from './leadership.js';
import { StoreMetrics } from './metrics.js';
import { Publisher, declareDeadLetterQueue, declareTopology } from './publisher.js';
import { OutboxRelay } from './relay.js';
import { serveSync, withLaterChanges } from './rpc.js';
import { startAdminApi, type AdminApiOptions } from './http.js';

/** Between broker connection attempts: 0.25 s doubling to 10 s (with jitter). */
const RECONNECT_BASE_MS = 250;
const RECONNECT_MAX_MS = 10_000;
/** At stop, requests under way get this long to be answered before their connections are closed. */
const STOP_GRACE_MS = 1_000;

export interface ControllerOptions {
  /** One broker URL, or several (the nodes of a cluster) separated by commas, tried in turn. */
  amqpUrl: string;
  amqpTls?: BrokerTls;
  /** The embedded store's directory (LMDB), unless `etcd` is given. */
  dataDir: string;
  /** Set: the store is this etcd cluster's (controllers on several machines), not LMDB's. */
  etcd?: Omit<EtcdStoreOptions, 'logger' | 'metrics'> & { leaseTtlS?: number };
  /** Signs every update and sync reply; agents refuse what no key they trust signed. */
  signer: MessageSigner;
  /** The admin API (absent: none). */
  api?: AdminApiOptions;
  coalesceMs?: number;
  /** Pacing of the outbox relay's drains (default 100 ms, widening to 400 ms in a burst). */
  relayIntervalMs?: { min?: number; max?: number };
  logger?: Logger;
  /** Runs once the store is open, before the controller connects to the broker and answers sync
   *  requests: a source of truth (src/neutron/) fills an empty store here, so that agents are never
   *  told "nothing" by a controller that has not read its source yet. */
  prepare?: (ctl: Controller) => Promise<void>;
}

export class Controller {
  private conn?: ChannelModel;
  private ch?: ConfirmChannel;
  publisher?: Publisher;
  readonly relay: OutboxRelay;
  http?: Server;
  private apiUrl?: string;
  private stopping = false;
  private readonly brokers: BrokerUrls;
  private wake?: () => void;
  private loop: Promise<void> = Promise.resolve();
  private firstConnect!: () => void;
  /** Resolves once the controller has been connected to the broker (the first time). */
  readonly brokerReady: Promise<void> = new Promise((r) => (this.firstConnect = r));
  /** The groups' security-group logs, from the log resources of the admin API. */
  private readonly groupLogs: GroupLogsFollower;
  private constructor(
    readonly store: ControllerStore,
    private readonly leadership: Leadership,
    readonly metrics: StoreMetrics,
    private readonly opts: ControllerOptions,
  ) {
    this.brokers = new BrokerUrls(opts.amqpUrl);
    this.groupLogs = new GroupLogsFollower(store);
    this.relay = new OutboxRelay(store, () => (this.ch ? this.publisher : undefined), {
      isLeader: () => this.leadership.leads,
      mayPublish: () => this.leadership.mayPublish(),
      ...(leadership.fencedOutbox ? { fencedOutbox: leadership.fencedOutbox } : {}),
      coalesceMs: opts.coalesceMs ?? 20,
      ...(opts.relayIntervalMs?.min !== undefined ? { minIntervalMs: opts.relayIntervalMs.min } : {}),
      ...(opts.relayIntervalMs?.max !== undefined ? { maxIntervalMs: opts.relayIntervalMs.max } : {}),
      logger: opts.logger,
    });
    leadership.onTaken = () => this.relay.kick();
    metrics.observe({
      outbox: () => store.outboxDepth(),
      leader: () => leadership.leads,
      quorum: () => store.health().quorum,
      behindMs: () => Number(store.health().watchBehindMs ?? 0),
    });
  }

  /** Opens the store and the admin API; the broker connection is made (and remade) in the background. */
  static async start(opts: ControllerOptions): Promise<Controller> {
    const metrics = new StoreMetrics();
    let store: ControllerStore;
    let leadership: Leadership;
    if (opts.etcd) {
      const etcd = await EtcdStore.open({ ...opts.etcd, logger: opts.logger, metrics });
      store = etcd;
      const ttl = opts.etcd.leaseTtlS !== undefined ? { ttlS: opts.etcd.leaseTtlS } : {};
      leadership = new EtcdLeadership(etcd, { ...ttl, logger: opts.logger });
    } else {
      store = await Store.open(opts.dataDir, { metrics });
      leadership = new BrokerLease(opts.logger);
    }
    const ctl = new Controller(store, leadership, metrics, opts);
    // A source of truth fills the store first: agents are never answered from a store it has not read.
    try {
      await opts.prepare?.(ctl);
    } catch (e) {
      await ctl.stop();
      throw e;
    }
    ctl.loop = ctl.maintainConnection();
    if (opts.api) {
      try {
        const api = await startAdminApi(ctl, opts.api);
        ctl.http = api.server;
        ctl.apiUrl = api.url;
      } catch (e) {
        await ctl.stop();
        throw e;
      }
    }
    return ctl;
  }

  get logger(): Logger | undefined {
    return this.opts.logger;
  }

  /** One connection at a time; a lost one (broker restart, network) is replaced with backoff. */
  private async maintainConnection(): Promise<void> {
    for (let attempt = 0; !this.stopping;) {
      let conn: ChannelModel | undefined;
      try {
        conn = await this.brokers.connect({ tls: this.opts.amqpTls, name: 'sg-controller' });
        const closed = new Promise<void>((r) => conn!.once('close', () => r()));
        conn.on('error', (e: Error) => this.opts.logger?.warn({ err: e.message }, 'broker connection error'));
        await this.setUp(conn);
        this.opts.logger?.info({ broker: this.brokers.shown() }, 'broker connection up');
        attempt = 0;
        this.firstConnect();
        const woken = new Promise<void>((r) => (this.wake = r));
        const over = Promise.race([closed, woken]);
        await Promise.race([over, this.leadership.campaign(conn, over).then(() => new Promise<void>(() => undefined))]);
        if (!this.stopping) this.opts.logger?.warn('broker connection lost; reconnecting');
      } catch (e) {
        if (!this.stopping) this.opts.logger?.warn({ err: (e as Error).message }, 'broker connection failed; retrying');
      } finally {
        await this.leadership.resign();
        this.ch = undefined;
        // Not awaited: a close the broker never answers (the connection lost meanwhile) would stop
        // this loop from ever reconnecting.
        if (conn) closeUnawaited(conn);
      }
      if (this.stopping) return;
      const delay = retryDelay(attempt++, RECONNECT_BASE_MS, RECONNECT_MAX_MS);
      await new Promise<void>((r) => {
        const t = setTimeout(r, delay);
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
    }
  }

  /** Declares what agents rely on, then the publisher and the sync server on fresh channels. */
  private async setUp(conn: ChannelModel): Promise<void> {
    // A channel closes alone on a protocol error: the connection goes with it, and is made again.
    const watch = <C extends Channel>(ch: C): C => {
      ch.on('error', (e: Error) => this.opts.logger?.warn({ err: e.message }, 'broker channel error'));
      ch.on('close', () => closeUnawaited(conn));
      return ch;
    };
    const ch = watch(await conn.createConfirmChannel());
    await declareTopology(ch);
    const dlq = await conn.createChannel();
    dlq.on('error', () => undefined);
    await declareDeadLetterQueue(dlq).then(
      () => closeUnawaited(dlq),
      (e: Error) =>
        this.opts.logger?.warn(
          { err: e.message },
          'dead-letter queue unavailable (its broker node may be down); refused messages are not kept meanwhile',
        ),
    );
    this.publisher = new Publisher(ch, this.opts.signer, this.opts.coalesceMs ?? 20);
    const rpcCh = watch(await conn.createChannel());
    await serveSync(
      rpcCh,
      // Replies give members as this relay has published them (rpc.ts, `membersAsPublished`).
      withLaterChanges(this.store, () => this.relay.laterMemberChanges()),
      this.opts.signer,
      (e) => this.opts.logger?.error({ err: e }, 'sync request failed'),
      () => this.opts.logger?.warn('the broker cancelled the sync request consumer; reconnecting'),
    );
    this.conn = conn;
    this.ch = ch;
    // What was stored but not confirmed when the old connection died (or before a crash) goes out now.
    this.relay.kick();
  }

  /** Whether changes can be published now (the admin API refuses them otherwise): by this controller,
   *  or by the lease holder, which reads them from the shared store. */
  get connected(): boolean {
    return !!this.ch;
  }

  /** Whether this controller holds the leadership (publishes the outbox). */
  get isLeader(): boolean {
    return this.leadership.leads;
  }

  /** `http(s)://host:port` or `unix:/path` of the admin API. */
  get httpAddress(): string | undefined {
    return this.apiUrl;
  }

  async putGroup(id: string, stateful: boolean, rules: SecurityGroupRuleInput[]): Promise<GroupRecord> {
    const g = await this.store.putGroup(id, stateful, rules);
    await this.logsFollow();
    this.relay.kick();
    return g;
  }

  async deleteGroup(id: string): Promise<boolean> {
    const g = await this.store.deleteGroup(id);
    await this.logsFollow();
    this.relay.kick();
    return !!g;
  }

  async putPort(id: string, port: PortInput): Promise<PortRecord> {
    const r = await this.store.putPort(id, port);
    await this.logsFollow();
    this.relay.kick();
    return r.port!;
  }

  async deletePort(id: string): Promise<boolean> {
    if (!this.store.port(id)) return false;
    await this.store.putPort(id, undefined);
    await this.logsFollow();
    this.relay.kick();
    return true;
  }

  /** A security-group log resource (src/controller/network-logs.ts): its groups carry it. The
   *  admin API has no projects: a log names a group, a port, or both. */
  async putLog(input: unknown): Promise<LogResource> {
    const r = validateLogResource(input);
    if (r.resourceId === null && r.targetId === null) {
      throw new ValidationError(
        `log ${r.id}: names neither a group (resourceId) nor a port (targetId); sg-controller's own API has no projects to log whole`,
      );
    }
    await this.store.putLogResource(r);
    await this.groupLogs.follow();
    this.relay.kick();
    return r;
  }

  async deleteLog(id: string): Promise<boolean> {
    if (!(await this.store.deleteLogResource(id))) return false;
    await this.groupLogs.follow();
    this.relay.kick();
    return true;
  }

  /** A port's groups, or which groups exist, changed: the logs that name them follow. */
  private async logsFollow(): Promise<void> {
    if (this.store.logResources().length) await this.groupLogs.follow();
  }

  /** Publishes every stored change now; resolves once the broker confirmed them. */
  flush(): Promise<void> {
    return this.relay.drain();
  }

  async stop(): Promise<void> {
    if (this.ch) await this.relay.drain().catch(() => undefined);
    this.stopping = true;
    this.relay.close();
    await new Promise<void>((resolve) => {
      const http = this.http;
      if (!http) return resolve();
      http.close(() => resolve());
      // A client sending request after request on one keep-alive connection never leaves it idle, and
      // close() waits for idle: requests under way get a moment to be answered, then it is closed.
      const grace = setTimeout(() => http.closeAllConnections(), STOP_GRACE_MS);
      grace.unref();
    });
    if (this.conn) await closeWithin(this.conn, STOP_GRACE_MS);
    this.wake?.();
    await this.loop;
    await this.leadership.close();
    await this.store.close();
  }
}
