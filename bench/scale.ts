// Scale benchmark: one controller and H simulated hosts, H = 100, 300, 1,000, on a RabbitMQ node of
// the bench's own (own name, port and data directory, stopped at the end).
//   npm run bench:scale      (no kernel objects; needs rabbitmq-server installed and root to run it)
// Why not the machine's broker: it runs with the 1,024 open files its starter had, and a thousand
// connections exhausted them (emfile on mnesia's log took the node down). The bench's node is started
// with the hard limit (20,000 here); its listen backlog stays at the default 128 (connects are paced).
// A simulated host is the real Agent (own connection, queue, bindings, signature check, decoding,
// revisions, sync RPC) over the in-memory dataplane, a few hundred per worker process
// (bench/scale-host.ts). The controller (store, outbox relay, publisher, sync server) runs in this
// process, so this process's CPU is the controller's; the workers only report counts while a workload runs.
//
// Workloads, per H, each measured from the API call to the host's dataplane having applied it:
//   boot   5,000 ports in 500 groups (10 ports each, on 10 hosts), each group's ingress rule naming
//          itself, created in batches; a sample is (port, its host) for its filter and (address,
//          host of a port of its group) for the member sets — what a host needs shrinks as 1/H;
//   churn  a group `big` of 2,000 ports spread over every host (its rule names itself, so every host
//          needs every member); 200 ports change address one after another; a sample is (new
//          address, host) — what a host needs is the same at every H;
//   rule   five rule changes on `big`; a sample is (change, host) — the same at every H.
// Measured hosts: a sample of SCALE_SAMPLE_HOSTS (20) in a worker of their own, the other hosts in
// the other workers. A worker of 250 simulated hosts handles a group-wide message 250 times on one
// event loop, a queue no real host has; the sample's worker does not, so its convergence is what a
// host sees (the convergence over every host, this simulation's queue included, is printed as p99_all).
// Baseline: a Neutron-shaped fanout-to-all, every host hears every change. The same run is made
// again with a catch-all exchange bound to every group and host key, and the sample's queues bound to
// it. Their per-host bytes, messages and agent CPU are exactly what every host of a fanout-to-all
// gets; their convergence and the broker's figures are a lower bound for the baseline (the other
// H-20 hosts do not pay the fanout: at H = 1,000 a full one would be ~5.5 million deliveries for the
// boot alone, ~10 minutes of this broker).
// Prints `scale.<metric>.<H> ours=… baseline=… ratio=…` (ratio = baseline/ours).
// Knobs: SCALE_HOSTS (default "100,300,1000"), SCALE_WORKERS (4), SCALE_SAMPLE_HOSTS (20),
// SCALE_ONLY=ours (no baseline runs), SCALE_BOOT_PORTS (5000), SCALE_CHURN (200), SCALE_BIG (2000).
// SG_STORE=etcd: the controller's store is a three-member etcd cluster of the bench's own (loopback,
// scripts/etcd-member.sh) instead of LMDB; SCALE_STORES=lmdb,etcd runs ours on both, side by side, and
// prints `scale.store.<workload>.<p50|p99>.<H> ours=<etcd> baseline=<lmdb>`.
// docs/scale.svg is drawn from this output by bench/scale-chart.ts.
import amqp from 'amqplib';
import { fork, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Controller } from '../src/controller/controller.js';
import { GROUP_EXCHANGE, groupKey, HOST_EXCHANGE, hostKey } from '../src/protocol/routing.js';
import { generateSigningKey, MessageSigner } from '../src/protocol/signing.js';
import type { PortInput, SecurityGroupRuleInput } from '../src/domain/model.js';
import { startRabbitNode, type OwnRabbitNode } from '../test/helpers/rabbit-node.js';
import { EtcdCluster } from '../test/helpers/etcd.js';
import type { HostCounters, WorkerCommand } from './scale-host.js';

const HS = (process.env.SCALE_HOSTS ?? '100,300,1000').split(',').map(Number);
type StoreKind = 'lmdb' | 'etcd';
const STORES = (process.env.SCALE_STORES ?? process.env.SG_STORE ?? 'lmdb').split(',') as StoreKind[];
let etcd: EtcdCluster | undefined;
const WORKERS = Number(process.env.SCALE_WORKERS ?? 4);
const SAMPLE_HOSTS = Number(process.env.SCALE_SAMPLE_HOSTS ?? 20);
const BOOT_PORTS = Number(process.env.SCALE_BOOT_PORTS ?? 5000);
const GROUP_SIZE = 10;
const BOOT_BATCH = 50;
const BOOT_PACE_MS = 100;
const BIG = Number(process.env.SCALE_BIG ?? 2000);
const CHURN = Number(process.env.SCALE_CHURN ?? 200);
const CHURN_PACE_MS = 20;
const RULE_CHANGES = 5;
const RULE_PACE_MS = 2_000;
const CONVERGE_TIMEOUT_MS = 300_000;
/** Before each workload: longer than the agents' widest structural gap (2 s) and the relay's (0.4 s),
 *  so that a workload does not wait out the pacing the previous one left. */
const QUIET_MS = 2_500;
const CLK_TCK = 100;
const tag = randomBytes(3).toString('hex');

type Mode = 'ours' | 'baseline';
type Workload = 'boot' | 'churn' | 'rule';
const WORKLOADS: Workload[] = ['boot', 'churn', 'rule'];

const hostName = (h: number) => `sc-${tag}-${h}`;
const addr = (net: number, i: number) => `10.${net}.${(i >> 8) & 255}.${i & 255}`;
const mac = (net: number, i: number) =>
  `02:${net.toString(16).padStart(2, '0')}:00:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
const selfRules = (g: string): SecurityGroupRuleInput[] => [
  { id: 'in4', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: g },
  { id: 'out4', direction: 'egress', ethertype: 'IPv4' },
];
const bootGroup = (i: number) => `bg-${Math.floor(i / GROUP_SIZE)}`;
function bootPort(i: number, H: number): PortInput {
  return {
    id: `bp-${i}`,
    host: hostName(i % H),
    device: `tap${i}`,
    mac: mac(100, i),
    fixedIps: [addr(100, i)],
    allowedAddressPairs: [],
    securityGroups: [bootGroup(i)],
    portSecurityEnabled: true,
  };
}
function bigPort(j: number, H: number, ip = addr(150, j)): PortInput {
  return {
    id: `cp-${j}`,
    host: hostName(j % H),
    device: `tb${j}`,
    mac: mac(150, j),
    fixedIps: [ip],
    allowedAddressPairs: [],
    securityGroups: ['big'],
    portSecurityEnabled: true,
  };
}

// ---- small statistics ----
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const quantile = (xs: number[], q: number) => {
  if (xs.length === 0) return NaN;
  const s = sorted(xs);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
};
const median = (xs: number[]) => quantile(xs, 0.5);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---- the broker ----
type OwnNode = OwnRabbitNode;
let broker: OwnNode;

/** A RabbitMQ node of the bench's own: default configuration but for its ports and open-files limit. */
function startNode(): Promise<OwnNode> {
  return startRabbitNode({
    name: `sgscale${tag}`,
    what: "scale: the bench's RabbitMQ node",
    manyFiles: true,
    conf: ({ port }) => `listeners.tcp.default = 127.0.0.1:${port}\nloopback_users = none\n`,
  });
}

function rabbitmqctl(args: string[]): string {
  const r = spawnSync('rabbitmqctl', ['-n', broker.node, '-q', ...args], { encoding: 'utf8', maxBuffer: 256 << 20 });
  if (r.status !== 0) throw new Error(`rabbitmqctl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}
interface BrokerMemory {
  rss: number;
  queues: number;
  connections: number;
  mnesia: number;
  bindings: number;
  queueMemory: number;
  queuesCounted: number;
}
function brokerMemory(vhost: string): BrokerMemory {
  const r = spawnSync('rabbitmq-diagnostics', ['-n', broker.node, '-q', 'memory_breakdown', '--formatter', 'json'], { encoding: 'utf8' });
  const m = JSON.parse(r.stdout) as Record<string, { bytes: number }>;
  const b = (k: string) => m[k]?.bytes ?? 0;
  // The breakdown's `binary` counts a message once per process holding it (a fanout's copies are one
  // binary): the whole is read from the OS instead.
  const rss = Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${broker.pid()}/status`, 'utf8'))?.[1] ?? 0) * 1024;
  const bindings = rabbitmqctl(['list_bindings', '-p', vhost, '--no-table-headers', 'source_name']).split('\n').filter(Boolean).length;
  const queues = (
    JSON.parse(rabbitmqctl(['list_queues', '-p', vhost, 'name', 'memory', '--formatter', 'json'])) as { name: string; memory: number }[]
  ).filter((q) => q.name.startsWith('sg.agent.'));
  return {
    rss,
    queues: b('queue_procs'),
    connections: b('connection_readers') + b('connection_writers') + b('connection_channels') + b('connection_other'),
    mnesia: b('mnesia'),
    bindings,
    queueMemory: queues.reduce((s, q) => s + q.memory, 0),
    queuesCounted: queues.length,
  };
}
function cpuSeconds(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}
/** Busy and total jiffies of the whole machine (every process, other sessions' too). */
function machineCpu(): { busy: number; total: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3]! - f[4]!, total };
}
/** Connection attempts the kernel dropped for a full listen backlog (this network namespace, all sockets). */
function listenOverflows(): number {
  const [names, values] = fs
    .readFileSync('/proc/net/netstat', 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('TcpExt:'))
    .map((l) => l.split(/\s+/));
  return Number(values?.[names?.indexOf('ListenOverflows') ?? -1] ?? NaN);
}
const ownCpu = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

// ---- workers ----
class Worker {
  private seq = 0;
  private readonly waiting = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  readonly child: ChildProcess;
  constructor(readonly hosts: string[]) {
    this.child = fork(path.join(__dirname, 'scale-host.ts'), [], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.child.on('message', (m: { id: number; result?: unknown; error?: string }) => {
      const w = this.waiting.get(m.id);
      this.waiting.delete(m.id);
      if (m.error) w?.reject(new Error(m.error));
      else w?.resolve(m.result);
    });
    this.child.on('exit', (code) => {
      for (const w of this.waiting.values()) w.reject(new Error(`scale worker exited (${code})`));
      this.waiting.clear();
    });
  }
  call<T>(c: WorkerCommand): Promise<T> {
    const id = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve, reject });
      this.child.send({ ...c, id });
    });
  }
  cpu(): number {
    return cpuSeconds(this.child.pid!);
  }
}

/** Per workload: when each (host, token) became needed; what the dataplanes recorded; per-host counters. */
interface Expectation {
  needFrom: Map<string, Map<string, number>>;
  count: number;
}
function expect(): Expectation {
  return { needFrom: new Map(), count: 0 };
}
function need(e: Expectation, host: string, token: string, at: number): void {
  let m = e.needFrom.get(host);
  if (!m) e.needFrom.set(host, (m = new Map<string, number>()));
  const had = m.get(token);
  if (had === undefined) e.count++;
  m.set(token, had === undefined ? at : Math.min(had, at));
}

interface WorkloadResult {
  /** Convergence samples (s) of the measured hosts. */
  lags: number[];
  /** Of every host (the simulation's own queue included). */
  lagsAll: number[];
  /** The same by token kind (p: filters, m: member sets, r: rules). */
  byKind: Record<string, number[]>;
  missing: number;
  bytes: number[];
  messages: number[];
  controllerCpu: number;
  brokerCpu: number;
  /** Agent CPU per measured host (s). */
  agentCpu: number;
  changes: number;
  seconds: number;
  /** The controller's event-loop delay p99 (s) during the workload: is it the one that is late? */
  loopDelayP99: number;
  /** Share of the machine's CPU busy during the workload (all processes), and the simulated hosts'
   *  CPU in cores: past ~100% the figures measure this machine's queue, not the design. */
  machineBusy: number;
  agentCores: number;
}
interface RunResult {
  H: number;
  mode: Mode;
  setupSeconds: number;
  /** Connects dropped by a full listen backlog while the hosts connected. */
  overflows: number;
  reconnects: number;
  handlerErrors: number;
  memory: { before: BrokerMemory; connected: BrokerMemory; booted: BrokerMemory; big: BrokerMemory };
  workloads: Record<Workload, WorkloadResult>;
  bindingsPerHost: number;
}

async function run(H: number, mode: Mode, store: StoreKind = STORES[0]!): Promise<RunResult> {
  const vhost = `sgscale-${tag}-${H}-${mode}`;
  rabbitmqctl(['add_vhost', vhost]);
  rabbitmqctl(['set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*']);
  const url = `amqp://guest:guest@127.0.0.1:${broker.port}/${vhost}`;
  const keys = generateSigningKey(fs.mkdtempSync(path.join(os.tmpdir(), 'sg-scale-keys-')));
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-scale-'));
  const ctl = await Controller.start({
    amqpUrl: url,
    signer: MessageSigner.fromFile(keys.privateKeyFile),
    dataDir,
    ...(store === 'etcd' ? { etcd: { endpoints: etcd!.endpoints, prefix: `/${vhost}/` } } : {}),
  });
  const workers: Worker[] = [];
  const conn = await amqp.connect(url);
  const all = () => Promise.all(workers.map((w) => w.call<number>({ cmd: 'poll' })));
  const bPid = broker.pid();
  try {
    await ctl.brokerReady;
    const hosts = Array.from({ length: H }, (_, h) => hostName(h));
    // The measured sample in a worker of its own (its CPU is theirs alone), in both modes.
    const sampled = hosts.slice(0, Math.min(H, SAMPLE_HOSTS));
    const rest = hosts.slice(sampled.length);
    const n = Math.max(1, WORKERS - 1);
    const groupsOf = [sampled, ...Array.from({ length: n }, (_, w) => rest.filter((_, i) => i % n === w))].filter((g) => g.length > 0);
    const measured = new Set(sampled);
    const groups = Array.from({ length: Math.ceil(BOOT_PORTS / GROUP_SIZE) }, (_, g) => `bg-${g}`);
    for (const g of groups) await ctl.putGroup(g, true, selfRules(g));
    const bigRules = selfRules('big');
    await ctl.putGroup('big', true, bigRules);
    await ctl.flush();
    const before = brokerMemory(vhost);

    const t0 = Date.now();
    const overflows0 = listenOverflows();
    for (const hs of groupsOf) workers.push(new Worker(hs));
    await Promise.all(
      workers.map((w) => w.call({ cmd: 'start', url, keyFile: keys.publicKeyFile, hosts: w.hosts, concurrency: 8, jitterMs: 30 })),
    );
    const setupSeconds = (Date.now() - t0) / 1000;
    const overflows = listenOverflows() - overflows0;
    const connected = brokerMemory(vhost);

    if (mode === 'baseline') {
      // The Neutron shape: one fanout every host hears, fed with every group's and every host's updates.
      const ch = await conn.createChannel();
      await ch.assertExchange('scale.fanout-all', 'fanout', { durable: false });
      for (const g of [...groups, 'big']) await ch.bindExchange('scale.fanout-all', GROUP_EXCHANGE, groupKey(g));
      for (const h of hosts) await ch.bindExchange('scale.fanout-all', HOST_EXCHANGE, hostKey(h));
      await ch.close();
      await workers[0]!.call({ cmd: 'catchAll', exchange: 'scale.fanout-all' });
    }

    const counters = async () =>
      Object.assign({}, ...(await Promise.all(workers.map((w) => w.call<Record<string, HostCounters>>({ cmd: 'counters' }))))) as Record<
        string,
        HostCounters
      >;
    /** Runs one workload: `act` makes the API calls and fills the expectation; then waits for every host. */
    const measure = async (prefixes: string[], changes: number, act: (e: Expectation) => Promise<void>): Promise<WorkloadResult> => {
      await sleep(QUIET_MS);
      await Promise.all(workers.map((w) => w.call({ cmd: 'watch', prefixes })));
      const c0 = await counters();
      const e = expect();
      const cpu0 = ownCpu();
      const b0 = cpuSeconds(bPid);
      const w0 = workers.map((w) => w.cpu());
      const m0 = machineCpu();
      const start = Date.now();
      const delay = monitorEventLoopDelay({ resolution: 10 });
      delay.enable();
      await act(e);
      while (Date.now() - start < CONVERGE_TIMEOUT_MS) {
        const got = (await all()).reduce((s, x) => s + x, 0);
        if (got >= e.count) break;
        await sleep(100);
      }
      delay.disable();
      const m1 = machineCpu();
      const allAgents = workers.reduce((sum, w, i) => sum + w.cpu() - w0[i]!, 0);
      const controllerCpu = ownCpu() - cpu0;
      const brokerCpu = cpuSeconds(bPid) - b0;
      const agentCpu = (workers[0]!.cpu() - w0[0]!) / measured.size;
      const seconds = (Date.now() - start) / 1000;
      await sleep(300); // messages still in flight (a late duplicate) belong to this workload's bytes
      const c1 = await counters();
      const seen = (await Promise.all(workers.map((w) => w.call<[string, string, number][]>({ cmd: 'collect' })))).flat();
      const lags: number[] = [];
      const lagsAll: number[] = [];
      const byKind: Record<string, number[]> = {};
      let found = 0;
      for (const [host, token, at] of seen) {
        const from = e.needFrom.get(host)?.get(token);
        if (from === undefined) continue;
        found++;
        const lag = Math.max(0, at - from) / 1000;
        lagsAll.push(lag);
        if (!measured.has(host)) continue;
        lags.push(lag);
        (byKind[token.slice(0, 1)] ??= []).push(lag);
      }
      const per = (k: keyof HostCounters) => [...measured].map((h) => c1[h]![k] - c0[h]![k]);
      return {
        machineBusy: (m1.busy - m0.busy) / Math.max(1, m1.total - m0.total),
        agentCores: allAgents / seconds,
        loopDelayP99: delay.percentile(99) / 1e9,
        lags,
        lagsAll,
        byKind,
        missing: e.count - found,
        bytes: per('bytes'),
        messages: per('messages').map((m, i) => m + per('syncs')[i]!),
        controllerCpu,
        brokerCpu,
        agentCpu,
        changes,
        seconds,
      };
    };

    const boot = await measure(['p:', 'm:bg-'], BOOT_PORTS, async (e) => {
      const api = new Map<number, number>();
      for (let i = 0; i < BOOT_PORTS; i += BOOT_BATCH) {
        const batch = Array.from({ length: Math.min(BOOT_BATCH, BOOT_PORTS - i) }, (_, k) => i + k);
        await Promise.all(
          batch.map(async (p) => {
            await ctl.putPort(`bp-${p}`, bootPort(p, H));
            api.set(p, Date.now());
          }),
        );
        await sleep(BOOT_PACE_MS);
      }
      // A host needs an address of a group from the moment both it and the host's first port of the group exist.
      for (let g = 0; g < groups.length; g++) {
        const members = Array.from({ length: GROUP_SIZE }, (_, k) => g * GROUP_SIZE + k).filter((p) => p < BOOT_PORTS);
        const firstOnHost = new Map<string, number>();
        for (const p of members) {
          const h = hostName(p % H);
          need(e, h, `p:bp-${p}`, api.get(p)!);
          firstOnHost.set(h, Math.min(firstOnHost.get(h) ?? Infinity, api.get(p)!));
        }
        for (const [h, first] of firstOnHost)
          for (const q of members) need(e, h, `m:bg-${g}:${addr(100, q)}`, Math.max(first, api.get(q)!));
      }
    });
    const booted = brokerMemory(vhost);

    // The big group: every host gets ports in it; its set must hold every member before the churn.
    for (let j = 0; j < BIG; j += 200)
      await Promise.all(Array.from({ length: Math.min(200, BIG - j) }, (_, k) => ctl.putPort(`cp-${j + k}`, bigPort(j + k, H))));
    for (const t = Date.now(); Date.now() - t < CONVERGE_TIMEOUT_MS; await sleep(250)) {
      const sizes = (await Promise.all(workers.map((w) => w.call<Record<string, number>>({ cmd: 'setSizes', key: '4:big' })))).flatMap(
        (s) => Object.values(s),
      );
      if (sizes.every((s) => s === BIG)) break;
    }
    const big = brokerMemory(vhost);

    const churn = await measure(['m:big:'], CHURN, async (e) => {
      // On a fixed schedule, not a pause after each call: a slower API under load must not stretch
      // the churn (the relay would then cut it into more messages than at a smaller H).
      const t0 = Date.now();
      for (let k = 0; k < CHURN; k++) {
        await sleep(t0 + k * CHURN_PACE_MS - Date.now());
        const j = (k * 37) % BIG; // distinct ports, spread over the hosts
        const ip = addr(151, k);
        await ctl.putPort(`cp-${j}`, bigPort(j, H, ip));
        const at = Date.now();
        for (const h of hosts) need(e, h, `m:big:${ip}`, at);
      }
    });

    const rule = await measure(['r:'], RULE_CHANGES, async (e) => {
      for (let k = 0; k < RULE_CHANGES; k++) {
        const mark = 3000 + k;
        await ctl.putGroup('big', true, [
          ...bigRules,
          { id: 'mark', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', portRangeMin: mark, portRangeMax: mark },
        ]);
        const at = Date.now();
        for (const h of hosts) need(e, h, `r:${mark}`, at);
        if (k < RULE_CHANGES - 1) await sleep(RULE_PACE_MS);
      }
    });

    const end = await counters();
    return {
      H,
      mode,
      setupSeconds,
      overflows,
      reconnects: Object.values(end).reduce((s, c) => s + c.reconnects, 0),
      handlerErrors: Object.values(end).reduce((s, c) => s + c.handlerErrors, 0),
      memory: { before, connected, booted, big },
      workloads: { boot, churn, rule },
      bindingsPerHost: (booted.bindings - connected.bindings) / H,
    };
  } finally {
    await Promise.all(workers.map((w) => Promise.race([w.call({ cmd: 'stop' }), sleep(30_000)]).catch(() => undefined)));
    for (const w of workers) w.child.kill('SIGKILL');
    await conn.close().catch(() => undefined);
    await ctl.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
    fs.rmSync(path.dirname(keys.privateKeyFile), { recursive: true, force: true });
    spawnSync('rabbitmqctl', ['-n', broker.node, 'delete_vhost', vhost], { stdio: 'ignore' });
  }
}

// ---- output ----
const kib = (n: number) => `${(n / 1024).toFixed(1)}KiB`;
const sec = (n: number) => `${n.toFixed(3)}s`;
const ms = (n: number) => `${(n * 1000).toFixed(2)}ms`;
const count = (n: number) => n.toFixed(0);
function line(id: string, ours: number, base: number | undefined, unit: (n: number) => string, note = ''): void {
  const b = base === undefined || Number.isNaN(base) ? '' : ` baseline=${unit(base)} ratio=${(base / ours).toFixed(2)}`;
  console.log(`scale.${id} ours=${unit(ours)}${b}${note}`);
}

function report(o: RunResult, b: RunResult | undefined): void {
  const H = o.H;
  console.log(
    `# H=${H}: setup ${o.setupSeconds.toFixed(1)}s (${((o.setupSeconds * 1000) / H).toFixed(1)} ms/host), listen-backlog overflows ${o.overflows}, reconnects ${o.reconnects}, handler errors ${o.handlerErrors}; group bindings per host after boot ${o.bindingsPerHost.toFixed(1)}`,
  );
  for (const w of WORKLOADS) {
    const x = o.workloads[w];
    const y = b?.workloads[w];
    console.log(
      `# ${w}.${H}: ${x.changes} changes converged in ${x.seconds.toFixed(1)}s, ${x.lags.length} samples, ${x.missing} missing, controller event-loop delay p99 ${x.loopDelayP99.toFixed(3)}s, machine CPU ${(x.machineBusy * 100).toFixed(0)}% busy, simulated hosts ${x.agentCores.toFixed(2)} cores${y ? `; baseline ${y.seconds.toFixed(1)}s, ${y.lags.length} samples, ${y.missing} missing, ${y.loopDelayP99.toFixed(3)}s, ${(y.machineBusy * 100).toFixed(0)}%, ${y.agentCores.toFixed(2)} cores` : ''}`,
    );
    const kinds = (r: WorkloadResult) =>
      Object.entries(r.byKind)
        .map(([k, v]) => `${k}: p50=${median(v).toFixed(3)}s p99=${quantile(v, 0.99).toFixed(3)}s`)
        .join(', ');
    console.log(`# ${w}.${H} by kind (p: filter, m: member, r: rule): ${kinds(x)}${y ? `; baseline ${kinds(y)}` : ''}`);
    line(`${w}.bytes_per_host.${H}`, median(x.bytes), y && median(y.bytes), kib);
    line(`${w}.msgs_per_host.${H}`, median(x.messages), y && median(y.messages), count);
    line(`${w}.p50.${H}`, median(x.lags), y && median(y.lags), sec);
    line(
      `${w}.p99.${H}`,
      quantile(x.lags, 0.99),
      y && quantile(y.lags, 0.99),
      sec,
      w !== 'boot' ? (quantile(x.lags, 0.99) <= 2 ? ' target<=2s met' : ' target<=2s MISSED') : '',
    );
    line(
      `${w}.p99_all.${H}`,
      quantile(x.lagsAll, 0.99),
      undefined,
      sec,
      ` (every host; the simulation's ${x.agentCores.toFixed(2)} cores of agents on a ${(x.machineBusy * 100).toFixed(0)}% busy machine)`,
    );
    line(`${w}.agent_cpu_per_host.${H}`, x.agentCpu, y?.agentCpu, ms);
    line(`${w}.controller_cpu_per_change.${H}`, x.controllerCpu / x.changes, y && y.controllerCpu / y.changes, ms);
    line(`${w}.broker_cpu_per_change.${H}`, x.brokerCpu / x.changes, y && y.brokerCpu / y.changes, ms);
  }
  // Broker memory from the ours run (the baseline's differs only by its catch-all bindings).
  const m = o.memory;
  const bm = b?.memory;
  const perQueue = (r: RunResult['memory']) => r.connected.queueMemory / Math.max(1, r.connected.queuesCounted);
  const perConn = (r: RunResult['memory']) => (r.connected.connections - r.before.connections) / H;
  const perBinding = (r: RunResult['memory']) =>
    (r.booted.mnesia - r.connected.mnesia) / Math.max(1, r.booted.bindings - r.connected.bindings);
  const perHost = (r: RunResult['memory']) => (r.big.rss - r.before.rss) / H;
  line(`broker.queue_bytes.${H}`, perQueue(m), bm && perQueue(bm), kib);
  line(`broker.connection_bytes.${H}`, perConn(m), bm && perConn(bm), kib);
  line(`broker.binding_bytes.${H}`, perBinding(m), bm && perBinding(bm), (n) => `${n.toFixed(0)}B`);
  line(`broker.bytes_per_host.${H}`, perHost(m), bm && perHost(bm), kib, ' (broker RSS growth per host, after boot and the big group)');
}

/** Ours on one store against ours on another (SCALE_STORES=lmdb,etcd: ours=etcd, baseline=lmdb). */
function reportStores(o: RunResult, b: RunResult, ours: StoreKind, base: StoreKind): void {
  const H = o.H;
  for (const w of WORKLOADS) {
    const [x, y] = [o.workloads[w], b.workloads[w]];
    const busy = (r: WorkloadResult) => `${(r.machineBusy * 100).toFixed(0)}%`;
    console.log(
      `# store ${ours} vs ${base}, ${w}.${H}: ` +
        `${x.changes} changes converged in ${x.seconds.toFixed(1)}s (${base}: ${y.seconds.toFixed(1)}s), ` +
        `${x.missing} missing, controller event-loop delay p99 ${x.loopDelayP99.toFixed(3)}s (${y.loopDelayP99.toFixed(3)}s), ` +
        `machine CPU ${busy(x)} busy (${busy(y)})`,
    );
    for (const [q, name] of [
      [0.5, 'p50'],
      [0.99, 'p99'],
    ] as const) {
      const [a, c] = [quantile(x.lags, q), quantile(y.lags, q)];
      const target = name === 'p99' && w !== 'rule' ? (a <= 1.2 * c ? ' target<=1.2x met' : ' target<=1.2x MISSED') : '';
      console.log(`scale.store.${w}.${name}.${H} ours=${sec(a)} baseline=${sec(c)} ratio=${(c / a).toFixed(2)}${target}`);
    }
    line(`store.${w}.controller_cpu_per_change.${H}`, x.controllerCpu / x.changes, y.controllerCpu / y.changes, ms);
  }
}

(async () => {
  broker = await startNode();
  process.on('SIGINT', () => {
    broker.stop();
    process.exit(130);
  });
  console.log(
    `# bench:scale hosts=${HS.join(',')} workers=${WORKERS} sample hosts=${SAMPLE_HOSTS} boot=${BOOT_PORTS} big=${BIG} churn=${CHURN} ` +
      `store=${STORES.join(',')} (${os.cpus().length} cpus)`,
  );
  try {
    if (STORES.includes('etcd')) etcd = await EtcdCluster.start(3);
    for (const H of HS) {
      const o = await run(H, 'ours', STORES[0]);
      const b = process.env.SCALE_ONLY === 'ours' ? undefined : await run(H, 'baseline', STORES[0]);
      report(o, b);
      if (STORES.length > 1) reportStores(await run(H, 'ours', STORES[1]), o, STORES[1]!, STORES[0]!);
    }
  } finally {
    broker.stop();
    await etcd?.stop();
  }
  process.exit(0);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
