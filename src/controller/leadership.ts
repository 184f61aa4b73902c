// One publisher at a time: the controller holding the leadership publishes the shared outbox, the
// others publish nothing. Two ways of holding it, by the store the controllers share:
//
// - The embedded store (LMDB; controllers of one machine): a lease the broker already offers, an
//   exclusive queue (LEADER_QUEUE) granted to one connection and dropped the moment that connection
//   ends, whether the controller crashed, its host or broker node died, or the network between them
//   failed. The lease and the publishing channel share that connection, so no controller can publish
//   without holding the lease, and none holds it without publishing.
// - etcd (controllers on several machines): etcd-leadership.ts, a lease of etcd's majority, fenced.
//
// Either is sought only while the controller is connected to the broker (a controller that cannot
// publish must not keep the others from it), and given up when that connection ends.
import type { ChannelModel } from 'amqplib';
import type { Logger } from 'pino';
import { LEADER_QUEUE } from '../protocol/routing.js';
import type { OutboxEntry } from './records.js';

export interface Leadership {
  /** Whether this controller leads now (and so publishes). */
  readonly leads: boolean;
  /** Seeks the leadership until held or `over` resolves (the broker connection ended); called once per
   *  connection. Resolves when held, or when given up. */
  campaign(conn: ChannelModel, over: Promise<void>): Promise<void>;
  /** Gives it up (the broker connection ended, or the controller stops). */
  resign(): Promise<void>;
  /** Whether one more message may go out now (a lease's deadline not passed). */
  mayPublish(): boolean;
  /** The outbox as read under the leadership's fence (null: no longer leads); absent: the store's. */
  fencedOutbox?: () => Promise<OutboxEntry[] | null>;
  /** Called when the leadership is taken (the relay publishes what waits). */
  onTaken?: () => void;
  close(): Promise<void>;
}

/** Between two requests for the lease while another controller holds it (with jitter). */
const LEASE_RETRY_MS = 1_000;

export class BrokerLease implements Leadership {
  private held = false;
  onTaken?: () => void;

  constructor(private readonly logger?: Logger) {}

  get leads(): boolean {
    return this.held;
  }

  mayPublish(): boolean {
    return this.held;
  }

  /** Asks for the lease until this controller holds it or `over` (the connection ended). Held, it
   *  lasts as long as the connection: nothing more to do. */
  async campaign(conn: ChannelModel, over: Promise<void>): Promise<void> {
    let ended = false;
    // `over` only resolves; ended either way, so no rejection can go unhandled.
    over.then(
      () => (ended = true),
      () => (ended = true),
    );
    while (!ended) {
      // A refusal closes the channel it was asked on: a throwaway channel each time.
      const ch = await conn.createChannel().catch(() => undefined);
      if (!ch) return;
      ch.on('error', () => undefined);
      try {
        await ch.assertQueue(LEADER_QUEUE, { exclusive: true, durable: false });
        if (ended) return;
        this.held = true;
        this.logger?.info('leadership lease taken: this controller publishes');
        this.onTaken?.();
        return;
      } catch (e) {
        // 405 RESOURCE_LOCKED: another controller holds it. Anything else is worth a line.
        if (!/RESOURCE_LOCKED|405/.test((e as Error).message))
          this.logger?.warn({ err: (e as Error).message }, 'leadership lease request failed');
      }
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([over, new Promise((r) => (timer = setTimeout(r, LEASE_RETRY_MS * (0.5 + Math.random()))))]);
      clearTimeout(timer);
    }
  }

  /** The broker drops the lease with the connection; nothing to ask of anyone. */
  async resign(): Promise<void> {
    if (this.held) this.logger?.warn('leadership lost with the broker connection');
    this.held = false;
  }

  async close(): Promise<void> {
    this.held = false;
  }
}
