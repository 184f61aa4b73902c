// Storm benchmark: 500 ports created in the default group across 20 hosts.
//   npm run bench:storm      (as root; RabbitMQ is started if needed; namespaces are throwaway)
// Ours: controller + 20 `sg-agent run` processes (per-group routing, compact sync, ipsets).
// Baseline: Neutron's shape before per-group fanout — every agent hears every member update
// (fanout) and fetches `security_group_rules_for_devices` with each remote-group rule expanded into
// one rule per member, applied as per-member iptables rules (bench/baseline-agent.ts).
// Prints storm.bytes, sync.bytes.N, storm.cpu and storm.p99 as `<id> ours=… baseline=… ratio=…`.
// Knobs: STORM_HOSTS, STORM_PORTS, STORM_PACE_MS (default 20, 500, 10); STORM_ONLY=ours skips the
// baseline; STORM_PROF=1 writes a V8 CPU profile of the first agent to /tmp/prof.
import amqp from 'amqplib';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { Controller } from '../src/controller/controller.js';
import { Store } from '../src/controller/store.js';
import { buildSync } from '../src/controller/rpc.js';
import { encode } from '../src/protocol/messages.js';
import type { Port } from '../src/model.js';
import { ensureRabbit } from '../test/helpers/rabbit.js';

const HOSTS = Number(process.env.STORM_HOSTS ?? 20);
const PORTS = Number(process.env.STORM_PORTS ?? 500);
const repo = path.resolve(__dirname, '..');
const CLK_TCK = 100;
const tag = randomBytes(3).toString('hex');

const ip = (i: number) => `10.${60 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
const hostName = (h: number) => `storm-${tag}-${h}`;
function port(i: number): Port {
  return {
    id: `sp-${i}`, host: hostName(i % HOSTS), device: `tap${i}`, mac: `02:00:00:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
    fixedIps: [ip(i)], allowedAddressPairs: [], securityGroups: ['default'], portSecurityEnabled: true,
  };
}
const defaultRules = [
  { id: 'd-in4', direction: 'ingress' as const, ethertype: 'IPv4' as const, remoteGroupId: 'default' },
  { id: 'd-in6', direction: 'ingress' as const, ethertype: 'IPv6' as const, remoteGroupId: 'default' },
  { id: 'd-out4', direction: 'egress' as const, ethertype: 'IPv4' as const },
  { id: 'd-out6', direction: 'egress' as const, ethertype: 'IPv6' as const },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
function p99(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.99 * s.length) - 1)]!;
}
/** CPU seconds of a process itself and of the children it waited for (iptables-restore runs). */
function cpuSplit(pid: number): { self: number; children: number } {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return { self: (Number(fields[11]) + Number(fields[12])) / CLK_TCK, children: (Number(fields[13]) + Number(fields[14])) / CLK_TCK };
}
function cpuSeconds(pid: number): number {
  const c = cpuSplit(pid);
  return c.self + c.children;
}
/** Both storms create ports at the same pace: one every PACE_MS, as a bulk VM boot does. */
const PACE_MS = Number(process.env.STORM_PACE_MS ?? 10);
const pace = () => new Promise((r) => setTimeout(r, PACE_MS));
function line(id: string, ours: number, base: number, unit: (n: number) => string, target = ''): void {
  console.log(`${id} ours=${unit(ours)} baseline=${unit(base)} ratio=${(base / ours).toFixed(1)}${target}`);
}
const kb = (n: number) => `${(n / 1024).toFixed(1)}KiB`;
const sec = (n: number) => `${n.toFixed(3)}s`;

/** Neutron's security_group_rules_for_devices reply for the ports of one host, with `members` in the group. */
function neutronReply(devices: Port[], members: string[]): Buffer {
  return Buffer.from(JSON.stringify({
    devices: devices.map((d) => ({
      device: d.device, id: d.id, mac_address: d.mac, fixed_ips: d.fixedIps, security_groups: d.securityGroups,
      security_group_rules: [
        ...members.map((m) => ({ direction: 'ingress', ethertype: 'IPv4', protocol: null, port_range_min: null, port_range_max: null, source_ip_prefix: `${m}/32`, security_group_id: 'default', remote_group_id: 'default' })),
        { direction: 'egress', ethertype: 'IPv4', security_group_id: 'default' },
        { direction: 'egress', ethertype: 'IPv6', security_group_id: 'default' },
      ],
    })),
  }));
}

async function syncBytes(): Promise<void> {
  for (const n of [100, 500, 1000]) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-bench-store-'));
    const store = await Store.open(dir);
    await store.putGroup('default', true, defaultRules);
    for (let i = 0; i < n; i++) await store.putPort(`sp-${i}`, port(i));
    const ours = buildSync(store, { v: 1, type: 'sync.request', host: hostName(0) }).reduce((s, part) => s + encode(part).length, 0);
    const local = store.portsOnHost(hostName(0));
    const base = neutronReply(local, [...Array(n).keys()].map(ip)).length;
    line(`sync.bytes.${n}`, ours, base, kb);
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function vhost(name: string): Promise<string> {
  spawnSync('rabbitmqctl', ['add_vhost', name], { stdio: 'ignore' });
  spawnSync('rabbitmqctl', ['set_permissions', '-p', name, 'guest', '.*', '.*', '.*'], { stdio: 'ignore' });
  return `amqp://guest:guest@127.0.0.1:5672/${name}`;
}

interface Run { bytes: number[]; cpu: number[]; children: number[]; lag: number[] }

async function ours(): Promise<Run> {
  const url = await vhost(`sgstorm-${tag}`);
  const ctl = await Controller.start({ amqpUrl: url, dataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'sg-storm-')) });
  const procs: { child: ChildProcess; metrics: string; ns: string }[] = [];
  try {
    await ctl.putGroup('default', true, defaultRules);
    for (let h = 0; h < HOSTS; h++) {
      const ns = `sgst-${tag}-${h}`;
      spawnSync('ip', ['netns', 'add', ns]);
      const metrics = `127.0.0.1:${19500 + h}`;
      const child = spawn(process.execPath, [...(h === 0 && process.env.STORM_PROF ? ['--cpu-prof', '--cpu-prof-dir=/tmp/prof'] : []), '--import', 'tsx', path.join(repo, 'src/cli/sg-agent.ts'), 'run'], {
        env: { ...process.env, SG_AGENT_HOST: hostName(h), SG_AMQP_URL: url, SG_NETNS: `/var/run/netns/${ns}`, SG_METRICS_LISTEN: metrics, SG_LOG_LEVEL: 'error', SG_RECONCILE_INTERVAL_MS: '0' },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      procs.push({ child, metrics, ns });
    }
    const status = async (m: string) => (await (await fetch(`http://${m}/status`)).json()) as { connected: boolean; sets: { size: number }[] };
    for (const p of procs) for (;;) { if (await status(p.metrics).then((s) => s.connected, () => false)) break; await new Promise((r) => setTimeout(r, 100)); }
    const metric = async (m: string, name: string) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(await (await fetch(`http://${m}/metrics`)).text())?.[1] ?? 0);
    const bytes0 = await Promise.all(procs.map((p) => metric(p.metrics, 'sg_agent_bytes_received_total')));
    const cpu0 = procs.map((p) => cpuSeconds(p.child.pid!));
    const children0 = procs.map((p) => cpuSplit(p.child.pid!).children);
    for (let i = 0; i < PORTS; i++) {
      await ctl.putPort(`sp-${i}`, port(i));
      await pace();
    }
    await ctl.flush();
    const tLast = Date.now();
    const done: number[] = procs.map(() => 0);
    while (done.some((d) => !d)) {
      await Promise.all(procs.map(async (p, i) => {
        if (done[i]) return;
        const s = await status(p.metrics);
        if (s.sets.some((x) => x.size === PORTS)) done[i] = Date.now();
      }));
      if (Date.now() - tLast > 120_000) throw new Error('storm: agents did not converge in 2 minutes');
      await new Promise((r) => setTimeout(r, 20));
    }
    const bytes = await Promise.all(procs.map((p, i) => metric(p.metrics, 'sg_agent_bytes_received_total').then((b) => b - bytes0[i]!)));
    return {
      bytes,
      cpu: procs.map((p, i) => cpuSeconds(p.child.pid!) - cpu0[i]!),
      children: procs.map((p, i) => cpuSplit(p.child.pid!).children - children0[i]!),
      lag: done.map((d) => Math.max(0, d - tLast) / 1000),
    };
  } finally {
    if (process.env.STORM_PROF) {
      procs[0]?.child.kill('SIGTERM');
      await new Promise((r) => setTimeout(r, 2000));
    }
    for (const p of procs) {
      p.child.kill('SIGKILL');
      spawnSync('ip', ['netns', 'del', p.ns]);
    }
    await ctl.stop();
    spawnSync('rabbitmqctl', ['delete_vhost', `sgstorm-${tag}`], { stdio: 'ignore' });
  }
}

async function baseline(): Promise<Run> {
  const url = await vhost(`sgbase-${tag}`);
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  await ch.assertExchange('base.fanout', 'fanout', { durable: false });
  // Durable: RabbitMQ 4 refuses transient non-exclusive queues (the vhost is deleted afterwards).
  await ch.assertQueue('base.rpc', { durable: true });
  const ports: Port[] = [];
  await ch.consume('base.rpc', (m) => {
    if (!m) return;
    const req = JSON.parse(m.content.toString()) as { host: string };
    const reply = neutronReply(ports.filter((p) => p.host === req.host), ports.map((p) => p.fixedIps[0]!));
    ch.sendToQueue(m.properties.replyTo as string, reply, { correlationId: m.properties.correlationId });
    ch.ack(m);
  });
  const agents: { child: ChildProcess; ns: string; last: { applied: number; bytes: number; at: number } }[] = [];
  try {
    for (let h = 0; h < HOSTS; h++) {
      const ns = `sgsb-${tag}-${h}`;
      spawnSync('ip', ['netns', 'add', ns]);
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(repo, 'bench/baseline-agent.ts')], {
        env: { ...process.env, BASE_HOST: hostName(h), BASE_AMQP_URL: url, BASE_NETNS: ns },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const a = { child, ns, last: { applied: -1, bytes: 0, at: 0 }, ready: false };
      readline.createInterface({ input: child.stdout! }).on('line', (l) => {
        const m = JSON.parse(l) as { ready?: boolean; applied?: number; bytes?: number; at?: number };
        if (m.ready) a.ready = true;
        else a.last = { applied: m.applied!, bytes: m.bytes!, at: m.at! };
      });
      agents.push(a);
    }
    while (agents.some((a) => a.last.applied < 0)) await new Promise((r) => setTimeout(r, 100));
    const bytes0 = agents.map((a) => a.last.bytes);
    const cpu0 = agents.map((a) => cpuSeconds(a.child.pid!));
    const children0 = agents.map((a) => cpuSplit(a.child.pid!).children);
    for (let i = 0; i < PORTS; i++) {
      ports.push(port(i));
      ch.publish('base.fanout', '', Buffer.from(JSON.stringify({ method: 'security_groups_member_updated', args: { security_groups: ['default'] } })));
      await pace();
    }
    const tLast = Date.now();
    // Each agent's ports hold a rule per other member once it has caught up.
    while (agents.some((a) => a.last.applied < PORTS || a.last.at < tLast)) {
      if (Date.now() - tLast > 300_000) throw new Error('baseline: agents did not converge in 5 minutes');
      await new Promise((r) => setTimeout(r, 50));
    }
    return {
      bytes: agents.map((a, i) => a.last.bytes - bytes0[i]!),
      cpu: agents.map((a, i) => cpuSeconds(a.child.pid!) - cpu0[i]!),
      children: agents.map((a, i) => cpuSplit(a.child.pid!).children - children0[i]!),
      lag: agents.map((a) => Math.max(0, a.last.at - tLast) / 1000),
    };
  } finally {
    for (const a of agents) {
      a.child.kill('SIGKILL');
      spawnSync('ip', ['netns', 'del', a.ns]);
    }
    await conn.close();
    spawnSync('rabbitmqctl', ['delete_vhost', `sgbase-${tag}`], { stdio: 'ignore' });
  }
}

(async () => {
  await ensureRabbit();
  await syncBytes();
  const o = await ours();
  if (process.env.STORM_ONLY === 'ours') {
    console.log(`storm.ours bytes=${kb(median(o.bytes))} cpu=${sec(median(o.cpu))} children=${sec(median(o.children))} p99=${sec(p99(o.lag))}`);
    return;
  }
  const b = await baseline();
  line('storm.bytes', median(o.bytes), median(b.bytes), kb, median(b.bytes) / median(o.bytes) >= 50 ? ' target>=50x met' : ' target>=50x MISSED');
  line('storm.cpu', median(o.cpu), median(b.cpu), sec, median(b.cpu) / median(o.cpu) >= 20 ? ' target>=20x met' : ' target>=20x MISSED');
  console.log(`storm.cpu.children ours=${sec(median(o.children))} baseline=${sec(median(b.children))} (iptables tools run by the agents)`);
  line('storm.p99', p99(o.lag), p99(b.lag), sec, p99(o.lag) <= 2 ? ' target<=2s met' : ' target<=2s MISSED');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
