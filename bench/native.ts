// Native microbenchmarks: our addon against the `ipset` tool, measured side by side in one run.
// The whole run happens inside a throwaway network namespace (we re-exec ourselves there), so both
// sides talk to the same kernel namespace with no `ip netns exec` overhead on either.
//
//   npm run bench:native            (as root)
// Prints per case: `<id> ours=<median> baseline=<median> ratio=<baseline/ours>`.
import { spawnSync, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { IpsetClient, MemberList, type SetSpec } from '../src/addon/ipset.js';
import { measureDiff, syncSetForced } from '../src/internal/hooks.js';

const INNER = '--inside-netns';

function hostIp(i: number): string {
  return `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
}
function range(from: number, n: number): string[] {
  return Array.from({ length: n }, (_, k) => hostIp(from + k));
}
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
function fmt(ns: number): string {
  if (ns >= 1e9) return `${(ns / 1e9).toFixed(3)}s`;
  if (ns >= 1e6) return `${(ns / 1e6).toFixed(2)}ms`;
  return `${(ns / 1e3).toFixed(1)}us`;
}
function report(id: string, ours: number[], baseline: number[], target?: number): void {
  const o = median(ours);
  const b = median(baseline);
  const ratio = b / o;
  const verdict = target === undefined ? '' : ratio >= target ? ` target>=${target}x met` : ` target>=${target}x MISSED`;
  console.log(`${id} ours=${fmt(o)} baseline=${fmt(b)} ratio=${ratio.toFixed(1)}${verdict}`);
}
async function time(f: () => unknown): Promise<number> {
  const t = process.hrtime.bigint();
  await f();
  return Number(process.hrtime.bigint() - t);
}
function ipset(args: string[], input?: string): void {
  const r = spawnSync('ipset', args, { input, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`ipset ${args.join(' ')}: ${r.stderr}`);
}

const NET: SetSpec = { type: 'hash:net', family: 'inet', maxelem: 262144 };

async function run(): Promise<void> {
  const c = await IpsetClient.open();
  const reps = Number(process.env.BENCH_REPS ?? 7);

  // native.add1: one member into a 10k-member set.
  {
    await c.syncSet('b_add', NET, range(0, 10_000));
    const ours: number[] = [];
    const base: number[] = [];
    for (let i = 0; i < 300; i++) ours.push(await time(() => c.add('b_add', [hostIp(100_000 + i)], { exist: true })));
    for (let i = 0; i < 40; i++) base.push(await time(() => ipset(['add', 'b_add', hostIp(200_000 + i), '-exist'])));
    report('native.add1', ours, base, 30);
  }

  // native.replace100k: replace all contents with 100k other members. Ours: lists packed once
  // (MemberList), as the baseline's scripts are written once; `.strings` packs on every call.
  {
    const lists = [range(0, 100_000), range(300_000, 100_000)];
    const packed = lists.map((l) => MemberList.from(l));
    await c.syncSet('b_rep', NET, lists[0]!);
    const ours: number[] = [];
    for (let i = 0; i < reps; i++) {
      ours.push(await time(() => c.syncSet('b_rep', NET, packed[(i + 1) % 2]!)));
    }
    const oursStrings: number[] = [];
    for (let i = 0; i < reps; i++) {
      oursStrings.push(await time(() => c.syncSet('b_rep', NET, lists[(i + 1 + reps) % 2]!)));
    }
    const scripts = lists.map((l) =>
      [
        'create b_rep_tmp hash:net family inet maxelem 262144',
        ...l.map((ip) => `add b_rep_tmp ${ip}`),
        'swap b_rep_tmp b_rep',
        'destroy b_rep_tmp',
        '',
      ].join('\n'),
    );
    ipset(['create', 'b_rep2', 'hash:net', 'maxelem', '262144']);
    const base: number[] = [];
    for (let i = 0; i < reps; i++) {
      const s = scripts[i % 2]!.replaceAll('b_rep_tmp', 'b_rep2_tmp').replaceAll(' b_rep\n', ' b_rep2\n');
      base.push(await time(() => ipset(['restore'], s)));
    }
    report('native.replace100k', ours, base, 4);
    report('native.replace100k.strings', oursStrings, base, 4);
  }

  // native.diff1pct: 1k adds + 1k deletes on a 100k-member set.
  {
    const a = range(0, 100_000);
    const b = [...range(1_000, 99_000), ...range(500_000, 1_000)];
    const [pa, pb] = [MemberList.from(a), MemberList.from(b)];
    await c.syncSet('b_diff', NET, a);
    ipset(['restore'], ['create b_diff2 hash:net family inet maxelem 262144', ...a.map((ip) => `add b_diff2 ${ip}`), ''].join('\n'));
    // Ours: the desired lists packed once (MemberList), a full sync of 100k each time.
    const ours: number[] = [];
    for (let i = 0; i < reps * 2; i++) ours.push(await time(() => c.syncSet('b_diff', NET, i % 2 ? pa : pb)));
    // The same with plain string arrays, packed on every call.
    const oursStrings: number[] = [];
    for (let i = 0; i < reps * 2; i++) oursStrings.push(await time(() => c.syncSet('b_diff', NET, i % 2 ? a : b)));
    const toB = [...range(0, 1_000).map((ip) => `del b_diff2 ${ip}`), ...range(500_000, 1_000).map((ip) => `add b_diff2 ${ip}`), ''].join(
      '\n',
    );
    const toA = [...range(500_000, 1_000).map((ip) => `del b_diff2 ${ip}`), ...range(0, 1_000).map((ip) => `add b_diff2 ${ip}`), ''].join(
      '\n',
    );
    const base: number[] = [];
    for (let i = 0; i < reps * 2; i++) base.push(await time(() => ipset(['restore', '-exist'], i % 2 ? toA : toB)));
    report('native.diff1pct', ours, base, 5);
    report('native.diff1pct.strings', oursStrings, base);

    // The same change through the delta API (add/del batches), which is what a member-delta message
    // turns into: it costs O(change), where syncSet must take in the whole desired list.
    const delta: number[] = [];
    const adds = range(500_000, 1_000);
    const dels = range(0, 1_000);
    await c.syncSet('b_diff', NET, a);
    for (let i = 0; i < reps * 2; i++) {
      const [d, ad] = i % 2 ? [adds, dels] : [dels, adds];
      delta.push(
        await time(async () => {
          await c.del('b_diff', d, { exist: true });
          await c.add('b_diff', ad, { exist: true });
        }),
      );
    }
    report('native.diff1pct.delta', delta, base, 5);
  }

  // native.threshold.<pct>: where a swap starts to beat in-place changes on a 100k-member set, for the
  // record (ours = swap, baseline = in place; ratio > 1 means the swap is faster).
  if (!process.env.BENCH_SKIP_THRESHOLD) {
    const n = 100_000;
    const a = range(0, n);
    for (const pct of [10, 25, 50, 75, 100]) {
      const k = Math.round((n * pct) / 100 / 2);
      const b = [...range(k, n - k), ...range(2_000_000, k)];
      const lists = [MemberList.from(a), MemberList.from(b)];
      const inplace: number[] = [];
      const swap: number[] = [];
      await c.syncSet('b_thr', NET, a);
      for (let i = 0; i < 4; i++) inplace.push(await time(() => syncSetForced(c, 'b_thr', NET, lists[(i + 1) % 2]!, 'inplace')));
      await c.syncSet('b_thr', NET, a);
      for (let i = 0; i < 4; i++) swap.push(await time(() => syncSetForced(c, 'b_thr', NET, lists[(i + 1) % 2]!, 'swap')));
      report(`native.threshold.${pct}pct`, swap, inplace);
    }
  }

  // native.resync100x1k: the full sync of 100 groups of 1,000 members after a reconnect: a fresh
  // client (empty mirror) while the sets exist and already hold the lists. Ours: open, then one
  // syncSet per group with the lists as string arrays (as a sync reply delivers them). Baseline:
  // `ipset restore -exist` of the same lists (create + add lines).
  {
    const groups = Array.from({ length: 100 }, (_, g) => ({ name: `b_rs${g}`, members: range(1_000_000 + g * 1_000, 1_000) }));
    for (const g of groups) await c.syncSet(g.name, NET, g.members);
    const script = groups
      .flatMap((g) => [`create ${g.name}_2 hash:net family inet maxelem 262144`, ...g.members.map((ip) => `add ${g.name}_2 ${ip}`)])
      .concat('')
      .join('\n');
    ipset(['restore', '-exist'], script);
    const ours: number[] = [];
    const base: number[] = [];
    for (let i = 0; i < reps; i++) {
      ours.push(
        await time(async () => {
          const fresh = await IpsetClient.open();
          for (const g of groups) await fresh.syncSet(g.name, NET, g.members);
          await fresh.close();
        }),
      );
      base.push(await time(() => ipset(['restore', '-exist'], script)));
    }
    report('native.resync100x1k', ours, base, 5);
    for (const g of groups) {
      await c.destroy(g.name);
      ipset(['destroy', `${g.name}_2`]);
    }
  }

  // native.fail.*: batches where many elements fail (no `exist`), against the same batch with
  // `exist` where none fails: the failures' own cost, for the record (each costs one small message).
  {
    const present = range(2_000_000, 20_000);
    await c.syncSet('b_fail', NET, present);
    const ours: number[] = [];
    const base: number[] = [];
    for (let i = 0; i < 3; i++) {
      ours.push(await time(() => c.add('b_fail', present)));
      base.push(await time(() => c.add('b_fail', present, { exist: true })));
    }
    report('native.fail.add20k', ours, base);
    // Present and absent members interleaved: every message of the batch meets failures throughout.
    const half = range(2_000_000, 50_000).flatMap((ip, k) => [ip, hostIp(3_000_000 + k)]);
    const delOurs: number[] = [];
    const delBase: number[] = [];
    for (let i = 0; i < 3; i++) {
      await c.syncSet('b_fail', NET, range(2_000_000, 50_000));
      delOurs.push(await time(() => c.del('b_fail', half)));
      await c.syncSet('b_fail', NET, range(2_000_000, 50_000));
      delBase.push(await time(() => c.del('b_fail', half, { exist: true })));
    }
    report('native.fail.del100k', delOurs, delBase);
    await c.destroy('b_fail');
  }

  // native.timeout100k: a sync of an unchanged 100k list into a set with a timeout, which is read in
  // full at every sync (its members expire at any time), against the same sync of a set without one
  // (its header checked, the list compared with the last one), for the record.
  {
    const list = MemberList.from(range(0, 100_000));
    const withTimeout: SetSpec = { ...NET, timeout: 3600 };
    await c.syncSet('b_tmo', withTimeout, list);
    await c.syncSet('b_notmo', NET, list);
    const ours: number[] = [];
    const base: number[] = [];
    for (let i = 0; i < reps; i++) {
      ours.push(await time(() => c.syncSet('b_tmo', withTimeout, list)));
      base.push(await time(() => c.syncSet('b_notmo', NET, list)));
    }
    report('native.timeout100k', ours, base);
    await c.destroy('b_tmo');
    await c.destroy('b_notmo');
  }

  // native.list100k: read a 100k-member set back.
  {
    const ours: number[] = [];
    const base: number[] = [];
    for (let i = 0; i < reps; i++) ours.push(await time(() => c.readSet('b_diff')));
    for (let i = 0; i < reps; i++) base.push(await time(() => execFileSync('ipset', ['save', 'b_diff2'], { maxBuffer: 64 << 20 })));
    report('native.list100k', ours, base);
  }

  // native.diff100k: the diff pass of a full sync of 100k members (decode the packed list and diff it
  // against the kept set; Rust, timed inside Rust) against the same diff done with JS Sets, for the
  // record.
  {
    const a = range(0, 100_000);
    const b = [...range(1_000, 99_000), ...range(500_000, 1_000)];
    const [pa, pb] = [MemberList.from(a), MemberList.from(b)];
    const ours: number[] = [];
    const base: number[] = [];
    for (let i = 0; i < reps; i++) ours.push((await measureDiff(pa, pb)).nanos);
    for (let i = 0; i < reps; i++) {
      const sa = new Set(a);
      const sb = new Set(b);
      base.push(
        await time(() => {
          const add = b.filter((x) => !sa.has(x));
          const del = a.filter((x) => !sb.has(x));
          return add.length + del.length;
        }),
      );
    }
    report('native.diff100k', ours, base);
  }
}

if (process.argv.includes(INNER)) {
  run().catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else {
  const ns = `sgbench-${randomBytes(3).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, ...process.execArgv, __filename, INNER], { stdio: 'inherit' });
    process.exitCode = r.status ?? 1;
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
}
