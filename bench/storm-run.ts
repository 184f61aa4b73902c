// The storm's shared parts (bench/storm.ts, bench/ovn.ts): the cloud it runs on (hosts, ports in the
// default group, paced creates), reading a process's CPU, and our side of it: the controller and one
// `sg-agent run` process per host, each in a throwaway namespace, on a RabbitMQ node of the benchmark's own.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Controller } from '../src/controller/controller.js';
import { generateSigningKey, MessageSigner } from '../src/protocol/signing.js';
import type { Port } from '../src/domain/model.js';
import { benchBroker } from './broker.js';

export const HOSTS = Number(process.env.STORM_HOSTS ?? 20);
export const PORTS = Number(process.env.STORM_PORTS ?? 500);
export const repo = path.resolve(__dirname, '..');
const CLK_TCK = 100;
export const tag = randomBytes(3).toString('hex');

export const ip = (i: number) => `10.${60 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
export const hostName = (h: number) => `storm-${tag}-${h}`;
export function port(i: number): Port {
  return {
    id: `sp-${i}`,
    host: hostName(i % HOSTS),
    device: `tap${i}`,
    mac: `02:00:00:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`,
    fixedIps: [ip(i)],
    allowedAddressPairs: [],
    securityGroups: ['default'],
    portSecurityEnabled: true,
  };
}
/** The port deleted after a storm of `ports`: the last one created that is not on the first host
 *  (the one real OVN chassis in bench/ovn.ts), so that each system handles a remote member leaving. */
export const deletedPort = (ports: number) => ((ports - 1) % HOSTS === 0 ? ports - 2 : ports - 1);
export const defaultRules = [
  { id: 'd-in4', direction: 'ingress' as const, ethertype: 'IPv4' as const, remoteGroupId: 'default' },
  { id: 'd-in6', direction: 'ingress' as const, ethertype: 'IPv6' as const, remoteGroupId: 'default' },
  { id: 'd-out4', direction: 'egress' as const, ethertype: 'IPv4' as const },
  { id: 'd-out6', direction: 'egress' as const, ethertype: 'IPv6' as const },
];

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
export function p99(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(0.99 * s.length) - 1)]!;
}
/** CPU seconds of a process itself and of the children it waited for (iptables-restore runs). */
export function cpuSplit(pid: number): { self: number; children: number } {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return { self: (Number(fields[11]) + Number(fields[12])) / CLK_TCK, children: (Number(fields[13]) + Number(fields[14])) / CLK_TCK };
}
/** Per-thread CPU seconds (schedstat, ns) of a process: where an agent's own CPU goes. */
export function threadCpu(pid: number): Map<string, number> {
  const m = new Map<string, number>();
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    const comm = fs.readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim();
    m.set(`${t}:${comm}`, Number(fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]) / 1e9);
  }
  return m;
}
/** CPU seconds of a process to the nanosecond (its threads' schedstat, with its waited-for children
 *  from stat): for costs too small for stat's 10 ms ticks, e.g. one port deleted. */
export function preciseCpuSeconds(pid: number): number {
  return [...threadCpu(pid).values()].reduce((a, b) => a + b, 0) + cpuSplit(pid).children;
}
export function cpuSeconds(pid: number): number {
  const c = cpuSplit(pid);
  return c.self + c.children;
}
/** Both storms create ports at the same pace: one every PACE_MS, as a bulk VM boot does. */
const PACE_MS = Number(process.env.STORM_PACE_MS ?? 10);
export const pace = () => new Promise((r) => setTimeout(r, PACE_MS));
export function line(id: string, ours: number, base: number, unit: (n: number) => string, target = ''): void {
  console.log(`${id} ours=${unit(ours)} baseline=${unit(base)} ratio=${(base / ours).toFixed(1)}${target}`);
}
export const kb = (n: number) => `${(n / 1024).toFixed(1)}KiB`;
export const sec = (n: number) => `${n.toFixed(3)}s`;

export async function vhost(name: string): Promise<string> {
  return (await benchBroker()).vhost(name);
}

export interface Run {
  bytes: number[];
  cpu: number[];
  children: number[];
  lag: number[];
  restores?: number[];
  applies?: number[];
  messages?: number[];
  /** Each agent's group syncs during the storm. */
  syncs?: number[];
  /** CPU seconds of the central parts during the storm: the controller (this process, which also
   *  drives the storm, from the first create to its relay drained) and the RabbitMQ node (to the last
   *  agent converged). */
  central?: { controller: number; broker: number };
  /** Each agent's CPU seconds for one port deleted after the storm (OursOptions.deleteOne). */
  deleteCpu?: number[];
}

export interface OursOptions {
  /** After the storm, delete one port and measure what that costs each agent. */
  deleteOne?: boolean;
  /** Agents that run (default: one per host): the first this many hosts' agents. The ports are spread
   *  over all HOSTS all the same, so each agent that runs receives what it would in a cloud of HOSTS
   *  hosts, without the others' work competing for this machine's cores at the same moment — the
   *  method of bench:ovn's one real chassis. */
  realAgents?: number;
}

/** The window a single delete's CPU is read over, and the idle window its idle rate is taken from. */
export const DELETE_WINDOW_MS = 2000;

/** CPU seconds this process has used (user + system). */
function processCpu(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

export async function ours(dataplane: 'iptables' | 'nftables', ports = PORTS, opts: OursOptions = {}): Promise<Run> {
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
    for (let h = 0; h < Math.min(HOSTS, opts.realAgents ?? HOSTS); h++) {
      const ns = `sgst-${tag}-${h}`;
      spawnSync('ip', ['netns', 'add', ns]);
      const metrics = `127.0.0.1:${19500 + h}`;
      const child = spawn(
        process.execPath,
        [
          ...(h === 0 && process.env.STORM_PROF ? ['--cpu-prof', '--cpu-prof-interval', '200', '--cpu-prof-dir=/tmp/prof'] : []),
          ...(h === 0 && process.env.STORM_AGENT0_FLAGS ? process.env.STORM_AGENT0_FLAGS.split(' ') : []),
          '--import',
          'tsx',
          path.join(repo, 'src/cli/sg-agent.ts'),
          'run',
        ],
        {
          env: {
            ...process.env,
            SG_AGENT_HOST: hostName(h),
            SG_AMQP_URL: url,
            SG_TRUSTED_KEYS: keys.publicKeyFile,
            SG_NETNS: `/var/run/netns/${ns}`,
            SG_METRICS_LISTEN: metrics,
            SG_LOG_LEVEL: 'error',
            SG_RECONCILE_INTERVAL_MS: '0',
            SG_DATAPLANE: dataplane,
          },
          stdio: ['ignore', h === 0 && process.env.STORM_AGENT0_FLAGS ? 'inherit' : 'ignore', 'inherit'],
        },
      );
      procs.push({ child, metrics, ns });
    }
    const status = async (m: string) =>
      (await (await fetch(`http://${m}/status`)).json()) as {
        connected: boolean;
        sets: { size: number; pending?: true; changedAt?: number }[];
        engine: { restores: number; applies: number };
      };
    for (const p of procs)
      for (;;) {
        if (
          await status(p.metrics).then(
            (s) => s.connected,
            () => false,
          )
        )
          break;
        await new Promise((r) => setTimeout(r, 100));
      }
    // Start-up done before the storm: the first apply (nftables: its tables) and the sweep after it
    // (which also asks the other backend for objects to remove) are not the storm's work.
    for (const p of procs)
      for (;;) {
        if (
          await status(p.metrics).then(
            (s) => s.engine.applies >= 1,
            () => false,
          )
        )
          break;
        await new Promise((r) => setTimeout(r, 100));
      }
    await new Promise((r) => setTimeout(r, 1000));
    const metric = async (m: string, name: string) =>
      Number(new RegExp(`^${name} (\\d+)`, 'm').exec(await (await fetch(`http://${m}/metrics`)).text())?.[1] ?? 0);
    const bytes0 = await Promise.all(procs.map((p) => metric(p.metrics, 'sg_agent_bytes_received_total')));
    const messagesOf = async (m: string) =>
      [...(await (await fetch(`http://${m}/metrics`)).text()).matchAll(/^sg_agent_messages_total\{type="([^"]+)"\} (\d+)/gm)].reduce(
        (a, x) => a + Number(x[2]),
        0,
      );
    const messages0 = await Promise.all(procs.map((p) => messagesOf(p.metrics)));
    // Group syncs (sync RPCs for some groups): one per agent when the group is new to its host; more
    // mean an agent could not chain the member deltas that followed its sync.
    const groupSyncs = (m: string) => metric(m, 'sg_agent_resyncs_total\\{scope="group"\\}');
    const syncs0 = await Promise.all(procs.map((p) => groupSyncs(p.metrics)));
    const engine0 = await Promise.all(procs.map(async (p) => (await status(p.metrics)).engine));
    const cpu0 = procs.map((p) => cpuSeconds(p.child.pid!));
    const children0 = procs.map((p) => cpuSplit(p.child.pid!).children);
    const threads0 = threadCpu(procs[0]!.child.pid!);
    const broker = await benchBroker();
    const central0 = { controller: processCpu(), broker: cpuSeconds(broker.pid()) };
    for (let i = 0; i < ports; i++) {
      await ctl.putPort(`sp-${i}`, port(i));
      await pace();
    }
    // The last create is in the store: from here the relay publishes at its own pace, as it would
    // with nobody waiting (a flush here would publish at once and hide the relay's pacing from p99).
    const tLast = Date.now();
    const done: number[] = procs.map(() => 0);
    const cpuDone: { self: number; children: number }[] = [];
    while (done.some((d) => !d)) {
      await Promise.all(
        procs.map(async (p, i) => {
          if (done[i]) return;
          const s = await status(p.metrics);
          // Full, and in the kernel: the size is what the agent holds, `pending` says whether the kernel has it.
          const full = s.sets.find((x) => x.size === ports && !x.pending);
          if (full) {
            // Converged when the kernel took the change that completed the set, as the agent recorded
            // it (the clock of this machine): the poll's own delay is not the agent's. OVN's is timed
            // the same way, from its chassis' own timestamp (bench/ovn.ts).
            done[i] = full.changedAt ?? Date.now();
            // Read as soon as it converged: the polls and metric reads that follow are the benchmark's.
            cpuDone[i] = cpuSplit(p.child.pid!);
          }
        }),
      );
      if (Date.now() - tLast > 120_000) throw new Error('storm: agents did not converge in 2 minutes');
      // Convergence is timed by the agents (changedAt): the polls need not be frequent, and each costs
      // the agents and this process CPU.
      await new Promise((r) => setTimeout(r, 100));
    }
    // Every agent converged, so the relay has published the storm. The controller's figure includes
    // this process's polls of the agents since the last create: an overstatement of ours.
    await ctl.flush();
    const controllerCpu = processCpu() - central0.controller;
    const central = { controller: controllerCpu, broker: cpuSeconds(broker.pid()) - central0.broker };
    const bytes = await Promise.all(procs.map((p, i) => metric(p.metrics, 'sg_agent_bytes_received_total').then((b) => b - bytes0[i]!)));
    const messages = await Promise.all(procs.map((p, i) => messagesOf(p.metrics).then((n) => n - messages0[i]!)));
    const syncs = await Promise.all(procs.map((p, i) => groupSyncs(p.metrics).then((n) => n - syncs0[i]!)));
    if (process.env.STORM_THREADS) {
      const t1 = threadCpu(procs[0]!.child.pid!);
      for (const [tid, v] of t1)
        console.log(`thread ${tid} cpu=${(v - (threads0.get(tid) ?? 0)).toFixed(3)}s${threads0.has(tid) ? '' : ' (new)'}`);
    }
    const engine1 = await Promise.all(procs.map(async (p) => (await status(p.metrics)).engine));
    /** One port (not on the first host) deleted after the storm: each agent's CPU over a window of
     *  DELETE_WINDOW_MS (or until it has lost the member, if later), less its idle CPU for as long;
     *  no poll of its status within the window (a poll costs an agent more than the delete). */
    const deleteOne = async () => {
      const cpuNow = () => procs.map((p) => preciseCpuSeconds(p.child.pid!));
      // First past the storm's tail: a chain rewrite the iptables backend deferred (its gap widens to
      // 2 s in a burst) would otherwise land in the idle window.
      await new Promise((r) => setTimeout(r, 3000));
      const quiet0 = cpuNow();
      await new Promise((r) => setTimeout(r, DELETE_WINDOW_MS));
      const idleRate = cpuNow().map((c, i) => (c - quiet0[i]!) / DELETE_WINDOW_MS);
      const t0 = Date.now();
      const before = cpuNow();
      await ctl.deletePort(port(deletedPort(ports)).id);
      await ctl.flush();
      await new Promise((r) => setTimeout(r, DELETE_WINDOW_MS - (Date.now() - t0)));
      const after: number[] = [];
      await Promise.all(
        procs.map(async (p, i) => {
          for (;;) {
            // Read before the poll that finds it converged: the poll is the benchmark's cost.
            const cpu = preciseCpuSeconds(p.child.pid!) - idleRate[i]! * (Date.now() - t0);
            if ((await status(p.metrics)).sets.some((x) => x.size === ports - 1 && !x.pending)) return void (after[i] = cpu);
            if (Date.now() - t0 > 120_000) throw new Error('storm: an agent did not lose the deleted member in 2 minutes');
            await new Promise((r) => setTimeout(r, 100));
          }
        }),
      );
      return procs.map((_, i) => after[i]! - before[i]!);
    };
    return {
      restores: engine1.map((e, i) => e.restores - engine0[i]!.restores),
      applies: engine1.map((e, i) => e.applies - engine0[i]!.applies),
      messages,
      syncs,
      bytes,
      cpu: procs.map((_, i) => cpuDone[i]!.self + cpuDone[i]!.children - cpu0[i]!),
      children: procs.map((_, i) => cpuDone[i]!.children - children0[i]!),
      lag: done.map((d) => Math.max(0, d - tLast) / 1000),
      central,
      ...(opts.deleteOne ? { deleteCpu: await deleteOne() } : {}),
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
