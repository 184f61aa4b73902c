// Spacing of batched work that is costly per run (a chain rewrite, a drain of the outbox): at least
// `minMs` between two runs; while work keeps arriving before the next run may start — a burst, such as
// a bulk VM boot — the gap doubles with each run up to `maxMs`, so a long burst costs a few large runs
// instead of many small ones; after a quiet spell it is back to `minMs`. A caller that may run as soon
// as work stops coming (`settledAt`) does not make the end of a burst wait out the burst's long gap.
// How long "stopped" is may follow the burst's own pace (`settleFor`): a storm of changes 10 ms
// apart is over well before 40 ms have passed, while one of changes 30 ms apart is not.
// Pure: callers pass the time.

/** When a coalescing window of work closes: `quietMs` after the newest arrival, but never later than
 *  `windowMs` after the oldest — work that keeps coming is gathered, a lone change need not wait out
 *  the window. */
export function windowClosesAt(oldestAt: number, newestAt: number, windowMs: number, quietMs: number): number {
  return Math.min(oldestAt + windowMs, newestAt + quietMs);
}

/** How many of the latest arrival gaps tell a burst's pace. */
const RECENT_GAPS = 8;
/** A burst counts as over once work has stopped for this many times its widest recent gap. */
const SETTLE_PER_GAP = 1.5;

export class BurstPacer {
  private gapMs: number;
  private notBefore = 0;
  /** When the oldest work not yet taken by a run arrived (0: none). */
  private waitingSince = 0;
  /** When the newest work arrived, and when the last run started. */
  private lastArrival = 0;
  private lastRunAt = 0;
  private takenInBurst = false;
  /** The gaps between the latest arrivals, oldest first (at most `RECENT_GAPS`). */
  private readonly recentGaps: number[] = [];
  /** Whether the last run came sooner than `minMs` after the one before it (a fast burst's end). */
  private lastRunEarly = false;

  constructor(
    private readonly minMs: number,
    private readonly maxMs: number,
    /** When set, `settledAt`'s settle time follows the burst's pace, down to this (`settleFor`). */
    private readonly adaptiveSettleFloorMs?: number,
  ) {
    this.gapMs = minMs;
    this.maxMs = Math.max(minMs, maxMs);
  }

  /** Work arrived. */
  arrived(now: number): void {
    if (this.lastArrival > 0) {
      this.recentGaps.push(now - this.lastArrival);
      if (this.recentGaps.length > RECENT_GAPS) this.recentGaps.shift();
    }
    this.waitingSince ||= now;
    this.lastArrival = now;
  }

  /** How long work must have stopped for the burst to count as over, at most `settleMs`: with an
   *  adaptive floor, `SETTLE_PER_GAP` times the widest of the latest gaps (a pause well past the
   *  burst's own pace, so a burst's jitter does not end it), never under the floor. Until enough gaps
   *  are known (a burst's first changes), `settleMs`. */
  settleFor(settleMs: number): number {
    const floor = this.adaptiveSettleFloorMs;
    if (floor === undefined || this.recentGaps.length < RECENT_GAPS) return settleMs;
    const widest = Math.max(...this.recentGaps);
    return Math.min(settleMs, Math.max(floor, Math.ceil(widest * SETTLE_PER_GAP)));
  }

  /** The earliest time the next run may start. */
  get nextAt(): number {
    return this.notBefore;
  }

  /** When the work waiting may run if work that stops coming need not wait for `nextAt`: `settleMs`
   *  (or less, by the burst's pace: `settleFor`) after the newest arrival, but never sooner than
   *  `minMs` after the last run (a fast burst's end: its settle time), nor than the work's window
   *  (`leastMs` after the oldest arrival, or `quietMs` after the newest if that is sooner: a lone change
   *  need not wait out the window); and never later than the paced time (`nextAt`, or the window's end
   *  if that is later). While work keeps coming (arrivals closer than `settleMs`) that is
   *  the paced time: a burst is paced as before, only its end goes out early. */
  settledAt(settleMs: number, leastMs = 0, quietMs = leastMs): number {
    const window = windowClosesAt(this.waitingSince, this.lastArrival, leastMs, quietMs);
    const paced = Math.max(window, this.notBefore);
    const settle = this.settleFor(settleMs);
    // The end of a fast burst (its pace, not the ceiling, set the settle time) whose runs the gap had
    // widened need not also wait out the least gap after the run before it: a pause of 1.5 times the
    // burst's widest recent gap is its end rather than jitter (a pause that long within a burst costs
    // one run more). Slower work (a settle time at the ceiling) keeps the least gap: its pauses are too
    // near its pace to tell. And only one run in a row may come early: whatever the pattern of
    // arrivals, there are never more than two runs within `minMs`.
    const fastBurst = this.adaptiveSettleFloorMs !== undefined && settle < settleMs && this.gapMs > this.minMs && !this.lastRunEarly;
    const afterRun = fastBurst ? settle : this.minMs;
    const settled = Math.max(this.lastArrival + settle, this.lastRunAt + afterRun, window);
    return Math.min(paced, settled);
  }

  /** The gap the next run will be held to (for logs and tests). */
  get currentGapMs(): number {
    return this.gapMs;
  }

  /** A run starts and takes the work pending now; work arriving from here on is for the next run. */
  take(): void {
    // Work that arrived before the gap had passed had to wait for it: the burst goes on.
    this.takenInBurst = this.waitingSince > 0 && this.waitingSince < this.notBefore;
    this.waitingSince = 0;
  }

  /** The run that took the work is done (at `at`): the next may start one gap later. */
  done(at: number): void {
    this.lastRunEarly = this.lastRunAt > 0 && at - this.lastRunAt < this.minMs;
    this.lastRunAt = at;
    this.gapMs = this.takenInBurst ? Math.min(this.gapMs * 2, this.maxMs) : this.minMs;
    this.notBefore = at + this.gapMs;
  }
}
