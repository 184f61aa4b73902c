// What crossing the addon boundary costs for nf_tables transactions: the operations as JSON text
// (JSON.stringify, then serde_json in Rust) against the JS objects read property by property by
// napi (serde through napi's values). Real transactions of the nftables backend are recorded: the
// first apply of a host with 300 ports, one port bound after it, and one member change.
//
//   node --import tsx bench/nft-boundary.ts      (root: a throwaway namespace)
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { native } from '../src/addon/native.js';
import { recordingNftEngine } from './fixtures.js';

const REPS = Number(process.env.BENCH_REPS ?? 200);
const ip = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function time(f: () => void): number {
  const t0 = process.hrtime.bigint();
  f();
  return Number(process.hrtime.bigint() - t0) / 1e3;
}

(async () => {
  const ns = `sgbnb-${randomBytes(3).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    const { fw, recorded } = await recordingNftEngine(`/var/run/netns/${ns}`);
    fw.setGroup({
      id: 'default',
      rules: [
        { id: 'i4', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'default' },
        { id: 'e4', direction: 'egress', ethertype: 'IPv4' },
        { id: 'e6', direction: 'egress', ethertype: 'IPv6' },
      ],
    });
    const port = (p: number) => ({
      id: `p${p}`,
      host: 'b',
      device: `tap${p}`,
      mac: `02:00:00:00:${(p >> 8).toString(16).padStart(2, '0')}:${(p & 255).toString(16).padStart(2, '0')}`,
      fixedIps: [ip(p), `fd00::${p.toString(16)}`],
      securityGroups: ['default'],
    });
    for (let p = 0; p < 300; p++) fw.setPort(port(p));
    fw.setGroupMembers(
      'default',
      Array.from({ length: 300 }, (_, i) => ip(i)),
    );
    await fw.flush();
    const first = recorded.at(-1)!;
    fw.setPort(port(300));
    await fw.flush();
    const bind = recorded.at(-1)!;
    fw.applyMemberDelta('default', [ip(1000)], []);
    await fw.flush();
    const member = recorded.at(-1)!;
    await fw.close();
    for (const [name, ops] of [
      ['first300', first],
      ['bind', bind],
      ['member', member],
    ] as const) {
      const reps = name === 'first300' ? Math.max(5, REPS / 20) : REPS;
      const json: number[] = [];
      const objects: number[] = [];
      for (let r = 0; r < reps; r++) {
        json.push(time(() => native.nftablesDecodeJson(JSON.stringify(ops))));
        objects.push(time(() => native.nftablesDecodeObjects(ops)));
      }
      const [j, o] = [median(json), median(objects)];
      console.log(
        `nftables.boundary.${name} ours=${j.toFixed(1)}us baseline=${o.toFixed(1)}us ratio=${(o / j).toFixed(2)} (ops=${ops.length}, ${JSON.stringify(ops).length} bytes of JSON; ours: JSON text and serde_json, baseline: napi reading the objects)`,
      );
    }
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
})().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
