// Hears what neutron-server tells its agents on its own RabbitMQ: one exclusive queue of ours bound to
// the fanout exchanges of the object pushes and of the legacy casts (messages.ts). The exchanges are
// oslo.messaging's: fanout, auto-deleted once unbound, declared by whoever comes first — the server
// when it publishes, an agent (or we) when binding. A fanout only reaches queues bound when it was
// sent, so the caller resyncs from the API after every (re)connect, once the queue is bound.
import type { Channel, ChannelModel, ConsumeMessage } from 'amqplib';
import type { Logger } from 'pino';
import { BrokerUrls, closeUnawaited, closeWithin, retryDelay } from '../protocol/connection.js';
import { decodeNeutronMessage, LEGACY_EXCHANGES, NeutronMessageError, pushExchanges, type NeutronEvent } from './messages.js';

/** How long a stop waits for the broker to answer the connection's close. */
const STOP_GRACE_MS = 1_000;

export interface ListenerOptions {
  /** Neutron's transport URL (rabbit:// or amqp://; several hosts comma-separated, tried in turn). */
  url: string;
  /** Push exchanges to bind (default: pushExchanges()). */
  exchanges?: string[];
  logger?: Logger;
  onEvent: (e: NeutronEvent, exchange: string) => void;
  /** A message that could not be read (garbage, truncated, an envelope we do not know). */
  onUnreadable: (e: NeutronMessageError, exchange: string) => void;
  /** Bound and consuming (again): everything before this may have been missed. */
  onBound: (reconnected: boolean) => void;
  onLost: () => void;
}

/** amqp:// URLs from an oslo.messaging transport URL: `rabbit://u:p@h1:5672,u:p@h2:5672/vhost`. */
export function brokerUrls(transportUrl: string): string[] {
  const m = /^(rabbit|amqp|amqps):\/\/([^/]*)(\/.*)?$/.exec(transportUrl.trim());
  if (!m) throw new Error('the Neutron broker URL must be rabbit://, amqp:// or amqps://');
  const scheme = m[1] === 'amqps' ? 'amqps' : 'amqp';
  const path = m[3] ?? '/';
  // oslo.messaging's query options (?ssl=1 ...) are its own; a vhost is the path without them. One
  // asking for TLS is refused rather than dropped: the connection would go without it.
  const [vhost, query] = path.split('?') as [string, string | undefined];
  const ssl = new URLSearchParams(query ?? '').get('ssl');
  if (ssl !== null && /^(1|true|yes|on)$/i.test(ssl))
    throw new Error(`?ssl=${ssl} (oslo.messaging's TLS option) is not read: write the URL as amqps://`);
  return m[2]!.split(',').map((hostPart) => `${scheme}://${hostPart}${vhost}`);
}

export class NeutronListener {
  private conn?: ChannelModel;
  private brokers?: BrokerUrls;
  private stopping = false;
  private everBound = false;
  connected = false;

  constructor(private readonly opts: ListenerOptions) {}

  /** Connects and binds; resolves once bound (retrying until it is, or stop()). */
  async start(): Promise<void> {
    for (let attempt = 0; !this.stopping; attempt++) {
      try {
        await this.connect();
        return;
      } catch (e) {
        this.opts.logger?.warn({ err: (e as Error).message }, 'Neutron broker: cannot bind; retrying');
        await new Promise((r) => setTimeout(r, retryDelay(attempt, 250, 10_000)));
      }
    }
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.conn) await closeWithin(this.conn, STOP_GRACE_MS);
  }

  /** Connects to the next node of Neutron's broker that accepts (as the agent and controller do)
   *  and binds there; a node that connects but cannot bind is left for the next attempt. */
  private async connect(): Promise<void> {
    this.brokers ??= new BrokerUrls(brokerUrls(this.opts.url));
    const conn = await this.brokers.connect({ name: 'sg-controller (Neutron events)' });
    try {
      await this.bind(conn);
    } catch (e) {
      closeUnawaited(conn);
      throw e;
    }
  }

  private async bind(conn: ChannelModel): Promise<void> {
    conn.on('error', (e: Error) => this.opts.logger?.warn({ err: e.message }, 'Neutron broker connection error'));
    const ch = await conn.createChannel();
    ch.on('error', (e: Error) => this.opts.logger?.warn({ err: e.message }, 'Neutron broker channel error'));
    // A channel the broker closes alone (a protocol error, its queue deleted) would leave the
    // connection up and no event heard: the connection goes with it, and is made again.
    ch.on('close', () => closeUnawaited(conn));
    const q = await ch.assertQueue('', { exclusive: true, autoDelete: true, durable: false });
    for (const ex of [...LEGACY_EXCHANGES, ...(this.opts.exchanges ?? pushExchanges())]) {
      await this.declare(conn, ch, ex);
      await ch.bindQueue(q.queue, ex, '');
    }
    await ch.prefetch(500);
    await ch.consume(q.queue, (m) => this.receive(ch, m));
    if (this.stopping) {
      closeUnawaited(conn);
      return;
    }
    this.conn = conn;
    this.connected = true;
    conn.on('close', () => {
      this.connected = false;
      if (this.stopping) return;
      this.opts.logger?.warn('Neutron broker connection lost; reconnecting');
      this.opts.onLost();
      // start() retries until bound or stopped; a throw from a callback is logged, never unhandled.
      this.start().catch((e: unknown) => this.opts.logger?.error({ err: e }, 'Neutron broker: reconnecting failed'));
    });
    const reconnected = this.everBound;
    this.everBound = true;
    this.opts.onBound(reconnected);
  }

  /** Declares an exchange as oslo.messaging does (fanout, not durable, auto-delete), unless it exists:
   *  a deployment with durable fanouts (rabbit_transient_quorum_queue, streams) declared it otherwise,
   *  and a declaration that differs would be refused. The check runs on a channel of its own, since a
   *  failed one closes the channel it ran on. */
  private async declare(conn: ChannelModel, ch: Channel, exchange: string): Promise<void> {
    const probe = await conn.createChannel();
    probe.on('error', () => undefined);
    try {
      await probe.checkExchange(exchange);
      closeUnawaited(probe);
    } catch {
      await ch.assertExchange(exchange, 'fanout', { durable: false, autoDelete: true });
    }
  }

  private receive(ch: Channel, m: ConsumeMessage | null): void {
    if (!m) {
      // The broker cancelled our consumer (queue deleted, node failover): what follows is unheard.
      this.opts.logger?.warn('Neutron broker cancelled the consumer; reconnecting');
      if (this.conn) closeUnawaited(this.conn);
      return;
    }
    const exchange = m.fields.exchange;
    try {
      this.opts.onEvent(decodeNeutronMessage(m.content), exchange);
    } catch (e) {
      if (e instanceof NeutronMessageError) this.opts.onUnreadable(e, exchange);
      else this.opts.logger?.error({ err: (e as Error).message, exchange }, 'Neutron message handler failed');
    }
    ch.ack(m);
  }
}
