// The reference control plane: store + outbox relay + publisher + sync RPC + admin API, wired
// together. Each change is stored with the messages announcing it in one transaction; the relay then
// publishes them (with broker confirms, signed) to exactly the hosts and groups they concern. Several
// controller processes may open the same data directory: each serves the admin API it is given and
// consumes the shared sync queue; one of them at a time, the holder of the leadership lease, publishes
// what any of them stored. The broker may be down at start or go away at any time: the controller
// keeps (re)connecting, to the next broker of its list, the API keeps answering reads, and changes
// wait in the outbox.
//
// The lease is what the broker already offers, an exclusive queue (LEADER_QUEUE): the broker grants it
// to one connection and drops it the moment that connection ends, whether the controller crashed, its
// host or the broker node it was on died, or the network between them failed. The lease and the
// publishing channel share that connection, so no controller can publish without holding the lease,
// and none holds it without publishing. The others ask for it again every second or so.
import type { Channel, ChannelModel, ConfirmChannel } from 'amqplib';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import type { LogResource, PortInput, SecurityGroupRuleInput } from '../domain/model.js';
import { validateLogResource, ValidationError } from '../domain/validate.js';
import { applyLogResources } from './network-logs.js';
import { BrokerUrls, retryDelay, type BrokerTls } from '../protocol/connection.js';
import { LEADER_QUEUE } from '../protocol/routing.js';
import type { MessageSigner } from '../protocol/signing.js';
import { Store, type GroupRecord, type PortRecord } from './store.js';
import { Publisher, declareDeadLetterQueue, declareTopology } from './publisher.js';
import { OutboxRelay } from './relay.js';
import { serveSync } from './rpc.js';
import { startAdminApi, type AdminApiOptions } from './http.js';

/** Between broker connection attempts: 0.25 s doubling to 10 s (with jitter). */
const RECONNECT_BASE_MS = 250;
const RECONNECT_MAX_MS = 10_000;
/** Between two requests for the leadership lease while another controller holds it (with jitter). */
const LEASE_RETRY_MS = 1_000;

export interface ControllerOptions {
  /** One broker URL, or several (the nodes of a cluster) separated by commas, tried in turn. */
  amqpUrl: string;
  amqpTls?: BrokerTls;
  dataDir: string;
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
  /** Holds the leadership lease on the current connection: publishes the outbox. */
  private leader = false;
  private wake?: () => void;
  private loop: Promise<void> = Promise.resolve();
  private firstConnect!: () => void;
  /** Resolves once the controller has been connected to the broker (the first time). */
  readonly brokerReady: Promise<void> = new Promise((r) => (this.firstConnect = r));
  private constructor(readonly store: Store, private readonly opts: ControllerOptions) {
    this.brokers = new BrokerUrls(opts.amqpUrl);
    this.relay = new OutboxRelay(store, () => (this.ch ? this.publisher : undefined), {
      isLeader: () => this.leader,
      coalesceMs: opts.coalesceMs ?? 20,
      ...(opts.relayIntervalMs?.min !== undefined ? { minIntervalMs: opts.relayIntervalMs.min } : {}),
      ...(opts.relayIntervalMs?.max !== undefined ? { maxIntervalMs: opts.relayIntervalMs.max } : {}),
      logger: opts.logger,
    });
  }

  /** Opens the store and the admin API; the broker connection is made (and remade) in the background. */
  static async start(opts: ControllerOptions): Promise<Controller> {
    const ctl = new Controller(await Store.open(opts.dataDir), opts);
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
    for (let attempt = 0; !this.stopping; ) {
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
        await Promise.race([closed, woken, this.campaign(conn, Promise.race([closed, woken])).then(() => new Promise<void>(() => undefined))]);
        if (!this.stopping) this.opts.logger?.warn('broker connection lost; reconnecting');
      } catch (e) {
        if (!this.stopping) this.opts.logger?.warn({ err: (e as Error).message }, 'broker connection failed; retrying');
      } finally {
        if (this.leader) this.opts.logger?.warn('leadership lost with the broker connection');
        this.leader = false;
        this.ch = undefined;
        await conn?.close().catch(() => undefined);
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

  /** Asks for the leadership lease until this controller holds it or `over` (the connection ended).
   *  Held, it lasts as long as the connection: nothing more to do. */
  private async campaign(conn: ChannelModel, over: Promise<void>): Promise<void> {
    let ended = false;
    // `over` only resolves; ended either way, so no rejection can go unhandled.
    over.then(() => (ended = true), () => (ended = true));
    while (!ended && !this.stopping) {
      // A refusal closes the channel it was asked on: a throwaway channel each time.
      const ch = await conn.createChannel().catch(() => undefined);
      if (!ch) return;
      ch.on('error', () => undefined);
      try {
        await ch.assertQueue(LEADER_QUEUE, { exclusive: true, durable: false });
        if (ended) return;
        this.leader = true;
        this.opts.logger?.info('leadership lease taken: this controller publishes');
        this.relay.kick();
        return;
      } catch (e) {
        // 405 RESOURCE_LOCKED: another controller holds it. Anything else is worth a line.
        if (!/RESOURCE_LOCKED|405/.test((e as Error).message)) this.opts.logger?.warn({ err: (e as Error).message }, 'leadership lease request failed');
      }
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([over, new Promise((r) => (timer = setTimeout(r, LEASE_RETRY_MS * (0.5 + Math.random()))))]);
      clearTimeout(timer);
    }
  }

  /** Declares what agents rely on, then the publisher and the sync server on fresh channels. */
  private async setUp(conn: ChannelModel): Promise<void> {
    // A channel closes alone on a protocol error: the connection goes with it, and is made again.
    const watch = <C extends Channel>(ch: C): C => {
      ch.on('error', (e: Error) => this.opts.logger?.warn({ err: e.message }, 'broker channel error'));
      ch.on('close', () => void conn.close().catch(() => undefined));
      return ch;
    };
    const ch = watch(await conn.createConfirmChannel());
    await declareTopology(ch);
    const dlq = await conn.createChannel();
    dlq.on('error', () => undefined);
    await declareDeadLetterQueue(dlq).then(
      () => dlq.close().catch(() => undefined),
      (e: Error) => this.opts.logger?.warn({ err: e.message }, 'dead-letter queue unavailable (its broker node may be down); refused messages are not kept meanwhile'),
    );
    this.publisher = new Publisher(ch, this.opts.signer, this.opts.coalesceMs ?? 20);
    const rpcCh = watch(await conn.createChannel());
    await serveSync(rpcCh, this.store, this.opts.signer, (e) => this.opts.logger?.error({ err: e }, 'sync request failed'));
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

  /** Whether this controller holds the leadership lease (publishes the outbox). */
  get isLeader(): boolean {
    return this.leader;
  }

  /** `http(s)://host:port` or `unix:/path` of the admin API. */
  get httpAddress(): string | undefined {
    return this.apiUrl;
  }

  async putGroup(id: string, stateful: boolean, rules: SecurityGroupRuleInput[]): Promise<GroupRecord> {
    const g = await this.store.putGroup(id, stateful, rules);
    this.relay.kick();
    return g;
  }

  async deleteGroup(id: string): Promise<boolean> {
    const g = await this.store.deleteGroup(id);
    this.relay.kick();
    return !!g;
  }

  async putPort(id: string, port: PortInput): Promise<PortRecord> {
    const r = await this.store.putPort(id, port);
    await this.portLogsFollow();
    this.relay.kick();
    return r.port!;
  }

  async deletePort(id: string): Promise<boolean> {
    if (!this.store.port(id)) return false;
    await this.store.putPort(id, undefined);
    await this.portLogsFollow();
    this.relay.kick();
    return true;
  }

  /** A security-group log resource (src/controller/network-logs.ts): its groups carry it. The
   *  admin API has no projects: a log names a group, a port, or both. */
  async putLog(input: unknown): Promise<LogResource> {
    const r = validateLogResource(input);
    if (r.resourceId === null && r.targetId === null) {
      throw new ValidationError(`log ${r.id}: names neither a group (resourceId) nor a port (targetId); sg-controller's own API has no projects to log whole`);
    }
    await this.store.putLogResource(r);
    await applyLogResources(this.store);
    this.relay.kick();
    return r;
  }

  async deleteLog(id: string): Promise<boolean> {
    if (!(await this.store.deleteLogResource(id))) return false;
    await applyLogResources(this.store);
    this.relay.kick();
    return true;
  }

  /** A port's groups changed: the logs that name the port follow them. */
  private async portLogsFollow(): Promise<void> {
    if (this.store.logResources().length) await applyLogResources(this.store);
  }

  /** Publishes every stored change now; resolves once the broker confirmed them. */
  flush(): Promise<void> {
    return this.relay.drain();
  }

  async stop(): Promise<void> {
    if (this.ch) await this.relay.drain().catch(() => undefined);
    this.stopping = true;
    this.relay.close();
    await new Promise<void>((resolve) => (this.http ? this.http.close(() => resolve()) : resolve()));
    await this.conn?.close().catch(() => undefined);
    this.wake?.();
    await this.loop;
    await this.store.close();
  }
}
