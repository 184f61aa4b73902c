// The reference control plane: store + outbox relay + publisher + sync RPC + admin API, wired
// together. Each change is stored with the messages announcing it in one transaction; the relay then
// publishes them (with broker confirms) to exactly the hosts and groups they concern. Several
// controller processes may open the same data directory: each serves the admin API it is given and
// consumes the shared sync queue.
import amqp, { type ChannelModel, type ConfirmChannel } from 'amqplib';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import type { PortInput, SecurityGroupRuleInput } from '../model.js';
import { Store, type GroupRecord, type PortRecord } from './store.js';
import { Publisher, declareExchanges } from './publisher.js';
import { OutboxRelay } from './relay.js';
import { serveSync } from './rpc.js';
import { adminServer } from './http.js';

export interface ControllerOptions {
  amqpUrl: string;
  dataDir: string;
  /** host:port for the admin API; port 0 picks one. */
  httpListen?: string;
  coalesceMs?: number;
  /** Pacing of the outbox relay's drains (default 100 ms, widening to 400 ms in a burst). */
  relayIntervalMs?: { min?: number; max?: number };
  logger?: Logger;
}

export class Controller {
  private conn?: ChannelModel;
  private ch?: ConfirmChannel;
  publisher?: Publisher;
  readonly relay: OutboxRelay;
  http?: Server;
  private stopping = false;
  private constructor(readonly store: Store, private readonly opts: ControllerOptions) {
    this.relay = new OutboxRelay(store, () => (this.ch ? this.publisher : undefined), {
      coalesceMs: opts.coalesceMs ?? 20,
      ...(opts.relayIntervalMs?.min !== undefined ? { minIntervalMs: opts.relayIntervalMs.min } : {}),
      ...(opts.relayIntervalMs?.max !== undefined ? { maxIntervalMs: opts.relayIntervalMs.max } : {}),
      logger: opts.logger,
    });
  }

  static async start(opts: ControllerOptions): Promise<Controller> {
    const ctl = new Controller(await Store.open(opts.dataDir), opts);
    await ctl.connect();
    if (opts.httpListen) {
      const [host, port] = splitListen(opts.httpListen);
      ctl.http = adminServer(ctl);
      await new Promise<void>((resolve) => ctl.http!.listen(port, host, resolve));
    }
    return ctl;
  }

  /** (Re)connects: publisher and sync server on fresh channels. A broker restart ends here too. */
  private async connect(): Promise<void> {
    const conn = await amqp.connect(this.opts.amqpUrl);
    conn.on('error', (e: Error) => this.opts.logger?.warn({ err: e.message }, 'broker connection error'));
    conn.on('close', () => {
      this.ch = undefined;
      if (this.stopping) return;
      this.opts.logger?.warn('broker connection lost; reconnecting');
      void this.reconnect();
    });
    const ch = await conn.createConfirmChannel();
    await declareExchanges(ch);
    this.publisher = new Publisher(ch, this.opts.coalesceMs ?? 20);
    const rpcCh = await conn.createChannel();
    await serveSync(rpcCh, this.store, (e) => this.opts.logger?.error({ err: e }, 'sync request failed'));
    this.conn = conn;
    this.ch = ch;
    // What was stored but not confirmed when the old connection died (or before a crash) goes out now.
    this.relay.kick();
  }

  private async reconnect(): Promise<void> {
    for (let attempt = 0; !this.stopping; attempt++) {
      await new Promise((r) => setTimeout(r, Math.min(10_000, 250 * 2 ** attempt) * (0.5 + Math.random())));
      try {
        await this.connect();
        this.opts.logger?.info('broker connection restored');
        return;
      } catch (e) {
        this.opts.logger?.warn({ err: (e as Error).message }, 'broker reconnect failed');
      }
    }
  }

  /** Whether changes can be published now (the admin API refuses them otherwise). */
  get connected(): boolean {
    return !!this.ch;
  }

  get httpAddress(): string | undefined {
    const a = this.http?.address();
    return a && typeof a === 'object' ? `http://${a.address}:${a.port}` : undefined;
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
    this.relay.kick();
    return r.port!;
  }

  async deletePort(id: string): Promise<boolean> {
    if (!this.store.port(id)) return false;
    await this.store.putPort(id, undefined);
    this.relay.kick();
    return true;
  }

  /** Publishes every stored change now; resolves once the broker confirmed them. */
  flush(): Promise<void> {
    return this.relay.drain();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.relay.drain().catch(() => undefined);
    this.relay.close();
    await new Promise<void>((resolve) => (this.http ? this.http.close(() => resolve()) : resolve()));
    await this.conn?.close().catch(() => undefined);
    await this.store.close();
  }
}

export function splitListen(listen: string): [string, number] {
  const i = listen.lastIndexOf(':');
  const host = listen.slice(0, i).replace(/^\[|\]$/g, '') || '127.0.0.1';
  const port = Number(listen.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad listen address ${listen}`);
  return [host, port];
}
