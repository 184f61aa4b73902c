// The outbox relay: publishes the messages the store wrote with each change, then deletes them.
// Changes within `coalesceMs` go out together, consecutive member deltas of a group merged into one.
// A publish that fails (connection lost before the broker confirmed) leaves its entries in the
// outbox for the next drain, so delivery is at least once; receivers drop duplicates by revision.
//
// With several controllers on one store, either each relay publishes its own entries and a silent
// peer's once they are orphaned (the default), or one relay publishes everything: the holder of the
// leadership lease (`isLeader`, see controller.ts), which then also polls for what its peers write.
// One publisher keeps the order of the store on the wire, across controllers and across a failover.
import type { Logger } from 'pino';
import { BurstPacer } from '../pacer.js';
import type { Publisher } from './publisher.js';
import { coalesceUpdates } from './publisher.js';
import type { OutboxEntry, Store } from './store.js';

export interface RelayOptions {
  coalesceMs: number;
  /** Least time between two drains (default 100 ms): a change after a quiet spell goes out within
   *  `coalesceMs`, while a storm of them goes out in one batch per interval — every agent of the group
   *  then handles one message per interval instead of one per change. */
  minIntervalMs?: number;
  /** While changes keep coming faster than that (a bulk boot), the interval doubles after each drain
   *  up to this (default 400 ms) and falls back after a quiet spell: fewer, larger messages for every
   *  agent of the group, at a bounded cost in latency. */
  maxIntervalMs?: number;
  /** Entries another controller process wrote and left this long are taken as orphaned by a crash. */
  orphanAfterMs?: number;
  /** Set: this relay publishes only while it returns true, and then every entry of the store at once,
   *  whoever wrote it (the other controllers publish nothing). */
  isLeader?: () => boolean;
  logger?: Logger;
}

export class OutboxRelay {
  published = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly pacer: BurstPacer;
  private draining: Promise<void> = Promise.resolve();
  private readonly sweep: NodeJS.Timeout;
  private readonly poll?: NodeJS.Timeout;
  /** Until the first drain succeeds, drains take every entry: what a previous run of this controller
   *  left behind included (a live peer's fresh entries too, which is only a harmless duplicate). */
  private takeAll = true;

  constructor(private readonly store: Store, private readonly publisher: () => Publisher | undefined, private readonly opts: RelayOptions) {
    this.pacer = new BurstPacer(opts.minIntervalMs ?? 100, opts.maxIntervalMs ?? 400);
    const orphanAfter = opts.orphanAfterMs ?? 10_000;
    this.sweep = setInterval(() => this.kick(), orphanAfter);
    this.sweep.unref();
    if (opts.isLeader) {
      // A peer's writes are not announced to us (LMDB has no cross-process notification): the leader
      // looks for them at the relay's own pace. An empty range read costs microseconds.
      this.poll = setInterval(() => {
        if (this.timer === null && opts.isLeader!() && this.publisher() && store.outboxDepth() > 0) this.kick();
      }, opts.minIntervalMs ?? 100);
      this.poll.unref();
    }
  }

  /** Schedules a drain within the coalescing window. */
  kick(): void {
    const now = Date.now();
    this.pacer.arrived(now);
    const wait = Math.max(this.opts.coalesceMs, this.pacer.nextAt - now);
    this.timer ??= setTimeout(() => {
      this.timer = null;
      void this.drain().catch((e: unknown) => this.opts.logger?.warn({ err: (e as Error).message }, 'outbox publish failed; kept for the next attempt'));
    }, wait);
  }

  /** Publishes everything pending now; resolves once the broker confirmed it. */
  drain(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    // One drain at a time keeps the outbox's order on the wire; a failed one must not stop the next.
    this.draining = this.draining.catch(() => undefined).then(() => this.drainOnce());
    return this.draining;
  }

  close(): void {
    clearInterval(this.sweep);
    if (this.poll) clearInterval(this.poll);
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private async drainOnce(): Promise<void> {
    const publisher = this.publisher();
    if (!publisher) return;
    const leader = this.opts.isLeader;
    if (leader && !leader()) return;
    const now = Date.now();
    this.pacer.take();
    this.pacer.done(now);
    const orphanAfter = this.opts.orphanAfterMs ?? 10_000;
    const takeAll = this.takeAll || !!leader;
    // The store keeps entries by writer; the order they were committed in is their time (ties broken
    // by revision), which keeps each group's revisions rising on the wire whoever wrote them.
    const entries = this.store.outbox()
      .filter((e: OutboxEntry) => takeAll || e.owner === this.store.owner || now - e.at >= orphanAfter)
      .sort((a, b) => a.at - b.at || revisionOf(a) - revisionOf(b));
    if (entries.length === 0) {
      this.takeAll = false;
      return;
    }
    // All sent in order on one channel, then the confirms awaited together (not one round trip each).
    const messages = coalesceUpdates(entries.map((e) => e.message));
    await Promise.all(messages.map((m) => publisher.send(m)));
    this.published += messages.length;
    await this.store.ackOutbox(entries.map((e) => e.key));
    this.takeAll = false;
  }
}

const revisionOf = (e: OutboxEntry) => ('revision' in e.message ? e.message.revision : 0);
