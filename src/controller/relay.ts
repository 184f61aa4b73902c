// The outbox relay: publishes the messages the store wrote with each change, then deletes them.
// Changes within `coalesceMs` go out together, consecutive member deltas of a group merged into one.
// A publish that fails (connection lost before the broker confirmed) leaves its entries in the
// outbox for the next drain, so delivery is at least once; receivers drop duplicates by revision.
//
// With several controllers on one store, either each relay publishes its own entries and a silent
// peer's once they are orphaned (the default), or one relay publishes everything: the holder of the
// leadership (`isLeader`, see leadership.ts), which follows what its peers write: told by the store
// where it can tell (etcd's watch), else by looking every interval (LMDB tells no process of
// another's writes). One publisher keeps the order of the store on the wire, across controllers and
// across a failover.
import type { Logger } from 'pino';
import { BurstPacer } from '../pacer.js';
import type { Publisher } from './publisher.js';
import { coalesceUpdates } from './publisher.js';
import type { ControllerStore, MemberChange, OutboxEntry } from './records.js';

/** Past this many outbox entries, `laterMemberChanges` does not read them for a sync reply. */
const LATER_READ_MAX = 1_000;
/** A member change unpublished for longer is taken as stuck (the relay drains every 100–400 ms). */
const STUCK_AFTER_MS = 5_000;

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
  /** Once changes have stopped coming for this long (default 40 ms; less for a fast burst:
   *  `settleFloorMs`), what they left goes out without waiting for the interval: the last changes of a
   *  burst are not held up to `maxIntervalMs`. Changes closer together than this (a burst) are paced
   *  by the interval as before. */
  settleMs?: number;
  /** The settle time follows a burst's pace (1.5 times the widest of its last eight gaps,
   *  `BurstPacer.settleFor`) down to this (default 15 ms), `settleMs` being its ceiling: a storm of
   *  changes 10 ms apart goes out about 18 ms after its last change instead of 40–100 ms, while changes
   *  30 ms apart are paced as before. */
  settleFloorMs?: number;
  /** A change after a quiet spell goes out once no other has come for this long (default 5 ms), rather
   *  than at the end of `coalesceMs`. */
  quietMs?: number;
  /** Entries another controller process wrote and left this long are taken as orphaned by a crash. */
  orphanAfterMs?: number;
  /** Set: this relay publishes only while it returns true, and then every entry of the store at once,
   *  whoever wrote it (the other controllers publish nothing). */
  isLeader?: () => boolean;
  /** Set: the leader reads what to publish through this instead of the store's snapshot, and
   *  resolves only while it still leads (a fenced read: leadership.ts); null when it no longer does. */
  fencedOutbox?: () => Promise<OutboxEntry[] | null>;
  /** Whether a message may still go out now (the leadership's deadline has not passed). */
  mayPublish?: () => boolean;
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
   *  left behind included (a live peer's fresh entries too, a harmless duplicate: they are sent, but
   *  left in the outbox for their writer, or until orphaned). */
  private takeAll = true;
  /** Keys (JSON) of the entries the drain under way took: it may have published them already. */
  private taken = new Set<string>();
  /** Entries another controller process wrote and left this long are taken as orphaned. */
  private get orphanAfterMs(): number {
    return this.opts.orphanAfterMs ?? 10_000;
  }

  constructor(
    private readonly store: ControllerStore,
    private readonly publisher: () => Publisher | undefined,
    private readonly opts: RelayOptions,
  ) {
    this.pacer = new BurstPacer(opts.minIntervalMs ?? 100, opts.maxIntervalMs ?? 400, opts.settleFloorMs ?? 15);
    this.sweep = setInterval(() => this.kick(), this.orphanAfterMs);
    this.sweep.unref();
    if (opts.isLeader && store.onOutboxWrite) {
      store.onOutboxWrite(() => {
        if (opts.isLeader!() && this.publisher()) this.kick();
      });
    } else if (opts.isLeader) {
      // A peer's writes are not announced to us (LMDB has no cross-process notification): the leader
      // looks for them at the relay's own pace. An empty range read costs microseconds.
      this.poll = setInterval(() => {
        if (this.timer === null && opts.isLeader!() && this.publisher() && store.outboxDepth() > 0) this.kick();
      }, opts.minIntervalMs ?? 100);
      this.poll.unref();
    }
  }

  /** Schedules a drain: after a quiet spell within the coalescing window (`quietMs` after the change
   *  if no other follows); in a burst at the interval, or once the burst has stopped for `settleMs`,
   *  whichever comes first. */
  kick(): void {
    this.pacer.arrived(Date.now());
    this.arm();
  }

  /** One timer at a time: when it fires early (changes kept coming, so the drain is due later), it
   *  waits on for what is left rather than being moved at every change. */
  private arm(): void {
    if (this.timer) return;
    const due = () => this.pacer.settledAt(this.opts.settleMs ?? 40, this.opts.coalesceMs, this.opts.quietMs ?? 5);
    this.timer = setTimeout(
      () => {
        this.timer = null;
        if (Date.now() < due()) return this.arm();
        void this.drain().catch((e: unknown) =>
          this.opts.logger?.warn({ err: (e as Error).message }, 'outbox publish failed; kept for the next attempt'),
        );
      },
      Math.max(0, due() - Date.now()),
    );
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

  /**
   * The member changes in the outbox that a drain of this relay not yet begun will publish, in commit
   * order: a sync reply may give members as they were before them (rpc.ts, `membersAsPublished`),
   * since whoever asked for it, bound beforehand, will receive them. Left out: what the drain under
   * way took (some of it may have gone before the asker's binding, and a group that changes no more
   * would never reveal the gap), what this relay will not publish (another controller's entries,
   * unless it publishes everything as the leader; everything, when it is not the leader), and all of
   * it when some change has waited for seconds (no broker, a leader gone: agents are not held to
   * what is stuck) or the outbox is too deep to read for every reply.
   */
  laterMemberChanges(now = Date.now()): MemberChange[] {
    const leader = this.opts.isLeader;
    if (leader && !leader()) return [];
    // Read for every reply (about 2 µs an entry on LMDB; a storm's outbox holds tens to hundreds).
    if (this.store.outboxDepth() > LATER_READ_MAX) return [];
    const out: MemberChange[] = [];
    for (const { key, owner, at, message: m } of this.store.outbox()) {
      if (m.type !== 'group.members') continue;
      if (now - at > STUCK_AFTER_MS) return [];
      if (this.taken.has(JSON.stringify(key)) || (!leader && owner !== this.store.owner)) continue;
      out.push({ groupId: m.groupId, baseRevision: m.baseRevision, revision: m.revision, added: m.added, removed: m.removed });
    }
    return out;
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
    const takeAll = this.takeAll || !!leader;
    // In the order they were committed (the store's outbox order), which keeps each group's revisions
    // rising on the wire whoever wrote them.
    const all = leader && this.opts.fencedOutbox ? await this.opts.fencedOutbox() : this.store.outbox();
    if (all === null) return;
    // This controller's own entries, and those their writer left long enough to be taken as orphaned.
    const ours = (e: OutboxEntry) => e.owner === this.store.owner || now - e.at >= this.orphanAfterMs;
    const entries = all.filter((e) => takeAll || ours(e));
    if (entries.length === 0) {
      this.takeAll = false;
      return;
    }
    // All sent in order on one channel, then the confirms awaited together (not one round trip each).
    // Past the leadership's deadline nothing more goes out: another controller may lead by then.
    const messages = coalesceUpdates(entries.map((e) => e.message));
    const mayPublish = this.opts.mayPublish ?? (() => true);
    this.taken = new Set(entries.map((e) => JSON.stringify(e.key)));
    try {
      const sent: Promise<void>[] = [];
      for (const m of messages) {
        if (!mayPublish()) {
          await Promise.allSettled(sent);
          throw new Error('leadership deadline passed while publishing; the rest stays in the outbox');
        }
        sent.push(publisher.send(m));
      }
      await Promise.all(sent);
      this.published += messages.length;
      // A first drain's take of a live peer's fresh entries is a harmless duplicate only if the peer
      // still sends them itself: they stay in the outbox for it (or until they are orphaned). The peer
      // may have answered a sync with its members as they were before them (`laterMemberChanges`),
      // counting on its own later drain to send them after the asker's binding.
      await this.store.ackOutbox(entries.filter((e) => leader || ours(e)).map((e) => e.key));
    } finally {
      // Acknowledged (gone from the outbox), or left for the next drain to send again.
      this.taken = new Set();
    }
    this.takeAll = false;
  }
}
