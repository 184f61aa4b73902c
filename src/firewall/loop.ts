// Scheduling of applies: when one runs, never what it does. Inputs share one apply while they keep
// coming less than `quietMs` apart, for at most `coalesceMs` from the first (a relay's drain arrives
// as a few messages within a millisecond or two: waiting out the whole window for more only delays
// every change); structural work (filters) runs at most once per burst-paced interval while membership
// work never waits for it; a failed apply is retried with exponential backoff; `flush()` forces
// everything out now and `settled()` waits for the loop's own pace. No I/O of its own: the engine
// passes the apply to run, so the loop is tested without root (test/engine-core.test.ts).
import type { Logger } from 'pino';
import { BurstPacer, windowClosesAt } from '../pacer.js';

export interface LoopOptions {
  coalesceMs: number;
  /** An apply goes once no input has come for this long, or `coalesceMs` after the first input,
   *  whichever is sooner. */
  quietMs: number;
  structureIntervalMs: number;
  structureIntervalMaxMs: number;
  logger?: Logger;
}

export interface RunResult {
  /** Structural work is still pending (not yet due, or arrived during the run). */
  structureLeft: boolean;
  /** Every membership change taken by the run is in the kernel. */
  membersComplete: boolean;
}

/** One apply: `structure` says whether structural work may go now. */
export type RunApply = (structure: boolean) => Promise<RunResult>;

const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 30_000;

export class ApplyLoop {
  errors = 0;
  runs = 0;
  private readonly pacer: BurstPacer;
  private timer: NodeJS.Timeout | null = null;
  private timerAt = 0;
  /** The timer was armed for the inputs' window: a later input may move it later, within the window. */
  private timerForInputs = false;
  /** When the first input not yet taken by an apply came, and the newest. */
  private windowOpenedAt = 0;
  private lastInputAt = 0;
  private running: Promise<RunResult> | null = null;
  private dirty = false;
  private structurePending = false;
  private forceStructure = 0;
  private retryDelayMs = 0;
  private closed = false;
  /** Held by `exclusive`: no apply starts meanwhile. */
  private held: Promise<void> | null = null;
  private inputGen = 0;
  private appliedGen = 0;
  private membersAppliedGen = 0;
  private waiters: { gen: number; membersOnly: boolean; resolve: () => void }[] = [];

  constructor(
    private readonly run: RunApply,
    private readonly opts: LoopOptions,
  ) {
    this.pacer = new BurstPacer(opts.structureIntervalMs, opts.structureIntervalMaxMs);
  }

  /** An input arrived; `structural` when it changes filters (a port or a group's rules). */
  kick(structural: boolean): void {
    const now = Date.now();
    this.inputGen++;
    if (!this.dirty) this.windowOpenedAt = now;
    this.lastInputAt = now;
    this.dirty = true;
    if (structural) {
      this.structurePending = true;
      this.pacer.arrived(now);
    }
    const due = windowClosesAt(this.windowOpenedAt, this.lastInputAt, this.opts.coalesceMs, this.opts.quietMs);
    this.arm(Math.max(0, due - now), true);
  }

  /** The gap the next structural apply is held to (for logs and status). */
  get structureGapMs(): number {
    return this.pacer.currentGapMs;
  }

  /** Resolves once everything asked so far is applied (rejects if an apply failed). */
  async flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.forceStructure++;
    try {
      while (this.running || this.dirty || this.structurePending) {
        if (this.running) await this.running;
        else await this.runOnce();
      }
    } finally {
      this.forceStructure--;
    }
  }

  /** Resolves once what was asked so far is applied, at the loop's own pace (never hurried). With
   *  `membersOnly`, once its membership is (filters may still wait for their interval). */
  settled(membersOnly = false): Promise<void> {
    const gen = this.inputGen;
    if ((membersOnly ? this.membersAppliedGen : this.appliedGen) >= gen) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ gen, membersOnly, resolve }));
  }

  /** Runs `f` with no apply running alongside it (drift repair reads the kernel against the applied
   *  view, which an apply in flight would be changing). */
  async exclusive<T>(f: () => Promise<T>): Promise<T> {
    while (this.held) await this.held;
    let release!: () => void;
    this.held = new Promise((r) => (release = r));
    try {
      await this.running?.catch(() => undefined);
      return await f();
    } finally {
      this.held = null;
      release();
      if ((this.dirty || this.structurePending) && !this.timer) this.arm(this.opts.coalesceMs);
    }
  }

  /** Whether nothing is pending or running (a periodic check may then read the kernel at leisure). */
  get idle(): boolean {
    return !this.running && !this.dirty && !this.structurePending && !this.held;
  }

  close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const w of this.waiters) w.resolve();
    this.waiters = [];
    return (this.running ?? Promise.resolve()).then(
      () => undefined,
      () => undefined,
    );
  }

  /** Runs an apply in `delayMs` (plus any retry backoff), or sooner if one is already due sooner —
   *  but a timer armed for the inputs' window (`forInputs`) moves with the window, later too. */
  private arm(delayMs: number, forInputs = false): void {
    if (this.closed) return;
    const at = Date.now() + delayMs + this.retryDelayMs;
    if (this.timer) {
      if (this.timerAt <= at && !(forInputs && this.timerForInputs)) return;
      clearTimeout(this.timer);
    }
    this.timerAt = at;
    this.timerForInputs = forInputs;
    this.timer = setTimeout(
      () => {
        this.timer = null;
        // A flush may have done the work since this was armed; a failure is logged by runOnce.
        if (this.dirty || this.structurePending) this.runOnce().catch(() => undefined);
      },
      Math.max(0, at - Date.now()),
    );
  }

  private runOnce(): Promise<RunResult> {
    if (this.running) return this.running;
    if (this.held) {
      // Drift repair holds the kernel: go once it is done.
      const held = this.held;
      return held.then(() => this.runOnce());
    }
    this.dirty = false;
    const gen = this.inputGen;
    const structure = this.structurePending && (this.forceStructure > 0 || Date.now() >= this.pacer.nextAt);
    if (structure) {
      this.structurePending = false;
      this.pacer.take();
    }
    this.runs++;
    this.running = this.run(structure)
      .then((r) => {
        this.retryDelayMs = 0;
        if (structure) this.pacer.done(Date.now());
        if (r.structureLeft) this.structurePending = true;
        if (!r.structureLeft) this.appliedGen = Math.max(this.appliedGen, gen);
        if (r.membersComplete) this.membersAppliedGen = Math.max(this.membersAppliedGen, gen);
        this.wake();
        return r;
      })
      .catch((e: unknown) => {
        this.errors++;
        this.dirty = true;
        if (structure) {
          this.structurePending = true;
          this.pacer.done(Date.now());
        }
        this.retryDelayMs = Math.min(this.retryDelayMs ? this.retryDelayMs * 2 : RETRY_FIRST_MS, RETRY_MAX_MS);
        this.opts.logger?.error({ err: e, retryInMs: this.retryDelayMs }, 'firewall apply failed; will retry');
        throw e;
      })
      .finally(() => {
        this.running = null;
        if (this.timer) return;
        // Inputs that came during the run go within the window; structural work not yet due waits
        // for its interval.
        if (this.dirty || (this.structurePending && this.forceStructure > 0)) this.arm(this.opts.coalesceMs);
        else if (this.structurePending) this.arm(Math.max(this.opts.coalesceMs, this.pacer.nextAt - Date.now()));
      });
    return this.running;
  }

  private wake(): void {
    this.waiters = this.waiters.filter((w) => {
      const done = (w.membersOnly ? this.membersAppliedGen : this.appliedGen) >= w.gen;
      if (done) w.resolve();
      return !done;
    });
  }
}
