// Storm benchmark: 500 ports created in the default group across 20 hosts.
//   npm run bench:storm      (as root; on a RabbitMQ node of its own; namespaces are throwaway)
// Ours: controller + 20 `sg-agent run` processes (per-group routing, compact sync, ipsets).
// Baseline: Neutron's shape before per-group fanout — every agent hears every member update
// (fanout) and fetches `security_group_rules_for_devices` with each remote-group rule expanded into
// one rule per member, applied as per-member iptables rules. Two agents of that shape are run:
// Neutron's own agent-side code from PyPI (bench/neutron-agent.py, venv by bench/neutron-venv.sh),
// which the targets are judged against, and a JavaScript emulation (bench/baseline-agent.ts), a lower
// bound kept for the record and used alone when the venv cannot be made.
// Prints storm.bytes, sync.bytes.N, storm.cpu and storm.p99 as `<id> ours=… baseline=… ratio=…`, and
// storm.cpu.nftables / storm.p99.nftables for our agents on the nftables backend (STORM_DATAPLANE=
// iptables or nftables runs ours on that one alone).
// Knobs: STORM_HOSTS, STORM_PORTS, STORM_PACE_MS (default 20, 500, 10); STORM_ONLY=ours skips the
// baselines, STORM_ONLY=neutron runs only Neutron's; STORM_NEUTRON=0 skips Neutron's;
// STORM_RELAY_MAX_MS sets the relay's widest drain interval (agents take SG_* from the environment).
// Looking into one agent (the first): STORM_PROF=1 writes its V8 CPU profile to /tmp/prof,
// STORM_AGENT0_FLAGS adds Node flags to it (`--perf-basic-prof` for `perf record`, `--trace-gc`),
// STORM_THREADS=1 prints the CPU of each of its threads during the storm.
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
import { generateSigningKey, MessageSigner } from '../src/protocol/signing.js';
import type { Port } from '../src/domain/model.js';
import { benchBroker } from './broker.js';

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
/** Per-thread CPU seconds (schedstat, ns) of a process: where an agent's own CPU goes. */
function threadCpu(pid: number): Map<string, number> {
  const m = new Map<string, number>();
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    const comm = fs.readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim();
    m.set(`${t}:${comm}`, Number(fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]) / 1e9);
  }
  return m;
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

/** A device of Neutron's security_group_rules_for_devices reply, with `members` in the default group. */
function legacyDevice(d: Port, members: string[]): { device: string } & Record<string, unknown> {
  return {
    device: d.device, id: d.id, mac_address: d.mac, fixed_ips: d.fixedIps, security_groups: d.securityGroups,
    security_group_source_groups: d.securityGroups, network_id: 'net-storm', device_owner: 'compute:nova', allowed_address_pairs: [],
    security_group_rules: [
      ...members.map((m) => ({ direction: 'ingress', ethertype: 'IPv4', protocol: null, port_range_min: null, port_range_max: null, source_ip_prefix: `${m}/32`, security_group_id: 'default', remote_group_id: 'default' })),
      { direction: 'egress', ethertype: 'IPv4', security_group_id: 'default' },
      { direction: 'egress', ethertype: 'IPv6', security_group_id: 'default' },
    ],
  };
}

/** The whole reply for the ports of one host. */
function neutronReply(devices: Port[], members: string[]): Buffer {
  return Buffer.from(JSON.stringify({ devices: devices.map((d) => legacyDevice(d, members)) }));
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
  return (await benchBroker()).vhost(name);
}

interface Run { bytes: number[]; cpu: number[]; children: number[]; lag: number[]; restores?: number[]; applies?: number[]; messages?: number[] }

async function ours(dataplane: 'iptables' | 'nftables'): Promise<Run> {
  const url = await vhost(`sgstorm-${tag}`);
  // Signed as in a deployment: the controller holds the private key, every agent the public one.
  const keys = generateSigningKey(fs.mkdtempSync(path.join(os.tmpdir(), 'sg-storm-keys-')));
  const ctl = await Controller.start({
    amqpUrl: url,
    signer: MessageSigner.fromFile(keys.privateKeyFile),
    dataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'sg-storm-')),
    ...(process.env.STORM_RELAY_MAX_MS ? { relayIntervalMs: { max: Number(process.env.STORM_RELAY_MAX_MS) } } : {}),
  });
  const procs: { child: ChildProcess; metrics: string; ns: string }[] = [];
  try {
    await ctl.brokerReady;
    await ctl.putGroup('default', true, defaultRules);
    for (let h = 0; h < HOSTS; h++) {
      const ns = `sgst-${tag}-${h}`;
      spawnSync('ip', ['netns', 'add', ns]);
      const metrics = `127.0.0.1:${19500 + h}`;
      const child = spawn(process.execPath, [...(h === 0 && process.env.STORM_PROF ? ['--cpu-prof', '--cpu-prof-interval', '200', '--cpu-prof-dir=/tmp/prof'] : []), ...(h === 0 && process.env.STORM_AGENT0_FLAGS ? process.env.STORM_AGENT0_FLAGS.split(' ') : []), '--import', 'tsx', path.join(repo, 'src/cli/sg-agent.ts'), 'run'], {
        env: { ...process.env, SG_AGENT_HOST: hostName(h), SG_AMQP_URL: url, SG_TRUSTED_KEYS: keys.publicKeyFile, SG_NETNS: `/var/run/netns/${ns}`, SG_METRICS_LISTEN: metrics, SG_LOG_LEVEL: 'error', SG_RECONCILE_INTERVAL_MS: '0', SG_DATAPLANE: dataplane },
        stdio: ['ignore', h === 0 && process.env.STORM_AGENT0_FLAGS ? 'inherit' : 'ignore', 'inherit'],
      });
      procs.push({ child, metrics, ns });
    }
    const status = async (m: string) => (await (await fetch(`http://${m}/status`)).json()) as { connected: boolean; sets: { size: number }[]; engine: { restores: number; applies: number } };
    for (const p of procs) for (;;) { if (await status(p.metrics).then((s) => s.connected, () => false)) break; await new Promise((r) => setTimeout(r, 100)); }
    // Start-up done before the storm: the first apply (nftables: its tables) and the sweep after it
    // (which also asks the other backend for objects to remove) are not the storm's work.
    for (const p of procs) for (;;) { if (await status(p.metrics).then((s) => s.engine.applies >= 1, () => false)) break; await new Promise((r) => setTimeout(r, 100)); }
    await new Promise((r) => setTimeout(r, 1000));
    const metric = async (m: string, name: string) => Number(new RegExp(`^${name} (\\d+)`, 'm').exec(await (await fetch(`http://${m}/metrics`)).text())?.[1] ?? 0);
    const bytes0 = await Promise.all(procs.map((p) => metric(p.metrics, 'sg_agent_bytes_received_total')));
    const messagesOf = async (m: string) => [...(await (await fetch(`http://${m}/metrics`)).text()).matchAll(/^sg_agent_messages_total\{type="([^"]+)"\} (\d+)/gm)].reduce((a, x) => a + Number(x[2]), 0);
    const messages0 = await Promise.all(procs.map((p) => messagesOf(p.metrics)));
    const engine0 = await Promise.all(procs.map(async (p) => (await status(p.metrics)).engine));
    const cpu0 = procs.map((p) => cpuSeconds(p.child.pid!));
    const children0 = procs.map((p) => cpuSplit(p.child.pid!).children);
    const threads0 = threadCpu(procs[0]!.child.pid!);
    for (let i = 0; i < PORTS; i++) {
      await ctl.putPort(`sp-${i}`, port(i));
      await pace();
    }
    await ctl.flush();
    const tLast = Date.now();
    const done: number[] = procs.map(() => 0);
    const cpuDone: { self: number; children: number }[] = [];
    while (done.some((d) => !d)) {
      await Promise.all(procs.map(async (p, i) => {
        if (done[i]) return;
        const s = await status(p.metrics);
        if (s.sets.some((x) => x.size === PORTS)) {
          done[i] = Date.now();
          // Read as soon as it converged: the polls and metric reads that follow are the benchmark's.
          cpuDone[i] = cpuSplit(p.child.pid!);
        }
      }));
      if (Date.now() - tLast > 120_000) throw new Error('storm: agents did not converge in 2 minutes');
      await new Promise((r) => setTimeout(r, 20));
    }
    const bytes = await Promise.all(procs.map((p, i) => metric(p.metrics, 'sg_agent_bytes_received_total').then((b) => b - bytes0[i]!)));
    const messages = await Promise.all(procs.map((p, i) => messagesOf(p.metrics).then((n) => n - messages0[i]!)));
    if (process.env.STORM_THREADS) {
      const t1 = threadCpu(procs[0]!.child.pid!);
      for (const [tid, v] of t1) console.log(`thread ${tid} cpu=${(v - (threads0.get(tid) ?? 0)).toFixed(3)}s${threads0.has(tid) ? '' : ' (new)'}`);
    }
    const engine1 = await Promise.all(procs.map(async (p) => (await status(p.metrics)).engine));
    return {
      restores: engine1.map((e, i) => e.restores - engine0[i]!.restores),
      applies: engine1.map((e, i) => e.applies - engine0[i]!.applies),
      messages,
      bytes,
      cpu: procs.map((_, i) => cpuDone[i]!.self + cpuDone[i]!.children - cpu0[i]!),
      children: procs.map((_, i) => cpuDone[i]!.children - children0[i]!),
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
    fs.rmSync(path.dirname(keys.privateKeyFile), { recursive: true, force: true });
    (await benchBroker()).dropVhost(`sgstorm-${tag}`);
  }
}

/** The baseline agent: Neutron's own code (bench/neutron-agent.py) when its venv could be made, and
 *  the JavaScript emulation of its shape (bench/baseline-agent.ts) for the record. */
type BaselineAgent = { kind: 'neutron'; python: string } | { kind: 'emulated' };

/** The baseline's server side, in the wire shape its agent speaks: one JSON message per call and cast
 *  for the emulation; oslo.messaging's envelope, exchanges and reply queues for Neutron's agent. */
interface BaselineServer {
  /** A port was created: every agent hears about it (fanout). */
  announce(): void;
  /** Bytes sent to the agents of a host so far, for those that do not count them themselves. */
  bytesTo(host: string): number;
}

async function baselineServer(ch: amqp.Channel, kind: BaselineAgent['kind'], ports: Port[]): Promise<BaselineServer> {
  const members = () => ports.map((p) => p.fixedIps[0]!);
  if (kind === 'emulated') {
    await ch.assertExchange('base.fanout', 'fanout', { durable: false });
    // Durable: RabbitMQ 4 refuses transient non-exclusive queues (the vhost is deleted afterwards).
    await ch.assertQueue('base.rpc', { durable: true });
    await ch.consume('base.rpc', (m) => {
      if (!m) return;
      const req = JSON.parse(m.content.toString()) as { host: string };
      const reply = neutronReply(ports.filter((p) => p.host === req.host), members());
      ch.sendToQueue(m.properties.replyTo as string, reply, { correlationId: m.properties.correlationId as string });
      ch.ack(m);
    });
    const cast = Buffer.from(JSON.stringify({ method: 'security_groups_member_updated', args: { security_groups: ['default'] } }));
    return { announce: () => ch.publish('base.fanout', '', cast), bytesTo: () => 0 };
  }
  // oslo.messaging over RabbitMQ: a body {"oslo.version": "2.0", "oslo.message": "<JSON>"}; calls go to
  // the control exchange ("neutron", topic) by topic, replies to the caller's reply queue through the
  // default exchange, casts to "<topic>_fanout". Declared as oslo.messaging declares them.
  const envelope = (msg: unknown) => Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(msg) }));
  const opts = { contentType: 'application/json', contentEncoding: 'utf-8' };
  const sent = new Map<string, number>();
  const count = (host: string, n: number) => sent.set(host, (sent.get(host) ?? 0) + n);
  await ch.assertExchange('neutron', 'topic', { durable: false, autoDelete: false });
  await ch.assertQueue('q-plugin', { durable: true });
  await ch.bindQueue('q-plugin', 'neutron', 'q-plugin');
  const fanout = 'q-agent-notifier-security_group-update_fanout';
  await ch.assertExchange(fanout, 'fanout', { durable: false, autoDelete: true });
  await ch.consume('q-plugin', (m) => {
    if (!m) return;
    const call = JSON.parse((JSON.parse(m.content.toString()) as { 'oslo.message': string })['oslo.message']) as {
      method: string; args: { host?: string; devices?: string[] }; _msg_id: string; _reply_q: string;
    };
    let result: unknown;
    let host = '';
    if (call.method === 'devices_on_host') {
      host = call.args.host!;
      result = ports.filter((p) => p.host === host).map((p) => p.device);
    } else {
      const wanted = new Set(call.args.devices);
      const devices = ports.filter((p) => wanted.has(p.device));
      host = devices[0]?.host ?? '';
      // Neutron's RPC returns the devices keyed by the ids asked for.
      const all = members();
      result = Object.fromEntries(devices.map((d) => [d.device, legacyDevice(d, all)]));
    }
    const body = envelope({ result, failure: null, ending: true, _msg_id: call._msg_id });
    count(host, body.length);
    ch.publish('', call._reply_q, body, opts);
    ch.ack(m);
  });
  return {
    announce: () => {
      const body = envelope({
        method: 'security_groups_member_updated', args: { security_groups: ['default'] }, namespace: null, version: '1.1',
        _unique_id: randomBytes(16).toString('hex'), _context_is_admin: true,
      });
      for (let h = 0; h < HOSTS; h++) count(hostName(h), body.length);
      ch.publish(fanout, '', body, opts);
    },
    bytesTo: (host) => sent.get(host) ?? 0,
  };
}

async function baseline(agent: BaselineAgent): Promise<Run> {
  const url = await vhost(`sgbase-${tag}`);
  const conn = await amqp.connect(url);
  const ch = await conn.createChannel();
  const ports: Port[] = [];
  const server = await baselineServer(ch, agent.kind, ports);
  const agents: { child: ChildProcess; ns: string; last: { applied: number; bytes: number; at: number; cpu: { self: number; children: number } } }[] = [];
  // The Neutron agents' lock files (bench/neutron-agent.py), removed with the run.
  const locks = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-storm-locks-'));
  try {
    for (let h = 0; h < HOSTS; h++) {
      const ns = `sgsb-${tag}-${h}`;
      spawnSync('ip', ['netns', 'add', ns]);
      const argv = agent.kind === 'neutron' ? [agent.python, path.join(repo, 'bench/neutron-agent.py')] : [process.execPath, '--import', 'tsx', path.join(repo, 'bench/baseline-agent.ts')];
      const child = spawn(argv[0]!, argv.slice(1), {
        env: { ...process.env, BASE_HOST: hostName(h), BASE_AMQP_URL: url, BASE_NETNS: ns, BASE_LOCK_DIR: locks },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const a = { child, ns, last: { applied: -1, bytes: 0, at: 0, cpu: { self: 0, children: 0 } }, ready: false };
      readline.createInterface({ input: child.stdout }).on('line', (l) => {
        const m = JSON.parse(l) as { ready?: boolean; applied?: number; bytes?: number; at?: number };
        if (m.ready) a.ready = true;
        // CPU read with each line: the line that shows convergence marks the end of the storm's work.
        else a.last = { applied: m.applied!, bytes: m.bytes ?? 0, at: m.at!, cpu: cpuSplit(child.pid!) };
      });
      agents.push(a);
    }
    while (agents.some((a) => a.last.applied < 0)) await new Promise((r) => setTimeout(r, 100));
    const bytesOf = (i: number) => (agent.kind === 'neutron' ? server.bytesTo(hostName(i)) : agents[i]!.last.bytes);
    const bytes0 = agents.map((_, i) => bytesOf(i));
    const cpu0 = agents.map((a) => cpuSeconds(a.child.pid!));
    const children0 = agents.map((a) => cpuSplit(a.child.pid!).children);
    for (let i = 0; i < PORTS; i++) {
      ports.push(port(i));
      server.announce();
      await pace();
    }
    const tLast = Date.now();
    // Each agent's ports hold a rule per other member once it has caught up.
    while (agents.some((a) => a.last.applied < PORTS || a.last.at < tLast)) {
      if (Date.now() - tLast > 300_000) throw new Error('baseline: agents did not converge in 5 minutes');
      await new Promise((r) => setTimeout(r, 50));
    }
    return {
      bytes: agents.map((_, i) => bytesOf(i) - bytes0[i]!),
      cpu: agents.map((a, i) => a.last.cpu.self + a.last.cpu.children - cpu0[i]!),
      children: agents.map((a, i) => a.last.cpu.children - children0[i]!),
      lag: agents.map((a) => Math.max(0, a.last.at - tLast) / 1000),
    };
  } finally {
    for (const a of agents) {
      a.child.kill('SIGKILL');
      spawnSync('ip', ['netns', 'del', a.ns]);
    }
    fs.rmSync(locks, { recursive: true, force: true });
    await conn.close();
    (await benchBroker()).dropVhost(`sgbase-${tag}`);
  }
}

/** The venv's python with Neutron installed, or null when it cannot be made (no PyPI, no python3). */
function neutronPython(): string | null {
  if (process.env.STORM_NEUTRON === '0') return null;
  const r = spawnSync('bash', [path.join(repo, 'bench/neutron-venv.sh')], { stdio: ['ignore', 'pipe', 'inherit'] });
  return r.status === 0 ? r.stdout.toString().trim() : null;
}

(async () => {
  await benchBroker();
  await syncBytes();
  if (process.env.STORM_ONLY === 'neutron') {
    const python = neutronPython();
    if (!python) throw new Error('storm: bench/neutron-venv.sh failed');
    const n = await baseline({ kind: 'neutron', python });
    console.log(`storm.neutron bytes=${kb(median(n.bytes))} cpu=${sec(median(n.cpu))} children=${sec(median(n.children))} p99=${sec(p99(n.lag))}`);
    return;
  }
  const which_ours = process.env.STORM_DATAPLANE;
  const o = which_ours === 'nftables' ? undefined : await ours('iptables');
  const on = which_ours === 'iptables' ? undefined : await ours('nftables');
  if (process.env.STORM_ONLY === 'ours') {
    for (const [dp, r] of [['iptables', o], ['nftables', on]] as const) {
      if (r) console.log(`storm.ours.${dp} bytes=${kb(median(r.bytes))} cpu=${sec(median(r.cpu))} children=${sec(median(r.children))} p99=${sec(p99(r.lag))} restores=${median(r.restores!)} applies=${median(r.applies!)} messages=${median(r.messages!)}`);
    }
    return;
  }
  if (!o || !on) throw new Error('storm: the comparison needs both of our runs (unset STORM_DATAPLANE)');
  const python = neutronPython();
  const e = await baseline({ kind: 'emulated' });
  const b = python ? await baseline({ kind: 'neutron', python }) : e;
  if (!python) console.log('storm: Neutron baseline unavailable (bench/neutron-venv.sh failed); the emulation stands in');
  const which = python ? 'neutron' : 'emulated';
  line('storm.bytes', median(o.bytes), median(b.bytes), kb, median(b.bytes) / median(o.bytes) >= 50 ? ' target>=50x met' : ' target>=50x MISSED');
  line('storm.cpu', median(o.cpu), median(b.cpu), sec, `${median(b.cpu) / median(o.cpu) >= 20 ? ' target>=20x met' : ' target>=20x MISSED'} (baseline: ${which})`);
  console.log(`storm.cpu.children ours=${sec(median(o.children))} baseline=${sec(median(b.children))} (iptables tools run by the agents)`);
  line('storm.p99', p99(o.lag), p99(b.lag), sec, `${p99(o.lag) <= 2 ? ' target<=2s met' : ' target<=2s MISSED'} (baseline: ${which})`);
  line('storm.cpu.nftables', median(on.cpu), median(b.cpu), sec, `${median(b.cpu) / median(on.cpu) >= 50 ? ' target>=50x met' : ' target>=50x MISSED'} (dataplane=nftables; baseline: ${which})`);
  console.log(`storm.cpu.nftables.children ours=${sec(median(on.children))} baseline=${sec(median(b.children))} restores=${median(on.restores!)} applies=${median(on.applies!)} (processes run by the agents; nf_tables transactions instead of restores)`);
  line('storm.p99.nftables', p99(on.lag), p99(b.lag), sec, `${p99(on.lag) <= 0.5 ? ' target<=0.5s met' : ' target<=0.5s MISSED'} (dataplane=nftables, no structural pacing; baseline: ${which})`);
  if (python) {
    line('storm.cpu.emulated', median(o.cpu), median(e.cpu), sec, ' (the JavaScript emulation of the baseline, a lower bound)');
    console.log(`storm.cpu.emulated.children ours=${sec(median(o.children))} baseline=${sec(median(e.children))}`);
    line('storm.p99.emulated', p99(o.lag), p99(e.lag), sec);
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
