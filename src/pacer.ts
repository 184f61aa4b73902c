// Spacing of batched work that is costly per run (a chain rewrite, a drain of the outbox): at least
// `minMs` between two runs; while work keeps arriving before the next run may start — a burst, such as
// a bulk VM boot — the gap doubles with each run up to `maxMs`, so a long burst costs a few large runs
// instead of many small ones; after a quiet spell it is back to `minMs`. A caller that may run as soon
// as work stops coming (`settledAt`) does not make the end of a burst wait out the burst's long gap.
// Pure: callers pass the time.

/** When a coalescing window of work closes: `quietMs` after the newest arrival, but never later than
 *  `windowMs` after the oldest — work that keeps coming is gathered, a lone change need not wait out
 *  the window. */
export function windowClosesAt(oldestAt: number, newestAt: number, windowMs: number, quietMs: number): number {
  return Math.min(oldestAt + windowMs, newestAt + quietMs);
}

export class BurstPacer {
  private gapMs: number;
  private notBefore = 0;
  /** When the oldest work not yet taken by a run arrived (0: none). */
  private waitingSince = 0;
  /** When the newest work arrived, and when the last run started. */
  private lastArrival = 0;
  private lastRunAt = 0;
  private takenInBurst = false;

  constructor(
    private readonly minMs: number,
    private readonly maxMs: number,
  ) {
    this.gapMs = minMs;
    this.maxMs = Math.max(minMs, maxMs);
  }

  /** Work arrived. */
  arrived(now: number): void {
    this.waitingSince ||= now;
    this.lastArrival = now;
  }

  /** The earliest time the next run may start. */
  get nextAt(): number {
    return this.notBefore;
  }

  /** When the work waiting may run if work that stops coming need not wait for `nextAt`: `settleMs`
   *  after the newest arrival, but never sooner than `minMs` after the last run, nor than the work's
   *  window (`leastMs` after the oldest arrival, or `quietMs` after the newest if that is sooner: a
   *  lone change need not wait out the window); and never later than the paced time (`nextAt`, or the
   *  window's end if that is later). While work keeps coming (arrivals closer than `settleMs`) that is
   *  the paced time: a burst is paced as before, only its end goes out early. */
  settledAt(settleMs: number, leastMs = 0, quietMs = leastMs): number {
    const window = windowClosesAt(this.waitingSince, this.lastArrival, leastMs, quietMs);
    const paced = Math.max(window, this.notBefore);
    const settled = Math.max(this.lastArrival + settleMs, this.lastRunAt + this.minMs, window);
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
    this.lastRunAt = at;
    this.gapMs = this.takenInBurst ? Math.min(this.gapMs * 2, this.maxMs) : this.minMs;
    this.notBefore = at + this.gapMs;
  }
}
