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
import { Store } from '../src/controller/store.js';
import { buildSync } from '../src/controller/rpc.js';
import { encode } from '../src/protocol/messages.js';
import type { Port } from '../src/domain/model.js';
import { benchBroker } from './broker.js';
import {
  cpuSeconds,
  cpuSplit,
  defaultRules,
  HOSTS,
  hostName,
  ip,
  kb,
  line,
  median,
  ours,
  p99,
  pace,
  port,
  PORTS,
  repo,
  sec,
  tag,
  vhost,
  type Run,
} from './storm-run.js';

/** A device of Neutron's security_group_rules_for_devices reply, with `members` in the default group. */
function legacyDevice(d: Port, members: string[]): { device: string } & Record<string, unknown> {
  return {
    device: d.device,
    id: d.id,
    mac_address: d.mac,
    fixed_ips: d.fixedIps,
    security_groups: d.securityGroups,
    security_group_source_groups: d.securityGroups,
    network_id: 'net-storm',
    device_owner: 'compute:nova',
    allowed_address_pairs: [],
    security_group_rules: [
      ...members.map((m) => ({
        direction: 'ingress',
        ethertype: 'IPv4',
        protocol: null,
        port_range_min: null,
        port_range_max: null,
        source_ip_prefix: `${m}/32`,
        security_group_id: 'default',
        remote_group_id: 'default',
      })),
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
      const reply = neutronReply(
        ports.filter((p) => p.host === req.host),
        members(),
      );
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
      method: string;
      args: { host?: string; devices?: string[] };
      _msg_id: string;
      _reply_q: string;
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
        method: 'security_groups_member_updated',
        args: { security_groups: ['default'] },
        namespace: null,
        version: '1.1',
        _unique_id: randomBytes(16).toString('hex'),
        _context_is_admin: true,
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
  const agents: {
    child: ChildProcess;
    ns: string;
    last: { applied: number; bytes: number; at: number; cpu: { self: number; children: number } };
  }[] = [];
  // The Neutron agents' lock files (bench/neutron-agent.py), removed with the run.
  const locks = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-storm-locks-'));
  try {
    for (let h = 0; h < HOSTS; h++) {
      const ns = `sgsb-${tag}-${h}`;
      spawnSync('ip', ['netns', 'add', ns]);
      const argv =
        agent.kind === 'neutron'
          ? [agent.python, path.join(repo, 'bench/neutron-agent.py')]
          : [process.execPath, '--import', 'tsx', path.join(repo, 'bench/baseline-agent.ts')];
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
    console.log(
      `storm.neutron bytes=${kb(median(n.bytes))} cpu=${sec(median(n.cpu))} children=${sec(median(n.children))} p99=${sec(p99(n.lag))} ports=${PORTS}`,
    );
    return;
  }
  const which_ours = process.env.STORM_DATAPLANE;
  const o = which_ours === 'nftables' ? undefined : await ours('iptables');
  const on = which_ours === 'iptables' ? undefined : await ours('nftables');
  if (process.env.STORM_ONLY === 'ours') {
    for (const [dp, r] of [
      ['iptables', o],
      ['nftables', on],
    ] as const) {
      if (r)
        console.log(
          `storm.ours.${dp} bytes=${kb(median(r.bytes))} cpu=${sec(median(r.cpu))} children=${sec(median(r.children))} p99=${sec(p99(r.lag))} restores=${median(r.restores!)} applies=${median(r.applies!)} messages=${median(r.messages!)} syncs=${median(r.syncs!)} ports=${PORTS}`,
        );
    }
    return;
  }
  if (!o || !on) throw new Error('storm: the comparison needs both of our runs (unset STORM_DATAPLANE)');
  const python = neutronPython();
  const e = await baseline({ kind: 'emulated' });
  const b = python ? await baseline({ kind: 'neutron', python }) : e;
  if (!python) console.log('storm: Neutron baseline unavailable (bench/neutron-venv.sh failed); the emulation stands in');
  const which = python ? 'neutron' : 'emulated';
  line(
    'storm.bytes',
    median(o.bytes),
    median(b.bytes),
    kb,
    median(b.bytes) / median(o.bytes) >= 50 ? ' target>=50x met' : ' target>=50x MISSED',
  );
  line(
    'storm.cpu',
    median(o.cpu),
    median(b.cpu),
    sec,
    `${median(b.cpu) / median(o.cpu) >= 30 ? ' target>=30x met' : ' target>=30x MISSED'} (baseline: ${which})`,
  );
  console.log(`storm.cpu.children ours=${sec(median(o.children))} baseline=${sec(median(b.children))} (iptables tools run by the agents)`);
  line('storm.p99', p99(o.lag), p99(b.lag), sec, `${p99(o.lag) <= 2 ? ' target<=2s met' : ' target<=2s MISSED'} (baseline: ${which})`);
  line(
    'storm.cpu.nftables',
    median(on.cpu),
    median(b.cpu),
    sec,
    `${median(b.cpu) / median(on.cpu) >= 50 ? ' target>=50x met' : ' target>=50x MISSED'} (dataplane=nftables; baseline: ${which})`,
  );
  console.log(
    `storm.cpu.nftables.children ours=${sec(median(on.children))} baseline=${sec(median(b.children))} restores=${median(on.restores!)} applies=${median(on.applies!)} (processes run by the agents; nf_tables transactions instead of restores)`,
  );
  line(
    'storm.p99.nftables',
    p99(on.lag),
    p99(b.lag),
    sec,
    `${p99(on.lag) <= 0.5 ? ' target<=0.5s met' : ' target<=0.5s MISSED'} (dataplane=nftables, no structural pacing; baseline: ${which})`,
  );
  if (python) {
    line('storm.cpu.emulated', median(o.cpu), median(e.cpu), sec, ' (the JavaScript emulation of the baseline, a lower bound)');
    console.log(`storm.cpu.emulated.children ours=${sec(median(o.children))} baseline=${sec(median(e.children))}`);
    line('storm.p99.emulated', p99(o.lag), p99(e.lag), sec);
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
