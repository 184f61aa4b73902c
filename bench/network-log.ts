// What security-group logging costs, on both backends, in throwaway namespaces:
// - forwarding: iperf3 (one TCP stream) into a port whose group logs ACCEPT — the first packet of
//   each connection — against the same port without a log; runs alternate (ABBA), the median of each;
// - a flood of dropped packets at a port whose log records DROP, at the default rate limit: the CPU
//   share of the agent's logging path (the firewall engine and the NFLOG reader, in this process) and
//   the lines written, against the same reader with the kernel's per-rule limit lifted to 10,000/s
//   (what a reader that limits in user space alone would be handed).
//
//   npm run bench:network-log     (as root)
// Prints `firewall.forward_gbps.logging[.nftables] ours=… baseline=… ratio=…` and
// `firewall.log_flood[.nftables] ours=…%cpu baseline=…%cpu ratio=… lines=… …`.
// BENCH_ONLY=forward,flood runs one part; BENCH_BACKENDS=iptables,nftables (default both);
// BENCH_FORWARD_RUNS (7), BENCH_FORWARD_SECONDS (3), BENCH_FLOOD_PPS (100000), BENCH_FLOOD_SECONDS (10).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { NetworkLog } from '../src/agent/network-log.js';
import { FirewallEngine } from '../src/firewall/engine.js';
import { openBackend } from '../src/firewall/select.js';
import type { SecurityGroupInput, SecurityGroupLog } from '../src/domain/model.js';
import { Topology, type Vm } from '../test/helpers/topology.js';

type Backend = 'iptables' | 'nftables';
const ONLY = process.env.BENCH_ONLY ? new Set(process.env.BENCH_ONLY.split(',')) : null;
const part = (name: string) => !ONLY || ONLY.has(name);
const BACKENDS = (process.env.BENCH_BACKENDS ?? 'iptables,nftables').split(',') as Backend[];
/** The agent's defaults (Neutron's): 100 lines a second, 25 at once. */
const DEFAULT_LIMIT = { rateLimit: 100, burstLimit: 25 };
const LIFTED_LIMIT = { rateLimit: 10_000, burstLimit: 10_000 };
const NFLOG_GROUP = 1913;
const quiet = pino({ level: 'silent' });

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** CPU of this process alone, all its threads (ms): /proc/self/stat utime + stime. */
function ownCpuMs(): number {
  const f = fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  // Clock ticks of 10 ms (USER_HZ on Linux).
  return (Number(f[11]) + Number(f[12])) * 10;
}

/** A host with VMs a (client) and b (server), b's group admitting tcp `port` from anywhere, its
 *  logging rules sending to NFLOG_GROUP under `limit`, and the agent's reader writing to a file. */
async function loggedHost(backend: Backend, port: number, limit: { rateLimit: number; burstLimit: number }) {
  const topo = new Topology();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-bench-netlog-'));
  const file = path.join(dir, 'network.log');
  const dataplane = await openBackend(backend, { netns: topo.host.path, watch: false, log: { group: NFLOG_GROUP, ...limit } });
  const fw = new FirewallEngine(dataplane, { coalesceMs: 1, structureIntervalMs: 0, logging: true });
  const reader = await NetworkLog.start(
    { netns: topo.host.path, prefix: 'sg', group: NFLOG_GROUP, ...DEFAULT_LIMIT, file, logger: quiet },
    () => fw.state,
  );
  const [a, b] = [topo.addVm(1), topo.addVm(2)];
  const egress = [{ id: 'e4', direction: 'egress' as const, ethertype: 'IPv4' as const }];
  const web: SecurityGroupInput = {
    id: 'web',
    rules: [{ id: 'web-tcp', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', portRangeMin: port, portRangeMax: port }, ...egress],
  };
  fw.setGroup(web);
  fw.setGroup({ id: 'client', rules: egress });
  const vmPort = (vm: Vm, groups: string[]) => ({
    id: `port-${vm.name}`,
    host: 'h',
    device: vm.device,
    mac: vm.mac,
    fixedIps: [vm.ip4],
    securityGroups: groups,
  });
  fw.setPort(vmPort(a, ['client']));
  fw.setPort(vmPort(b, ['web']));
  await fw.flush();
  if (!fw.portInKernel(`port-${b.name}`)) throw new Error('the server port is not filtered');
  return {
    topo,
    fw,
    reader,
    a,
    b,
    lines: () => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).length : 0),
    setLogs: async (logs: SecurityGroupLog[]) => {
      fw.setGroupLogs('web', logs);
      await fw.flush();
      if (!fw.portInKernel(`port-${b.name}`)) throw new Error('the server port is not filtered');
    },
    close: async () => {
      await reader.close();
      await fw.close();
      topo.destroy();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Runs a command in a VM's namespace without blocking this process (its reader keeps reading). */
function run(vm: Vm, cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', vm.ns.name, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}: ${err.slice(-500)}`))));
  });
}

async function forwardGbps(backend: Backend): Promise<void> {
  const runs = Number(process.env.BENCH_FORWARD_RUNS ?? 7);
  const secs = process.env.BENCH_FORWARD_SECONDS ?? '3';
  const h = await loggedHost(backend, 5201, DEFAULT_LIMIT);
  try {
    const server = spawn('ip', ['netns', 'exec', h.b.ns.name, 'iperf3', '-s'], { stdio: 'ignore' });
    await new Promise((r) => setTimeout(r, 500));
    const gbps = { on: [] as number[], off: [] as number[] };
    let lines = 0;
    for (let r = 0; r < runs; r++) {
      // Alternating which goes first, so that a drift of the shared machine's load favours neither.
      for (const mode of r % 2 ? (['off', 'on'] as const) : (['on', 'off'] as const)) {
        await h.setLogs(mode === 'on' ? [{ id: 'log-web', projectId: 'bench', event: 'ACCEPT', targetId: null }] : []);
        const before = h.lines();
        const out = await run(h.a, 'iperf3', ['-c', h.b.ip4, '-t', secs, '-J']);
        gbps[mode].push((JSON.parse(out) as { end: { sum_received: { bits_per_second: number } } }).end.sum_received.bits_per_second / 1e9);
        // Let the reader write what the kernel handed it before counting.
        await new Promise((res) => setTimeout(res, 200));
        if (mode === 'on') lines += h.lines() - before;
        else if (h.lines() !== before) throw new Error('lines written while the port had no log');
      }
    }
    server.kill();
    const [on, off] = [median(gbps.on), median(gbps.off)];
    // Each run's logged and unlogged measurements were made back to back: their ratio is spared the
    // shared machine's drift between runs, so the median of those ratios is the figure.
    const ratio = median(gbps.on.map((x, i) => x / gbps.off[i]!));
    const id = `firewall.forward_gbps.logging${backend === 'iptables' ? '' : `.${backend}`}`;
    const target = ratio >= 0.95 ? 'target>=0.95 met' : 'target>=0.95 MISSED';
    const each = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(' ');
    console.log(
      `${id} ours=${on.toFixed(2)}Gbit/s baseline=${off.toFixed(2)}Gbit/s ratio=${ratio.toFixed(2)} ${target} ` +
        `(iperf3, one TCP stream, ${secs} s; ours: the server's group logs ACCEPT, baseline: no log; ` +
        `ratio: median of each run's on/off, ${(on / off).toFixed(2)} as a ratio of medians; ${backend} backend; ` +
        `${lines} ACCEPT lines in ${runs} logged runs, iperf3's control and data connections; ` +
        `runs: on ${each(gbps.on)}, off ${each(gbps.off)})`,
    );
  } finally {
    await h.close();
  }
}

/** UDP datagrams from `vm` to ip:port at `pps` for `seconds`, paced per millisecond; what was sent. */
function udpFlood(vm: Vm, ip: string, port: number, pps: number, seconds: number): Promise<{ sent: number; seconds: number }> {
  const code = `
import socket, time, json
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
pps, secs, sent, t0 = ${pps}, ${seconds}, 0, time.monotonic()
while True:
    now = time.monotonic() - t0
    if now >= secs: break
    due = int(now * pps)
    while sent < due:
        s.sendto(b'x', ('${ip}', ${port})); sent += 1
    time.sleep(0.0005)
print(json.dumps({'sent': sent, 'seconds': time.monotonic() - t0}))
`;
  return run(vm, 'python3', ['-c', code]).then((out) => JSON.parse(out) as { sent: number; seconds: number });
}

async function logFlood(backend: Backend): Promise<void> {
  const pps = Number(process.env.BENCH_FLOOD_PPS ?? 100_000);
  const seconds = Number(process.env.BENCH_FLOOD_SECONDS ?? 10);
  const result: Record<'ours' | 'baseline', { cpu: number; lines: number; packets: number; sent: number; secs: number }> = {} as never;
  for (const [which, limit] of [
    ['ours', DEFAULT_LIMIT],
    ['baseline', LIFTED_LIMIT],
  ] as const) {
    const h = await loggedHost(backend, 7000, limit);
    try {
      await h.setLogs([{ id: 'log-drops', projectId: 'bench', event: 'DROP', targetId: null }]);
      const [lines0, packets0, cpu0, t0] = [h.lines(), h.reader.stats.packets, ownCpuMs(), process.hrtime.bigint()];
      const sent = await udpFlood(h.a, h.b.ip4, 7001, pps, seconds);
      // What the kernel queued during the flood is read, then the window closes.
      await new Promise((r) => setTimeout(r, 500));
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      result[which] = {
        cpu: (ownCpuMs() - cpu0) / 10 / wall,
        lines: h.lines() - lines0,
        packets: h.reader.stats.packets - packets0,
        sent: sent.sent,
        secs: sent.seconds,
      };
    } finally {
      await h.close();
    }
  }
  const { ours, baseline } = result;
  // What the kernel's limit lets through while the flood lasts (as measured by its sender).
  const cap = Math.ceil(DEFAULT_LIMIT.burstLimit + DEFAULT_LIMIT.rateLimit * ours.secs);
  const id = `firewall.log_flood${backend === 'iptables' ? '' : `.${backend}`}`;
  const ratio = ours.cpu / Math.max(baseline.cpu, 0.01);
  const rate = Math.round(ours.sent / ours.secs);
  console.log(
    `${id} ours=${ours.cpu.toFixed(2)}%cpu baseline=${baseline.cpu.toFixed(2)}%cpu ratio=${ratio.toFixed(2)} ` +
      `lines=${ours.lines} (cap ${cap}) delivered=${ours.packets} sent=${ours.sent} in ${ours.secs.toFixed(1)} s (${rate}/s) ` +
      `baseline_lines=${baseline.lines} baseline_delivered=${baseline.packets} baseline_sent=${baseline.sent} ` +
      `(dropped UDP at a port whose log records DROP, rate_limit ${DEFAULT_LIMIT.rateLimit} ` +
      `burst_limit ${DEFAULT_LIMIT.burstLimit}; ${backend} backend; CPU of the engine and NFLOG reader's process over the flood, ` +
      `% of one core; baseline: the kernel's limit lifted to ${LIFTED_LIMIT.rateLimit}/s, the reader's own at the default)`,
  );
}

(async () => {
  for (const backend of BACKENDS) {
    if (part('forward')) await forwardGbps(backend);
    if (part('flood')) await logFlood(backend);
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
