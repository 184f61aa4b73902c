// The agent's side of the broker: one session (connection + channel) at a time, replaced with backoff
// whenever it is lost; the agent's queue; the signature check on everything received; and the sync RPC.
//
// A session ends as a whole — connection closed, channel closed, consumer cancelled — and everything
// waiting on it ends with it: sync RPCs reject with SessionEnded, which callers treat as "the next
// session's full sync replaces this". Nothing keeps using a channel of an ended session.
import type { Channel, ChannelModel, ConsumeMessage, Message } from 'amqplib';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { BrokerUrls, checkBrokerOptions, closeUnawaited, retryDelay } from '../protocol/connection.js';
import { decode, encode, MAX_MESSAGE_BYTES, type SyncReply, type SyncRequest } from '../protocol/messages.js';
import {
  agentQueue,
  DEAD_LETTER_EXCHANGE,
  GROUP_EXCHANGE,
  HOST_EXCHANGE,
  hostKey,
  SYNC_EXCHANGE,
  SYNC_ROUTING_KEY,
} from '../protocol/routing.js';
import { KEY_ID_HEADER, Keyring, MessageVerifier, SIGNATURE_BYTES, UPDATE_CONTEXT, type Refusal } from '../protocol/signing.js';
import type { AgentConfig } from './config.js';
import type { AgentMetrics } from './metrics.js';
import { ConfigError, describeFsError } from '../settings.js';

const REPLY_QUEUE = 'amq.rabbitmq.reply-to';
/** Acks are batched by the agent; the batch stays well under this. */
const PREFETCH = 256;
/** Between broker connection attempts: 0.5 s doubling to 30 s (with jitter). */
const RECONNECT_BASE_MS = 500;
const RECONNECT_MAX_MS = 30_000;
/** Between sync attempts of one RPC: 0.25 s doubling up to twice the attempt's timeout (10 s by
 *  default; at least 1 s), with jitter, forever. */
const SYNC_RETRY_BASE_MS = 250;
const syncRetryMaxMs = (timeoutMs: number) => Math.max(1_000, 2 * timeoutMs);
/** Sync attempts in a row that no reply answered before the session is replaced, first; each
 *  replacement that did not help doubles it, up to the last (an answer resets it). */
const UNANSWERED_BEFORE_RECONNECT_FIRST = 3;
const UNANSWERED_BEFORE_RECONNECT_MAX = 48;
/** Exchanges the controller declares; the agent only checks that they exist. */
const REQUIRED_EXCHANGES = [GROUP_EXCHANGE, HOST_EXCHANGE, SYNC_EXCHANGE, DEAD_LETTER_EXCHANGE];

/** The session a sync RPC (or a start-up) was waiting on ended: connection lost, or the agent stops. */
export class SessionEnded extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SessionEnded';
  }
}

/** A sync attempt no reply answered in time. */
class SyncTimedOut extends Error {
  constructor() {
    super('sync RPC timed out');
    this.name = 'SyncTimedOut';
  }
}

/** What the agent does at each point of a session's life. */
export interface SessionHooks {
  /** A fresh channel, the agent's queue declared; `queueKept`: it survived with its bindings (never,
   *  now that the queue is exclusive to its connection; kept for the agent's interface). Deliveries
   *  start right after this returns. */
  opened(ch: Channel, queueKept: boolean): void;
  /** Consuming: bring the state up to date (the full sync). A throw ends the session; another follows. */
  ready(): Promise<void>;
  /** A delivery on the agent's queue that a trusted key signed (to be acked or nacked on `ch`). */
  deliver(msg: ConsumeMessage): void;
  /** The session ended; `opened` of the next one follows unless stopping. */
  lost(): void;
}

class Session {
  ended = false;
  /** Resolves when the session ends. */
  readonly closed: Promise<void>;
  markClosed!: () => void;
  constructor(
    readonly conn: ChannelModel,
    readonly ch: Channel,
  ) {
    this.closed = new Promise((r) => (this.markClosed = r));
  }
}

interface PendingRpc {
  session: Session;
  part(m: SyncReply): void;
  fail(e: Error): void;
}

export class AgentBroker {
  private session?: Session;
  private stopping = false;
  private readonly stopped: Promise<void>;
  private markStopped!: () => void;
  private loop: Promise<void> = Promise.resolve();
  private readonly pending = new Map<string, PendingRpc>();
  private readonly verifier: MessageVerifier;
  private readonly queue: string;
  private readonly brokers: BrokerUrls;
  /** Sync attempts in a row that timed out, and how many end a session (see rpc()). */
  private unanswered = 0;
  private unansweredLimit = UNANSWERED_BEFORE_RECONNECT_FIRST;

  constructor(
    private readonly cfg: AgentConfig,
    private readonly log: Logger,
    private readonly metrics: AgentMetrics,
    private readonly hooks: SessionHooks,
  ) {
    this.brokers = new BrokerUrls(cfg.amqpUrls?.length ? cfg.amqpUrls : cfg.amqpUrl);
    checkBrokerOptions({ urls: this.brokers.urls, tls: cfg.amqpTls });
    if (cfg.trustedKeys.length === 0)
      throw new ConfigError("config: trustedKeys (SG_TRUSTED_KEYS) is required: the controllers' public keys");
    let keyring: Keyring;
    try {
      keyring = new Keyring(cfg.trustedKeys, (e) => this.log.error({ err: e.message }, 'trusted keys'));
    } catch (e) {
      const fsError = e as NodeJS.ErrnoException;
      throw new ConfigError(`config: trustedKeys: ${fsError.path ? `${fsError.path}: ${describeFsError(e)}` : fsError.message}`);
    }
    this.verifier = new MessageVerifier(keyring);
    this.queue = agentQueue(cfg.host);
    this.stopped = new Promise((r) => (this.markStopped = r));
  }

  /** Keeps a session up until close(); resolves once the first one is in sync (or on close). */
  start(): Promise<void> {
    return new Promise((resolve) => {
      this.loop = this.run(resolve);
    });
  }

  /** Ends every sync RPC now and refuses new ones; the session itself stays open (for the last acks). */
  stopRequests(): void {
    this.stopping = true;
    this.markStopped();
    for (const p of this.pending.values()) p.fail(new SessionEnded('agent stopping'));
  }

  async close(): Promise<void> {
    this.stopRequests();
    if (this.session) this.end(this.session);
    await this.loop;
  }

  private async run(firstReady: () => void): Promise<void> {
    for (let attempt = 0; !this.stopping;) {
      let s: Session | undefined;
      try {
        s = await this.open();
        await this.hooks.ready();
        if (s.ended) throw new SessionEnded('broker connection lost during the sync');
        attempt = 0;
        firstReady();
        await s.closed;
      } catch (e) {
        if (!this.stopping) this.log.warn({ err: (e as Error).message }, 'broker session failed');
      } finally {
        if (s) this.end(s);
      }
      if (this.stopping) break;
      // A session that was up (consuming) is replaced: a reconnection, in sync or not yet.
      if (s) {
        this.metrics.reconnects.inc();
        this.log.warn('broker connection lost; reconnecting');
      }
      const delay = retryDelay(attempt++, RECONNECT_BASE_MS, RECONNECT_MAX_MS);
      this.log.info({ retryInMs: Math.round(delay) }, 'connecting to the broker');
      await this.pause(undefined, delay);
    }
    firstReady();
  }

  private async open(): Promise<Session> {
    const conn = await this.brokers.connect({ tls: this.cfg.amqpTls, name: `sg-agent ${this.cfg.host}` });
    this.log.info({ broker: this.brokers.shown() }, 'connected to the broker');
    let s: Session | undefined;
    conn.on('error', (e: Error) => this.log.warn({ err: e.message }, 'broker connection error'));
    conn.on('close', () => s && this.end(s));
    try {
      // Stopped while connecting: nothing may be consumed any more.
      if (this.stopping) throw new SessionEnded('agent stopping');
      await this.checkExchanges(conn);
      const ch = await conn.createChannel();
      const session = (s = new Session(conn, ch));
      ch.on('error', (e: Error) => this.log.warn({ err: e.message }, 'channel error'));
      // A channel closes alone on a protocol error (a refused permission): the session is over too.
      ch.on('close', () => this.end(session));
      ch.on('return', (m: Message) => this.onReturned(m));
      await this.declareQueue(conn, ch);
      await ch.prefetch(PREFETCH);
      // Direct reply-to needs its consumer before the first request is published.
      await ch.consume(REPLY_QUEUE, (m) => m && this.onReply(m), { noAck: true });
      this.session = session;
      // Its queue is new with each session: no binding of a previous one is left.
      this.hooks.opened(ch, false);
      await ch.bindQueue(this.queue, HOST_EXCHANGE, hostKey(this.cfg.host));
      await ch.consume(this.queue, (m) => this.onDelivery(session, ch, m));
      return session;
    } catch (e) {
      if (s) this.end(s);
      else closeUnawaited(conn);
      throw e;
    }
  }

  /** Passive checks, each on a throwaway channel (a missing exchange closes the channel with a 404). */
  private async checkExchanges(conn: ChannelModel): Promise<void> {
    for (const x of REQUIRED_EXCHANGES) {
      const probe = await conn.createChannel();
      probe.on('error', () => undefined);
      const ok = await probe.checkExchange(x).then(
        () => true,
        () => false,
      );
      if (!ok) throw new Error(`exchange ${x} is not declared yet (the controller declares it); retrying`);
      closeUnawaited(probe);
    }
  }

  /**
   * Declares the agent's queue: exclusive to this connection, so it lives on the node the agent is
   * connected to and goes with the connection. When that node dies the agent loses both at once and
   * declares the queue again, by the same name, on the node it reconnects to; a durable queue would
   * instead stay bound and unusable (`404 … home node … is down`) until its node returned, with every
   * update routed to it lost. Nothing survives a session, which costs nothing more: every session
   * starts with a full sync anyway. Measured in bench/scale-queues.ts; see docs/protocol.md.
   *
   * A previous connection of this host that the broker has not yet seen die (no heartbeat for two
   * intervals) still holds the name: RESOURCE_LOCKED ends the session and the next attempt, after a
   * backoff, finds it free. The durable queue an earlier version left under this name is refused
   * the same way, but is visible to a passive check (an exclusive queue of another connection is not):
   * that one is deleted (its bindings are the previous process's) and the queue declared anew.
   */
  private async declareQueue(conn: ChannelModel, ch: Channel): Promise<void> {
    const declare = (c: Channel) =>
      c.assertQueue(this.queue, { exclusive: true, durable: false, arguments: { 'x-dead-letter-exchange': DEAD_LETTER_EXCHANGE } });
    // Each attempt on a throwaway channel: a refusal closes the channel it was made on.
    const attempt = async (f: (c: Channel) => Promise<unknown>): Promise<Error | undefined> => {
      const probe = await conn.createChannel();
      probe.on('error', () => undefined);
      const err = await f(probe).then(
        () => undefined,
        (e: Error) => e,
      );
      closeUnawaited(probe);
      return err;
    };
    const refused = await attempt(declare);
    if (!refused) return;
    if (!/RESOURCE_LOCKED|PRECONDITION_FAILED/.test(refused.message) || (await attempt((c) => c.checkQueue(this.queue)))) throw refused;
    this.log.warn('deleting the durable queue an earlier version left; the queue is now exclusive to the connection');
    await ch.deleteQueue(this.queue);
    await declare(ch);
  }

  /** Ends a session once: everything waiting on it learns, and its connection is closed. */
  private end(s: Session): void {
    if (s.ended) return;
    s.ended = true;
    s.markClosed();
    if (this.session === s) {
      this.session = undefined;
      this.hooks.lost();
    }
    for (const p of this.pending.values()) if (p.session === s) p.fail(new SessionEnded('broker connection lost'));
    closeUnawaited(s.conn);
  }

  /** Waits `ms`, or less if the session ends or the agent stops. */
  private async pause(s: Session | undefined, ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise((r) => (timer = setTimeout(r, ms))), this.stopped, ...(s ? [s.closed] : [])]);
    clearTimeout(timer);
  }

  private onDelivery(s: Session, ch: Channel, msg: ConsumeMessage | null): void {
    if (!msg) {
      // The broker cancelled the consumer (the queue was deleted): start over with a new session.
      this.log.warn('the broker cancelled the queue consumer; reconnecting');
      return this.end(s);
    }
    const nack = () => {
      try {
        ch.nack(msg, false, false);
      } catch {
        // channel gone: the broker redelivers it to the next session, which refuses it again
      }
    };
    // Refused unread, as decode() would: an oversize body is not worth hashing for its signature.
    if (msg.content.length > MAX_MESSAGE_BYTES) {
      this.metrics.bytes.inc(msg.content.length);
      this.metrics.rejected.inc();
      this.log.warn({ bytes: msg.content.length, limit: MAX_MESSAGE_BYTES }, 'oversize message rejected');
      return nack();
    }
    const refusal = this.verifier.check(msg.content, msg.properties.headers, UPDATE_CONTEXT);
    if (refusal) {
      this.refused(refusal, msg, 'update');
      return nack();
    }
    // The body is counted by the agent; the signature is part of what each message costs on the wire.
    this.metrics.bytes.inc(SIGNATURE_BYTES);
    this.hooks.deliver(msg);
  }

  private refused(reason: Refusal, msg: Message, what: 'update' | 'sync reply'): void {
    this.metrics.bytes.inc(msg.content.length);
    this.metrics.unauthenticated.inc({ reason });
    const keyId: unknown = msg.properties.headers?.[KEY_ID_HEADER];
    this.log.warn(
      { reason, keyId: typeof keyId === 'string' ? keyId.slice(0, 32) : undefined, bytes: msg.content.length },
      `unauthenticated ${what} refused`,
    );
  }

  /**
   * Asks the controllers for a snapshot. Retries (timeouts, no controller, a refused or unreadable
   * reply) with backoff for as long as it takes; ends with SessionEnded when the session does (the
   * next session's full sync takes over) or the agent stops.
   *
   * Attempts that time out one after another end the session (3 in a row, then 6, 12… up to 48 while
   * none is answered): a channel opened while the node holding the sync queue was failing over can
   * keep sending its requests to the old leader (RabbitMQ 3.10 takes the leader of a new channel's
   * queue client from the queue's record, which lags an election), and only a new channel gets out
   * of it; the next session's full sync asks again. Doubling keeps an outage of every controller
   * from turning into a reconnection storm.
   */
  async rpc(req: SyncRequest): Promise<SyncReply[]> {
    const s = this.session;
    for (let attempt = 0; ; attempt++) {
      if (this.stopping) throw new SessionEnded('agent stopping');
      if (!s || s.ended) throw new SessionEnded('not connected to the broker');
      try {
        const reply = await this.ask(s, req);
        this.unanswered = 0;
        this.unansweredLimit = UNANSWERED_BEFORE_RECONNECT_FIRST;
        return reply;
      } catch (e) {
        if (e instanceof SessionEnded) throw e;
        this.metrics.syncRetries.inc();
        if (e instanceof SyncTimedOut && ++this.unanswered >= this.unansweredLimit && !s.ended) {
          this.log.warn({ unanswered: this.unanswered }, 'sync requests unanswered in a row; replacing the broker session');
          this.unanswered = 0;
          this.unansweredLimit = Math.min(2 * this.unansweredLimit, UNANSWERED_BEFORE_RECONNECT_MAX);
          this.end(s);
          throw new SessionEnded('sync requests unanswered; a new session asks again');
        }
        const delay = retryDelay(attempt, SYNC_RETRY_BASE_MS, syncRetryMaxMs(this.cfg.syncTimeoutMs));
        this.log.warn({ err: (e as Error).message, attempt, retryInMs: Math.round(delay) }, 'sync RPC failed; retrying');
        await this.pause(s, delay);
      }
    }
  }

  /** One attempt. Direct reply-to is at-most-once: a lost reply is only a timeout, asked again. */
  private ask(s: Session, req: SyncRequest): Promise<SyncReply[]> {
    const id = randomUUID();
    return new Promise<SyncReply[]>((resolve, reject) => {
      const parts: SyncReply[] = [];
      let received = 0;
      const finish = (e?: Error) => {
        clearTimeout(timer);
        this.pending.delete(id);
        if (e) reject(e);
        else resolve(parts);
      };
      const timer = setTimeout(() => finish(new SyncTimedOut()), this.cfg.syncTimeoutMs);
      this.pending.set(id, {
        session: s,
        fail: finish,
        part: (m) => {
          if (m.error) return finish(new Error(`sync refused: ${m.error}`));
          if (m.part >= m.parts || (received > 0 && parts.find(Boolean)!.parts !== m.parts))
            return finish(new Error('sync reply parts inconsistent'));
          if (!parts[m.part]) received++;
          parts[m.part] = m;
          if (received === m.parts) finish();
        },
      });
      try {
        // Mandatory: with no controller queue bound the broker returns it at once (see onReturned).
        // The expiry drops a request no controller took in time; it is asked again anyway.
        s.ch.publish(SYNC_EXCHANGE, SYNC_ROUTING_KEY, encode(req), {
          replyTo: REPLY_QUEUE,
          correlationId: id,
          contentType: 'application/json',
          mandatory: true,
          expiration: String(this.cfg.syncTimeoutMs),
        });
      } catch (e) {
        // The channel is closing under us: so is the session, and this RPC with it.
        this.log.warn({ err: (e as Error).message }, 'sync request could not be sent; reconnecting');
        this.end(s);
        finish(new SessionEnded('broker channel closed'));
      }
    });
  }

  private onReply(msg: ConsumeMessage): void {
    const id = msg.properties.correlationId as unknown;
    const p = typeof id === 'string' ? this.pending.get(id) : undefined;
    if (!p) return void this.metrics.bytes.inc(msg.content.length); // a late reply to an abandoned attempt
    const refusal = this.verifier.check(msg.content, msg.properties.headers, { kind: 'reply', correlationId: id as string });
    // Refused or unreadable: ignored, so the attempt times out and is asked again.
    if (refusal) return this.refused(refusal, msg, 'sync reply');
    this.metrics.bytes.inc(msg.content.length + SIGNATURE_BYTES);
    let m: SyncReply;
    try {
      m = decode<SyncReply>(msg.content, ['sync.reply']);
    } catch (e) {
      this.metrics.rejected.inc();
      this.log.warn({ err: (e as Error).message }, 'malformed sync reply ignored');
      return;
    }
    p.part(m);
  }

  private onReturned(msg: Message): void {
    const id = msg.properties.correlationId as unknown;
    const p = typeof id === 'string' ? this.pending.get(id) : undefined;
    p?.fail(new Error('no controller queue is bound to the sync exchange'));
  }
}
