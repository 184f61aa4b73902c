// One agent's CPU per message in the storm's stream, with none of the other 19 agents running:
//   node --import tsx bench/agent-cpu.ts        (as root; on a RabbitMQ node of its own)
// The controller (in this process) creates STORM_PORTS ports (default 500) across STORM_HOSTS hosts
// (default 20), one every STORM_PACE_MS (10), as bench:storm does, but only host 0 has an agent: it
// receives exactly what each agent of the storm receives, on a quieter machine. ROUNDS storms (default
// 3), each into a new group (rules naming itself), each measured from its first create to the agent's
// set holding the group's members: the agent process's CPU (user + system, children included), the
// messages it received, and so CPU per message; its latency (`lag`: from the last create stored to
// the agent's own time of the kernel taking the set's last member, the relay left to its own pace);
// first its CPU over AGENT_IDLE_S idle seconds (default 5; its fixed cost), and how often its
// threads ran meanwhile.
// The agent runs as installed (dist/, `npm run build`; SG_BENCH_AGENT=tsx: from the sources).
// AGENT_DATAPLANE: nftables (default) or iptables. Looking into it: AGENT_PROF=1 writes its V8 CPU
// profile to /tmp/prof and prints each round's window in its clock (CLOCK_MONOTONIC, µs);
// AGENT_PERF=<file> records it with `perf record -g` from round AGENT_PERF_FROM (default 1) on
// at AGENT_PERF_FREQ samples a second (default 1000; more for a finer split, at the cost of CPU)
// (AGENT_PERF_DWARF=1: DWARF call graphs, which the addon's Rust frames need); AGENT_THREADS=1
// prints each thread's CPU and how many times it ran per round; AGENT_FLAGS adds Node flags (e.g.
// --trace-gc); AGENT_DROPPED=<n> measures the floor of a message (below).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Controller } from '../src/controller/controller.js';
import { generateSigningKey, MessageSigner } from '../src/protocol/signing.js';
import type { Port } from '../src/domain/model.js';
import type { GroupMembersMessage } from '../src/protocol/messages.js';
import { agentEntry } from './agent-entry.js';
import { benchBroker } from './broker.js';

const HOSTS = Number(process.env.STORM_HOSTS ?? 20);
const PORTS = Number(process.env.STORM_PORTS ?? 500);
const PACE_MS = Number(process.env.STORM_PACE_MS ?? 10);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
/** AGENT_RECONCILE_MS: the agent's periodic check, and with it on the nftables backend its watch of
 *  foreign changes (default 0: neither, so that a round's CPU is the storm's alone; the agent's own
 *  default is 5000). */
const RECONCILE_MS = Number(process.env.AGENT_RECONCILE_MS ?? 0);
/** AGENT_IDLE_S: how long the agent's idle CPU is measured before the rounds (default 5 s). */
const IDLE_S = Number(process.env.AGENT_IDLE_S ?? 5);
const DATAPLANE = process.env.AGENT_DATAPLANE ?? 'nftables';
/** AGENT_MEMBERS_ONLY=1: the agent's host gets only the first port of each storm (the ports it would
 *  have had go to host 1), so what it receives is the group's member deltas alone, no bindings. */
const MEMBERS_ONLY = process.env.AGENT_MEMBERS_ONLY === '1';
/** AGENT_DROPPED=<n>: after the rounds, n messages the agent only verifies, decodes and drops,
 *  AGENT_DROPPED_PACE_MS (default 300) apart: what a message costs before any work of its own. */
const DROPPED = Number(process.env.AGENT_DROPPED ?? 0);
const DROPPED_PACE_MS = Number(process.env.AGENT_DROPPED_PACE_MS ?? 300);
const CLK_TCK = 100;
const tag = randomBytes(3).toString('hex');
const hostName = (h: number) => `cpu-${tag}-${h}`;
const ip = (i: number) => `10.${60 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`;
const hex = (n: number) => (n & 255).toString(16).padStart(2, '0');

function port(round: number, i: number): Port {
  const n = round * PORTS + i;
  return {
    id: `cp-${round}-${i}`,
    host: hostName(MEMBERS_ONLY && i > 0 && i % HOSTS === 0 ? 1 : i % HOSTS),
    device: `tap${n}`,
    mac: `02:00:00:${hex(n >> 16)}:${hex(n >> 8)}:${hex(n)}`,
    fixedIps: [ip(n)],
    allowedAddressPairs: [],
    securityGroups: [`g${round}`],
    portSecurityEnabled: true,
  };
}
const rules = (g: string) => [
  { id: `${g}-in4`, direction: 'ingress' as const, ethertype: 'IPv4' as const, remoteGroupId: g },
  { id: `${g}-in6`, direction: 'ingress' as const, ethertype: 'IPv6' as const, remoteGroupId: g },
  { id: `${g}-out4`, direction: 'egress' as const, ethertype: 'IPv4' as const },
  { id: `${g}-out6`, direction: 'egress' as const, ethertype: 'IPv6' as const },
];

/** CPU seconds of a process (its threads' run time, in ns) and of the children it waited for (in ticks). */
function cpu(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const x = f
    .slice(f.lastIndexOf(')') + 2)
    .split(' ')
    .slice(13, 15)
    .map(Number);
  let ns = 0;
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread ended meanwhile
    }
  }
  return ns / 1e9 + (x[0]! + x[1]!) / CLK_TCK;
}
/** Per thread (id:name): its run time in seconds and how many times it was scheduled in (schedstat),
 *  for AGENT_THREADS=1. On this VM a wake of a thread after an idle spell costs up to 1.5 ms of CPU,
 *  whatever it then does (bench/RESULTS.md), so the second figure matters as much. */
function threads(pid: number): Map<string, [number, number]> {
  const m = new Map<string, [number, number]>();
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      const name = fs.readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim();
      const [run, , slices] = fs.readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ').map(Number);
      m.set(`${t}:${name}`, [run! / 1e9, slices!]);
    } catch {
      // the thread ended meanwhile
    }
  }
  return m;
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

(async () => {
  // First: a stale build stops the benchmark before it has made anything to clean up.
  const entry = agentEntry();
  const broker = await benchBroker();
  const url = broker.vhost(`sgcpu-${tag}`);
  const keys = generateSigningKey(fs.mkdtempSync(path.join(os.tmpdir(), 'sg-cpu-keys-')));
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-cpu-'));
  const ctl = await Controller.start({ amqpUrl: url, signer: MessageSigner.fromFile(keys.privateKeyFile), dataDir });
  const ns = `sgcpu-${tag}`;
  spawnSync('ip', ['netns', 'add', ns]);
  const metrics = `127.0.0.1:${19700 + (process.pid % 200)}`;
  const prof = process.env.AGENT_PROF ? ['--cpu-prof', '--cpu-prof-interval', '100', '--cpu-prof-dir=/tmp/prof'] : [];
  if (process.env.AGENT_PERF) prof.push('--perf-basic-prof');
  // AGENT_FLAGS: more Node flags for the agent (e.g. --trace-gc), its output on this one's.
  if (process.env.AGENT_FLAGS) prof.push(...process.env.AGENT_FLAGS.split(' '));
  const child = spawn(process.execPath, [...prof, ...entry, 'run'], {
    env: {
      ...process.env,
      SG_AGENT_HOST: hostName(0),
      SG_AMQP_URL: url,
      SG_TRUSTED_KEYS: keys.publicKeyFile,
      SG_NETNS: `/var/run/netns/${ns}`,
      SG_METRICS_LISTEN: metrics,
      SG_LOG_LEVEL: 'error',
      SG_RECONCILE_INTERVAL_MS: String(RECONCILE_MS),
      SG_DATAPLANE: DATAPLANE,
    },
    stdio: ['ignore', process.env.AGENT_FLAGS ? 'inherit' : 'ignore', 'inherit'],
  });
  type Status = {
    connected: boolean;
    sets: { groupId: string; size: number; pending?: true; changedAt?: number }[];
    engine: { applies: number };
  };
  const status = async () => (await (await fetch(`http://${metrics}/status`)).json()) as Status;
  const messages = async () => {
    const text = await (await fetch(`http://${metrics}/metrics`)).text();
    return [...text.matchAll(/^sg_agent_messages_total\{type="[^"]+"\} (\d+)/gm)].reduce((a, x) => a + Number(x[1]), 0);
  };
  /** Group syncs (sync RPCs): one a round when the round's group is new to the host; more mean the
   *  agent could not chain the member deltas that followed its sync. */
  const groupSyncs = async () =>
    Number(/^sg_agent_resyncs_total\{scope="group"\} (\d+)/m.exec(await (await fetch(`http://${metrics}/metrics`)).text())?.[1] ?? 0);
  const rows: { cpu: number; messages: number; syncs: number; applies: number; lag: number }[] = [];
  let perf: ChildProcess | undefined;
  try {
    await ctl.brokerReady;
    for (;;) {
      if (
        await status().then(
          (s) => s.connected && s.engine.applies >= 1,
          () => false,
        )
      )
        break;
      await sleep(100);
    }
    await sleep(1000);
    // What the agent spends doing nothing, for as long as a storm lasts: its fixed cost.
    const wakes = () => [...threads(child.pid!).values()].reduce((n, [, slices]) => n + slices, 0);
    const [idle0, wakes0] = [cpu(child.pid!), wakes()];
    await sleep(IDLE_S * 1000);
    const idleCpu = cpu(child.pid!) - idle0;
    console.log(
      `idle: cpu=${idleCpu.toFixed(3)}s in ${IDLE_S} s (${((idleCpu * 1000) / IDLE_S).toFixed(2)} ms/s; its threads ran ${((wakes() - wakes0) / IDLE_S).toFixed(1)} times a second)`,
    );
    for (let r = 0; r < ROUNDS; r++) {
      await ctl.putGroup(`g${r}`, true, rules(`g${r}`));
      await sleep(1000);
      const m0 = await messages();
      const s0 = await groupSyncs();
      const a0 = (await status()).engine.applies;
      const c0 = cpu(child.pid!);
      const th0 = threads(child.pid!);
      // AGENT_PERF=<file>: `perf record` of the agent from round AGENT_PERF_FROM on (the agent maps
      // its JIT code for it); the gaps between rounds are idle. A later first round sees the cost of a
      // host with more ports (each round binds STORM_PORTS / STORM_HOSTS more).
      if (process.env.AGENT_PERF && r === Number(process.env.AGENT_PERF_FROM ?? 1)) {
        const callGraph = process.env.AGENT_PERF_DWARF === '1' ? ['--call-graph', 'dwarf,32768'] : ['-g'];
        const args = [
          'record',
          '-F',
          process.env.AGENT_PERF_FREQ ?? '1000',
          ...callGraph,
          '-p',
          String(child.pid),
          '-o',
          process.env.AGENT_PERF,
        ];
        perf = spawn('perf', args, { stdio: 'ignore' });
      }
      const t0 = monotonicUs();
      if (process.env.AGENT_FLAGS) console.log(`round ${r} starts`);
      for (let i = 0; i < PORTS; i++) {
        await ctl.putPort(`cp-${r}-${i}`, port(r, i));
        await sleep(PACE_MS);
      }
      // The last create is in the store: the relay publishes at its own pace (no flush), and the
      // latency runs to the agent's own record of the kernel taking the change that completed the set.
      const tLast = Date.now();
      let c1 = 0;
      let lag = 0;
      for (;;) {
        // Read at convergence: the polls after it are the benchmark's.
        // This round's group's set (the earlier rounds' sets are full too).
        const full = (await status()).sets.find((s) => s.groupId === `g${r}` && s.size === PORTS && !s.pending);
        if (full) {
          c1 = cpu(child.pid!);
          lag = ((full.changedAt ?? Date.now()) - tLast) / 1000;
          if (process.env.AGENT_THREADS) {
            for (const [t, [run, slices]] of threads(child.pid!)) {
              const [run0, slices0] = th0.get(t) ?? [0, 0];
              if (slices > slices0) console.log(`  thread ${t} cpu=${(run - run0).toFixed(4)}s runs=${slices - slices0}`);
            }
          }
          break;
        }
        if (Date.now() - tLast > 60_000) throw new Error('agent-cpu: the agent did not converge in a minute');
        // Convergence is timed by the agent (changedAt), and each poll is the agent's CPU too (its
        // /status): every 100 ms, as bench/storm-run.ts polls.
        await sleep(100);
      }
      const t1 = monotonicUs();
      if (perf && r === ROUNDS - 1) {
        const p = perf;
        p.kill('SIGINT');
        await new Promise((done) => p.once('exit', done));
      }
      const row = {
        cpu: c1 - c0,
        messages: (await messages()) - m0,
        syncs: (await groupSyncs()) - s0,
        applies: (await status()).engine.applies - a0,
        lag,
      };
      rows.push(row);
      const perMessage = ((1000 * row.cpu) / row.messages).toFixed(2);
      const window = prof.length ? ` window=${t0}..${t1}` : '';
      const counts = `messages=${row.messages} syncs=${row.syncs} applies=${row.applies} lag=${row.lag.toFixed(3)}s`;
      console.log(`round ${r}: cpu=${row.cpu.toFixed(3)}s ${counts} per message=${perMessage}ms${window}`);
      await sleep(500);
    }
    if (DROPPED > 0) {
      // The floor of a message: DROPPED messages the agent verifies, decodes and drops (a revision of
      // the first round's group it already holds), DROPPED_PACE_MS apart. Its idle CPU over as long is
      // not taken off (it is printed first).
      const stale: GroupMembersMessage = {
        v: 1,
        type: 'group.members',
        groupId: 'g0',
        baseRevision: 0,
        revision: 1,
        added: [],
        removed: [],
      };
      await sleep(500);
      const m0 = await messages();
      const c0 = cpu(child.pid!);
      for (let i = 0; i < DROPPED; i++) {
        await ctl.publisher!.send(stale);
        await sleep(DROPPED_PACE_MS);
      }
      await sleep(1000);
      const c1 = cpu(child.pid!);
      const per = ((1000 * (c1 - c0)) / DROPPED).toFixed(3);
      console.log(
        `dropped: cpu=${(c1 - c0).toFixed(3)}s messages=${(await messages()) - m0} per message=${per}ms (${DROPPED_PACE_MS} ms apart)`,
      );
    }
    const c = median(rows.map((x) => x.cpu));
    const n = median(rows.map((x) => x.messages));
    const perMessage = ((1000 * c) / n).toFixed(2);
    const of = `(median of ${ROUNDS}; ${PORTS} ports, ${HOSTS} hosts)`;
    const lag = median(rows.map((x) => x.lag)).toFixed(3);
    const label = `agent.cpu.${DATAPLANE}${MEMBERS_ONLY ? '.members_only' : ''}`;
    console.log(`${label} per_storm=${c.toFixed(3)}s messages=${n} per_message=${perMessage}ms lag=${lag}s ${of}`);
  } finally {
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    spawnSync('ip', ['netns', 'del', ns]);
    await ctl.stop();
    fs.rmSync(path.dirname(keys.privateKeyFile), { recursive: true, force: true });
    fs.rmSync(dataDir, { recursive: true, force: true });
    broker.dropVhost(`sgcpu-${tag}`);
  }
})().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
