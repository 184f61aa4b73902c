// Firewall benchmark: a default-group host with 20 local ports and N group members, our engine
// (ipsets + per-port chains) against Neutron's pre-ipset rendering (one iptables rule per remote
// member per port, every membership change re-applied with iptables-restore).
//
//   npm run bench:firewall     (as root; runs in a throwaway network namespace)
// Prints `firewall.rules.N ours=… baseline=…` and `firewall.member_change.N ours=… baseline=… ratio=…`.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { FirewallEngine } from '../src/firewall/engine.js';
import type { PortInput, SecurityGroupInput } from '../src/model.js';

const PORTS = 20;
const SIZES = (process.env.BENCH_SIZES ?? '50,300,1000').split(',').map(Number);
const REPS = Number(process.env.BENCH_REPS ?? 9);

const ip = (i: number) => `10.${50 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
const fmt = (ns: number) => (ns >= 1e6 ? `${(ns / 1e6).toFixed(2)}ms` : `${(ns / 1e3).toFixed(1)}us`);
async function time(f: () => Promise<unknown> | unknown): Promise<number> {
  const t = process.hrtime.bigint();
  await f();
  return Number(process.hrtime.bigint() - t);
}

function countRules(ns: string): number {
  let n = 0;
  for (const tool of ['iptables-save', 'ip6tables-save']) {
    const out = execFileSync('ip', ['netns', 'exec', ns, tool, '-t', 'filter'], { encoding: 'utf8' });
    n += out.split('\n').filter((l) => l.startsWith('-A ')).length;
  }
  return n;
}

/** Neutron before ipsets: per port an ingress chain with a rule for every other member's address. */
function baselineScript(members: string[]): string {
  const lines = ['*filter'];
  for (let p = 0; p < PORTS; p++) lines.push(`:nb-i-${p} - [0:0]`);
  for (let p = 0; p < PORTS; p++) {
    const c = `nb-i-${p}`;
    lines.push(`-A ${c} -m state --state RELATED,ESTABLISHED -j RETURN`, `-A ${c} -m state --state INVALID -j DROP`);
    for (const m of members) if (m !== ip(p)) lines.push(`-A ${c} -s ${m}/32 -j RETURN`);
    lines.push(`-A ${c} -j DROP`);
  }
  lines.push('COMMIT', '');
  return lines.join('\n');
}

async function caseN(n: number): Promise<void> {
  const ours = `sgbfw-${randomBytes(3).toString('hex')}`;
  const base = `sgbfb-${randomBytes(3).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', ours]);
  execFileSync('ip', ['netns', 'add', base]);
  try {
    const fw = await FirewallEngine.create({ netns: `/var/run/netns/${ours}`, coalesceMs: 1 });
    const group: SecurityGroupInput = {
      id: 'default',
      stateful: true,
      rules: [
        { id: 'i4', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'default' },
        { id: 'i6', direction: 'ingress', ethertype: 'IPv6', remoteGroupId: 'default' },
        { id: 'e4', direction: 'egress', ethertype: 'IPv4' },
        { id: 'e6', direction: 'egress', ethertype: 'IPv6' },
      ],
    };
    fw.setGroup(group);
    for (let p = 0; p < PORTS; p++) {
      const port: PortInput = {
        id: `port-${p}`, host: 'bench', device: `tap${p}`, mac: `02:00:00:00:01:${p.toString(16).padStart(2, '0')}`,
        fixedIps: [ip(p)], allowedAddressPairs: [], securityGroups: ['default'], portSecurityEnabled: true,
      };
      fw.setPort(port);
    }
    const members = Array.from({ length: n }, (_, i) => ip(i));
    fw.setGroupMembers('default', members);
    await fw.flush();
    const script = baselineScript(members);
    execFileSync('ip', ['netns', 'exec', base, 'iptables-restore', '--noflush'], { input: script });
    console.log(`firewall.rules.${n} ours=${countRules(ours)} baseline=${countRules(base)}`);

    const o: number[] = [];
    const b: number[] = [];
    for (let r = 0; r < REPS; r++) {
      const newcomer = ip(100_000 + r);
      o.push(await time(async () => {
        fw.applyMemberDelta('default', [newcomer], []);
        await fw.flush();
      }));
      const next = baselineScript([...members, newcomer]);
      b.push(await time(() => {
        const res = spawnSync('ip', ['netns', 'exec', base, 'iptables-restore', '--noflush'], { input: next });
        if (res.status !== 0) throw new Error(String(res.stderr));
      }));
    }
    const [mo, mb] = [median(o), median(b)];
    console.log(`firewall.member_change.${n} ours=${fmt(mo)} baseline=${fmt(mb)} ratio=${(mb / mo).toFixed(1)}${n === 1000 ? (mb / mo >= 100 ? ' target>=100x met' : ' target>=100x MISSED') : ''}`);
    await fw.close();
  } finally {
    spawnSync('ip', ['netns', 'del', ours]);
    spawnSync('ip', ['netns', 'del', base]);
  }
}

/** Coalescing window: 500 member deltas arriving 1 ms apart (a VM boot storm as the agent sees it).
 *  Prints how many applies each window needed and the lag from the last delta to the kernel. */
async function coalescing(): Promise<void> {
  for (const windowMs of [0, 5, 20, 50]) {
    const ns = `sgbfc-${randomBytes(3).toString('hex')}`;
    execFileSync('ip', ['netns', 'add', ns]);
    try {
      const fw = await FirewallEngine.create({ netns: `/var/run/netns/${ns}`, coalesceMs: windowMs });
      fw.setGroup({ id: 'g', stateful: true, rules: [{ id: 'i', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'g' }] });
      for (let p = 0; p < PORTS; p++) {
        fw.setPort({ id: `p${p}`, host: 'b', device: `tap${p}`, mac: `02:00:00:00:02:${p.toString(16).padStart(2, '0')}`, fixedIps: [ip(p)], allowedAddressPairs: [], securityGroups: ['g'], portSecurityEnabled: true });
      }
      fw.setGroupMembers('g', Array.from({ length: PORTS }, (_, i) => ip(i)));
      await fw.flush();
      const before = fw.stats.applies;
      for (let i = 0; i < 500; i++) {
        fw.applyMemberDelta('g', [ip(200_000 + i)], []);
        await new Promise((r) => setTimeout(r, 1));
      }
      const t = process.hrtime.bigint();
      await fw.flush();
      const lag = Number(process.hrtime.bigint() - t);
      console.log(`firewall.coalesce.${windowMs}ms applies=${fw.stats.applies - before} set_ops=${fw.stats.setDeltas} lag_after_last=${fmt(lag)}`);
      await fw.close();
    } finally {
      spawnSync('ip', ['netns', 'del', ns]);
    }
  }
}

/** CPU of this process and of the tools it ran and reaped (ms): /proc/self/stat utime+stime+cutime+cstime. */
function cpuMs(): number {
  const f = require('node:fs').readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  const ticks = [11, 12, 13, 14].reduce((s, i) => s + Number(f[i]), 0);
  return (ticks * 1000) / 100;
}

/** Drift checks on a host with 300 bound ports (300 members in the default group): the quick check
 *  the agent makes every 5 s (set member counts, our chains as the tools print them) against the full
 *  one (every set read). Wall time and CPU (ours plus the tools') per check, and a repair's latency. */
async function reconcileCost(): Promise<void> {
  const ns = `sgbfr-${randomBytes(3).toString('hex')}`;
  execFileSync('ip', ['netns', 'add', ns]);
  const N = 300;
  try {
    const fw = await FirewallEngine.create({ netns: `/var/run/netns/${ns}`, coalesceMs: 1 });
    fw.setGroup({ id: 'default', rules: [{ id: 'i4', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'default' }, { id: 'e4', direction: 'egress', ethertype: 'IPv4' }] });
    for (let p = 0; p < N; p++) {
      fw.setPort({ id: `p${p}`, host: 'b', device: `tap${p}`, mac: `02:00:00:00:${(p >> 8).toString(16).padStart(2, '0')}:${(p & 255).toString(16).padStart(2, '0')}`, fixedIps: [ip(p)], securityGroups: ['default'] });
    }
    fw.setGroupMembers('default', Array.from({ length: N }, (_, i) => ip(i)));
    await fw.flush();
    const measure = async (full: boolean) => {
      const wall: number[] = [];
      const cpu: number[] = [];
      for (let r = 0; r < REPS; r++) {
        const c0 = cpuMs();
        wall.push(await time(() => fw.reconcile({ full })));
        cpu.push(cpuMs() - c0);
      }
      return { wall: median(wall), cpu: median(cpu) };
    };
    const quick = await measure(false);
    const full = await measure(true);
    console.log(`firewall.reconcile.${N} ours=${fmt(quick.wall)} baseline=${fmt(full.wall)} ratio=${(full.wall / quick.wall).toFixed(1)} cpu_ours=${quick.cpu.toFixed(0)}ms cpu_baseline=${full.cpu.toFixed(0)}ms (quick check vs full read; every 5 s: ${((quick.cpu / 5000) * 100).toFixed(2)}% of a core)`);
    // A member deleted by hand, found and put back by the next quick check.
    const set = fw.names.groupSet('default', 4);
    execFileSync('ip', ['netns', 'exec', ns, 'ipset', 'del', set, ip(7)]);
    const rep = await fw.reconcile({ full: false });
    console.log(`firewall.reconcile.repair setsRepaired=${rep.setsRepaired} (a quick check finds a deleted member; worst-case latency = the 5 s interval)`);
    await fw.close();
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
}

(async () => {
  for (const n of SIZES) await caseN(n);
  if (!process.env.BENCH_SKIP_RECONCILE) await reconcileCost();
  if (!process.env.BENCH_SKIP_COALESCE) await coalescing();
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
