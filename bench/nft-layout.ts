// What binding one port costs the nftables backend, against what it would cost if a binding were
// only elements of shared sets and maps (the "fixed-policy" layout issue 23 names), on a host that
// already has N ports (bridged mode, each port in one group whose rules name the group itself):
//   node --import tsx bench/nft-layout.ts      (root: a throwaway namespace per N)
// Lines, per N (BENCH_PORTS, default 25,150,300), CPU of this process (every thread: the addon's
// worker and the kernel's work in its system calls), median of BENCH_REPS binds (default 40), each
// undone before the next (each line after the first: baseline = that first line, the whole binding):
//   nft.layout.bind          the backend's binding as it is: the engine's plan and render, the
//                            addon, and the kernel's transaction (its 5 chains, their rules, 4
//                            dispatch elements);
//   nft.layout.bind.kernel   the same transaction replayed as recorded: the addon and the kernel;
//   nft.layout.elems.jump    4 dispatch elements alone (verdict-map elements jumping to chains that
//                            exist, as a port sharing another port's policy chains would need);
//   nft.layout.elems.data    4 elements of a set that holds data, no verdicts (a member set).
// The kernel validates the whole table at the commit of a transaction that adds a rule or an
// element jumping to a chain, walking every chain the base chains reach: what grows with N.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Op } from '../src/addon/nftables.js';
import { dispatchElems, elemOps } from '../src/firewall/nftables/dispatch.js';
import { at } from '../src/firewall/nftables/tables.js';
import { benchPort, defaultGroup, recordingNftEngine } from './fixtures.js';

const SIZES = (process.env.BENCH_PORTS ?? '25,150,300').split(',').map(Number);
const REPS = Number(process.env.BENCH_REPS ?? 40);
const ip = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/** CPU microseconds of this process (all threads) spent in `f`. */
async function cpuOf(f: () => Promise<unknown>): Promise<number> {
  const c0 = process.cpuUsage();
  await f();
  const c = process.cpuUsage(c0);
  return c.user + c.system;
}

const port = (p: number) => benchPort(p, [ip(p), `fd00::${p.toString(16)}`]);

async function measure(n: number): Promise<void> {
  const ns = `sgbnl-${randomBytes(3).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    const { dp, fw, recorded } = await recordingNftEngine(`/var/run/netns/${ns}`, { mode: 'bridged' });
    fw.setGroup(defaultGroup);
    for (let p = 0; p < n; p++) fw.setPort(port(p));
    fw.setGroupMembers(
      'default',
      Array.from({ length: n }, (_, i) => ip(i)),
    );
    await fw.flush();

    // The backend's binding, engine and all; the same port bound and removed each time.
    const bind: number[] = [];
    let bindOps: Op[] = [];
    let unbindOps: Op[] = [];
    for (let r = 0; r < REPS; r++) {
      fw.setPort(port(n));
      bind.push(await cpuOf(() => fw.flush()));
      bindOps = recorded.at(-1)!;
      fw.removePort(`p${n}`);
      await fw.flush();
      unbindOps = recorded.at(-1)!;
    }
    // The same transactions replayed: the addon and the kernel alone.
    const kernel: number[] = [];
    for (let r = 0; r < REPS; r++) {
      kernel.push(await cpuOf(() => dp.client.transact(bindOps)));
      await dp.client.transact(unbindOps);
    }
    // A port with port 0's policy: its dispatch elements only (new keys), jumping to port 0's chains.
    const layout = { names: dp.names, mode: dp.mode, unknownDevicePrefixes: [], zoneBridges: [] };
    const shared = dispatchElems(layout, { portId: 'p0', device: 'tapshared' }, 60000);
    const jump: number[] = [];
    for (let r = 0; r < REPS; r++) {
      jump.push(await cpuOf(() => dp.client.transact(elemOps(layout, shared, []))));
      await dp.client.transact(elemOps(layout, [], shared));
    }
    // Elements without verdicts: four addresses of a member set.
    const where = at(layout, 'inet');
    const set = dp.names.groupSet('default', 4);
    const extra = [0, 1, 2, 3].map((i) => ip(200_000 + i));
    const data: number[] = [];
    for (let r = 0; r < REPS; r++) {
      data.push(await cpuOf(() => dp.client.transact([{ op: 'members', ...where, set, add: extra }])));
      await dp.client.transact([{ op: 'members', ...where, set, del: extra }]);
    }
    await fw.close();
    const us = (x: number) => `${x.toFixed(0)}us`;
    const whole = median(bind);
    const note = `ports=${n} (CPU of this process, median of ${REPS}; baseline: the whole binding as it is)`;
    console.log(`nft.layout.bind ours=${us(whole)} ops=${bindOps.length} ports=${n} (CPU of this process, median of ${REPS})`);
    // Each part, or each other layout's binding, against the whole binding as it is.
    const against = (id: string, x: number, ops: number) =>
      console.log(`nft.layout.${id} ours=${us(x)} baseline=${us(whole)} ratio=${(whole / x).toFixed(1)} ops=${ops} ${note}`);
    against('bind.kernel', median(kernel), bindOps.length);
    against('elems.jump', median(jump), elemOps(layout, shared, []).length);
    against('elems.data', median(data), 1);
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
}

(async () => {
  for (const n of SIZES) await measure(n);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
