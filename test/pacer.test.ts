// BurstPacer is pure (callers pass the time); the engine and the relay that use it are tested for
// real in firewall.test.ts, protocol.test.ts and e2e.test.ts.
import test from 'ava';
import { BurstPacer } from '../src/pacer.js';

/** Runs as a caller does: each arrival waits for nextAt, one run takes all that waited. */
function drive(p: BurstPacer, arrivals: number[], runMs = 0): { at: number; gap: number }[] {
  const runs: { at: number; gap: number }[] = [];
  let i = 0;
  while (i < arrivals.length) {
    const first = arrivals[i]!;
    p.arrived(first);
    const at = Math.max(first, p.nextAt);
    // Everything that arrived up to the run's start is taken by it.
    while (i < arrivals.length && arrivals[i]! <= at) p.arrived(arrivals[i++]!);
    p.take();
    p.done(at + runMs);
    runs.push({ at, gap: p.currentGapMs });
  }
  return runs;
}

test('a quiet change runs at once and keeps the least gap', (t) => {
  const p = new BurstPacer(100, 800);
  const runs = drive(p, [1_000, 5_000, 9_000]);
  t.deepEqual(
    runs.map((r) => r.at),
    [1_000, 5_000, 9_000],
  );
  t.deepEqual(
    runs.map((r) => r.gap),
    [100, 100, 100],
  );
});

test('in a burst the gap doubles per run up to the most, then a quiet spell resets it', (t) => {
  const p = new BurstPacer(100, 800);
  // One change every 10 ms for 5 s, then one long after.
  const burst = Array.from({ length: 500 }, (_, k) => 1_000 + k * 10);
  const runs = drive(p, [...burst, 20_000]);
  t.deepEqual(
    runs.slice(0, 6).map((r) => r.gap),
    [100, 200, 400, 800, 800, 800],
  );
  // Runs are spaced by the gap in force when the previous one finished.
  for (let k = 1; k < runs.length - 1; k++) t.is(runs[k]!.at - runs[k - 1]!.at, runs[k - 1]!.gap);
  // 5 s of changes in a handful of runs rather than one per 100 ms.
  t.true(runs.length - 1 <= 10, `${runs.length - 1} runs`);
  const last = runs.at(-1)!;
  t.is(last.at, 20_000);
  t.is(last.gap, 100);
});

test('work arriving while a run is in progress counts as waiting for the next', (t) => {
  const p = new BurstPacer(100, 400);
  p.arrived(0);
  p.take();
  p.arrived(50); // during the run
  p.done(120);
  t.is(p.nextAt, 220);
  p.take();
  p.done(220);
  t.is(p.currentGapMs, 200);
});

test('the most is never below the least', (t) => {
  const p = new BurstPacer(500, 100);
  p.arrived(0);
  p.take();
  p.done(0);
  p.arrived(10);
  p.take();
  p.done(500);
  t.is(p.currentGapMs, 500);
});

test('settledAt: a burst is paced by the gap, but its end goes out once the work has stopped, never sooner than the least gap', (t) => {
  const p = new BurstPacer(100, 400);
  // A quiet change: after the least wait (here 20), as nextAt would have it.
  p.arrived(1_000);
  t.is(p.settledAt(40, 20), 1_020);
  p.take();
  p.done(1_020);
  // A burst, one change every 10 ms: while it goes on, the run is due at the gap (nextAt), not earlier.
  for (let now = 1_030; now <= 1_110; now += 10) p.arrived(now);
  t.is(p.nextAt, 1_120);
  t.is(p.settledAt(40, 20), 1_120, 'changes closer than 40 ms: paced');
  p.take();
  p.done(1_120);
  t.is(p.currentGapMs, 200, 'the burst doubled the gap');
  for (let now = 1_130; now <= 1_200; now += 10) p.arrived(now);
  t.is(p.nextAt, 1_320);
  // The burst stops at 1,200: what it left is due 40 ms later, not at 1,320.
  t.is(p.settledAt(40, 20), 1_240);
  // Never sooner than the least gap after the last run, nor than the least wait after the oldest.
  const q = new BurstPacer(100, 400);
  q.arrived(1_000);
  q.take();
  q.done(1_000);
  q.arrived(1_010);
  t.is(q.settledAt(5, 20), 1_100, 'the least gap (100) after the run at 1,000');
  t.is(q.settledAt(5, 200), 1_210, 'the least wait (200) after the oldest, at 1,010');
});

test('settledAt: a lone change closes its window once no other came for the quiet time; changes that keep coming wait for the window', (t) => {
  const p = new BurstPacer(100, 400);
  p.arrived(1_000);
  t.is(p.settledAt(40, 20, 5), 1_005, 'quiet 5 ms after the lone change');
  p.arrived(1_003);
  p.arrived(1_006);
  t.is(p.settledAt(40, 20, 5), 1_011, 'each change moves it');
  for (let now = 1_009; now <= 1_030; now += 3) p.arrived(now);
  t.is(p.settledAt(40, 20, 5), 1_020, 'but never past the window (20 ms after the oldest)');
  p.take();
  p.done(1_020);
  // The least gap after a run still holds.
  p.arrived(1_050);
  t.is(p.settledAt(40, 20, 5), 1_120, 'the least gap (100) after the run at 1,020');
});

test('settleFor: with an adaptive floor, the settle time is 1.5 times the widest of the last eight gaps, between the floor and the ceiling', (t) => {
  const fixed = new BurstPacer(100, 400);
  const adaptive = new BurstPacer(100, 400, 15);
  for (let now = 1_000; now <= 1_070; now += 10) {
    fixed.arrived(now);
    adaptive.arrived(now);
  }
  t.is(adaptive.settleFor(40), 40, 'seven gaps: too few to tell a pace by');
  fixed.arrived(1_080);
  adaptive.arrived(1_080);
  t.is(fixed.settleFor(40), 40, 'no floor: always the ceiling');
  t.is(adaptive.settleFor(40), 15, 'eight gaps of 10 ms: 15 ms');
  adaptive.arrived(1_096);
  t.is(adaptive.settleFor(40), 24, 'a gap of 16 ms among them: 24 ms');
  for (let now = 1_106; now <= 1_166; now += 10) adaptive.arrived(now);
  t.is(adaptive.settleFor(40), 24, 'still among the last eight');
  adaptive.arrived(1_176);
  t.is(adaptive.settleFor(40), 15, 'gone from the last eight');
  for (let now = 1_206; now <= 1_446; now += 30) adaptive.arrived(now);
  t.is(adaptive.settleFor(40), 40, 'gaps of 30 ms: 45, held to the ceiling');
  for (let now = 1_447; now <= 1_454; now++) adaptive.arrived(now);
  t.is(adaptive.settleFor(40), 15, 'gaps of 1 ms: the floor');
  t.is(adaptive.settleFor(10), 10, 'never over the ceiling, even at the floor');
});

/** A burst of one change every `spacingMs` from 1,000, through three runs each at its due time (as
 *  the relay runs); returns the time of the last run, which is also the last change's. */
function burstThroughRuns(p: BurstPacer, spacingMs: number): number {
  let now = 1_000;
  p.arrived(now);
  p.take();
  p.done(now);
  for (let run = 0; run < 3; run++) {
    while (now < p.nextAt) p.arrived((now += spacingMs));
    p.take();
    p.done(now);
  }
  return now;
}

test('settledAt, adaptive: a fast burst ends once it paused 1.5 times its widest gap, without the least gap after the last run; slower work keeps it', (t) => {
  // A storm, one change every 10 ms, paced at 400 ms.
  const p = new BurstPacer(100, 400, 15);
  const lastRun = burstThroughRuns(p, 10);
  t.is(p.currentGapMs, 400, 'paced as a burst');
  let now = lastRun;
  for (let i = 0; i < 3; i++) p.arrived((now += 10));
  // Its last change 30 ms after the run: out 15 ms later, not at the run + 100 ms.
  t.is(p.settledAt(40, 20), now + 15);
  t.true(now + 15 < lastRun + 100);
  // Only once in a row: should the burst go on in spurts, each ending in such a pause, the run after
  // an early one keeps the least gap, so there are never more than two runs within 100 ms.
  const earlyRun = now + 15;
  p.take();
  p.done(earlyRun);
  now = earlyRun;
  for (let i = 0; i < 9; i++) p.arrived((now += 1));
  t.is(p.settleFor(40), 15);
  t.is(p.settledAt(40, 20), earlyRun + 100);

  // The same with the settle time fixed at 40 ms: the least gap after the run holds.
  const f = new BurstPacer(100, 400);
  const fixedRun = burstThroughRuns(f, 10);
  for (let i = 1; i <= 3; i++) f.arrived(fixedRun + 10 * i);
  t.is(f.settledAt(40, 20), fixedRun + 100);

  // Changes 30 ms apart: the settle time is the ceiling, 40 ms; the least gap after a run still holds.
  const s30 = new BurstPacer(100, 400, 15);
  const slowRun = burstThroughRuns(s30, 30);
  s30.arrived(slowRun + 30);
  t.is(s30.settleFor(40), 40);
  t.is(s30.settledAt(40, 20), slowRun + 100);
});
