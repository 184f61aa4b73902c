// Which queue an agent should have on a RabbitMQ cluster (docs/protocol.md), measured on the three-node
// cluster of scripts/rabbit-cluster.sh:  npm run bench:scale:queues   (as root)
// N simulated agents (default 1,000) in a few worker processes, each with its own connection (spread
// over the three nodes), channel, queue, 10 bindings (one shared by all, as a group every host needs)
// and an acking consumer, for each kind of queue:
//   exclusive  classic, exclusive to its connection, fixed name (what the agent uses)
//   classic    classic durable with an expiry (the agent's queue before), a new name when its home
//              node is down (`404 … home node … is down`)
//   quorum     quorum (replicated on the three nodes)
// and per kind: setup time; broker memory per agent (the three nodes' Erlang total) and per queue
// (`queue_procs` of memory_breakdown); broker CPU idle (heartbeats only) and per delivery; then a node
// killed (SIGKILL) under a trickle of messages to every agent: how long until every agent of that node
// consumes again, how many messages an agent lost after it was back (must be none), and what the
// killed node brings back when it restarts (queues left over).
// Lines: `scale.queue.<metric>.<kind> …`; the last kind listed is compared against the first as
// `ours=<first> baseline=<other> ratio=`. Knobs: SCALEQ_N, SCALEQ_KINDS (comma-separated, first is
// ours), SCALEQ_WORKERS (4), SCALEQ_JITTER (1: reconnect after 0.5 s × 0.5–1.5 as the agent does;
// 0: at once), SCALEQ_PUBLISH (messages to every agent for the delivery measurement, default 20),
// SCALEQ_SETUP_S (a kind whose N agents are not all consuming after this long is reported failed; 300).
import amqp, { type Channel, type ChannelModel } from 'amqplib';
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { retryDelay } from '../src/protocol/connection.js';
import {
  clusterVhost,
  ensureCluster,
  killNode,
  memoryBreakdown,
  nodeMemory,
  nodeNumber,
  nodePid,
  queueNodes,
  restartNode,
  CLUSTER_NODES,
  type ClusterVhost,
} from '../test/helpers/cluster.js';

type Kind = 'exclusive' | 'classic' | 'quorum';
const EXCHANGE = 'bq.groups';
const SHARED_KEY = 'k.all';
const BINDINGS = 10;
const CLK_TCK = 100;

interface AgentReport {
  id: number;
  /** The node its connection is on now. */
  node: number;
  sessions: number;
  deliveries: number;
  /** When it first received a message published after `mark` (ms epoch; 0: not yet). */
  resumedAt: number;
  /** Sequence numbers of the trickle received (in the detailed report only). */
  seqs?: number[];
  lastError: string;
}

// ---------------------------------------------------------------- worker: some agents
async function worker(): Promise<void> {
  const kind = process.env.SCALEQ_KIND as Kind;
  const urls = JSON.parse(process.env.SCALEQ_URLS!) as string[];
  const ids = JSON.parse(process.env.SCALEQ_IDS!) as number[];
  const jitter = process.env.SCALEQ_JITTER !== '0';
  let stopping = false;
  let mark = Infinity;
  const agents = ids.map((id) => ({
    id,
    urlIndex: id % urls.length,
    ready: false,
    sessions: 0,
    deliveries: 0,
    resumedAt: 0,
    seqs: new Set<number>(),
    lastError: '',
    generation: 0,
    conn: undefined as ChannelModel | undefined,
  }));

  /** Declares the agent's queue the way `kind` says; its name. */
  async function declare(conn: ChannelModel, ch: Channel, a: (typeof agents)[number]): Promise<string> {
    const base = `bq.agent.${a.id}`;
    if (kind === 'exclusive') return (await ch.assertQueue(base, { exclusive: true, durable: false })).queue;
    if (kind === 'quorum') return (await ch.assertQueue(base, { durable: true, arguments: { 'x-queue-type': 'quorum' } })).queue;
    // Classic durable: a queue whose home node is down cannot be declared (404) until the node is
    // back; the agent falls back to a new name.
    for (;;) {
      const name = a.generation ? `${base}.${a.generation}` : base;
      const probe = await conn.createChannel();
      probe.on('error', () => undefined);
      try {
        await probe.assertQueue(name, { durable: true, arguments: { 'x-expires': 600_000 } });
        await probe.close().catch(() => undefined);
        return name;
      } catch (e) {
        if (!/404|NOT_FOUND/.test((e as Error).message)) throw e;
        a.generation++;
      }
    }
  }

  async function run(a: (typeof agents)[number]): Promise<void> {
    for (let attempt = 0; !stopping;) {
      const url = urls[a.urlIndex % urls.length]!;
      try {
        const conn = await amqp.connect(`${url}?heartbeat=5`);
        a.conn = conn;
        conn.on('error', () => undefined);
        const closed = new Promise<void>((r) => conn.once('close', () => r()));
        const ch = await conn.createChannel();
        ch.on('error', () => undefined);
        const q = await declare(conn, ch, a);
        const keys = [SHARED_KEY, ...Array.from({ length: BINDINGS - 1 }, (_, j) => `k.${(a.id * (BINDINGS - 1) + j) % 5000}`)];
        await Promise.all(keys.map((k) => ch.bindQueue(q, EXCHANGE, k)));
        await ch.prefetch(256);
        let cancelled!: () => void;
        const cancel = new Promise<void>((r) => (cancelled = r));
        let unacked = 0;
        let last: amqp.ConsumeMessage | undefined;
        let timer: NodeJS.Timeout | undefined;
        const ackNow = () => {
          if (timer) clearTimeout(timer);
          timer = undefined;
          if (last) {
            try {
              ch.ack(last, true);
            } catch {
              // channel gone
            }
          }
          last = undefined;
          unacked = 0;
        };
        await ch.consume(q, (m) => {
          if (!m) return cancelled();
          a.deliveries++;
          const h = m.properties.headers ?? {};
          if (typeof h.seq === 'number') a.seqs.add(h.seq);
          if (!a.resumedAt && typeof h.at === 'number' && h.at > mark) a.resumedAt = Date.now();
          last = m;
          if (++unacked >= 64) ackNow();
          else timer ??= setTimeout(ackNow, 100);
        });
        a.ready = true;
        a.sessions++;
        attempt = 0;
        await Promise.race([closed, cancel]);
        await conn.close().catch(() => undefined);
      } catch (e) {
        a.lastError = (e as Error).message;
      }
      if (stopping) return;
      a.urlIndex++;
      await new Promise((r) => setTimeout(r, jitter ? retryDelay(attempt++, 500, 30_000) : 0));
    }
  }

  process.on('message', (m: { cmd: string; at?: number; detailed?: boolean }) => {
    if (m.cmd === 'mark') {
      mark = m.at!;
      for (const a of agents) a.resumedAt = 0;
    } else if (m.cmd === 'report') {
      const out: AgentReport[] = agents.map((a) => ({
        id: a.id,
        node: (a.urlIndex % urls.length) + 1,
        sessions: a.sessions,
        deliveries: a.deliveries,
        resumedAt: a.resumedAt,
        lastError: a.lastError,
        ...(m.detailed ? { seqs: [...a.seqs] } : {}),
      }));
      process.send!({ report: out });
    } else if (m.cmd === 'stop') {
      stopping = true;
      void Promise.all(agents.map((a) => a.conn?.close().catch(() => undefined) ?? Promise.resolve())).then(() => process.exit(0));
    }
  });
  // Progress while setting up: how many are consuming, and the last errors of those that are not.
  const progress = setInterval(() => {
    const waiting = agents.filter((a) => !a.ready);
    const errors = new Map<string, number>();
    for (const a of waiting) if (a.lastError) errors.set(a.lastError.slice(0, 120), (errors.get(a.lastError.slice(0, 120)) ?? 0) + 1);
    process.send!({ progress: { ready: agents.length - waiting.length, errors: Object.fromEntries(errors) } });
  }, 5000);
  // Connections opened a few at a time: a thousand at once is a storm of its own (measured apart).
  const concurrency = 16;
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < agents.length) {
        const a = agents[next++]!;
        void run(a);
        while (!a.ready && !stopping) await new Promise((r) => setTimeout(r, 5));
      }
    }),
  );
  clearInterval(progress);
  process.send!({ ready: true });
}

// ---------------------------------------------------------------- driver
const N = Number(process.env.SCALEQ_N ?? 1000);
const KINDS = (process.env.SCALEQ_KINDS ?? 'exclusive,classic,quorum').split(',') as Kind[];
const WORKERS = Number(process.env.SCALEQ_WORKERS ?? 4);
const PUBLISH = Number(process.env.SCALEQ_PUBLISH ?? 20);
const SETUP_S = Number(process.env.SCALEQ_SETUP_S ?? 300);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function beamCpu(): number {
  let s = 0;
  for (const c of CLUSTER_NODES) {
    const pid = nodePid(c.n);
    if (!pid) continue;
    try {
      const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
      s += (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
    } catch {
      // node down
    }
  }
  return s;
}

function brokerMemory(): { rss: number; queues: number } {
  let rss = 0,
    queues = 0;
  for (const c of CLUSTER_NODES) {
    rss += nodeMemory(c.n);
    const b = memoryBreakdown(c.n);
    queues += (b.queue_procs ?? 0) + (b.quorum_queue_procs ?? 0) + (b.quorum_ets ?? 0);
  }
  return { rss, queues };
}

function listenDrops(): number {
  const lines = fs
    .readFileSync('/proc/net/netstat', 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('TcpExt:'));
  const [names, values] = [lines[0]!.split(' '), lines[1]!.split(' ')];
  return Number(values[names.indexOf('ListenOverflows')]) + Number(values[names.indexOf('ListenDrops')]);
}

interface Workers {
  procs: ChildProcess[];
  report(detailed?: boolean): Promise<AgentReport[]>;
  mark(at: number): void;
  stop(): Promise<void>;
}

async function startWorkers(kind: Kind, v: ClusterVhost): Promise<Workers> {
  const procs: ChildProcess[] = [];
  const readies: Promise<void>[] = [];
  for (let w = 0; w < WORKERS; w++) {
    const ids = Array.from({ length: N }, (_, i) => i).filter((i) => i % WORKERS === w);
    const p = fork(__filename, [], {
      execArgv: ['--import', 'tsx'],
      env: {
        ...process.env,
        SCALEQ_ROLE: 'worker',
        SCALEQ_KIND: kind,
        SCALEQ_URLS: JSON.stringify(v.urls),
        SCALEQ_IDS: JSON.stringify(ids),
      },
    });
    procs.push(p);
    readies.push(
      new Promise((resolve, reject) => {
        p.on('message', (m: { ready?: boolean; progress?: { ready: number; errors: Record<string, number> } }) => {
          if (m.ready) resolve();
          if (m.progress && Object.keys(m.progress.errors).length)
            console.error(`worker ${w}: ${m.progress.ready} consuming; errors: ${JSON.stringify(m.progress.errors)}`);
        });
        p.once('exit', (code) => reject(new Error(`worker exited (${code})`)));
      }),
    );
  }
  // A kind that cannot set up N agents in SCALEQ_SETUP_S seconds is reported as such, not waited on.
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      Promise.all(readies),
      new Promise(
        (_, reject) => (timer = setTimeout(() => reject(new Error(`setup of ${N} agents not done in ${SETUP_S} s`)), SETUP_S * 1000)),
      ),
    ]);
  } catch (e) {
    for (const p of procs) p.kill('SIGKILL');
    throw e;
  } finally {
    clearTimeout(timer);
  }
  return {
    procs,
    mark: (at) => procs.forEach((p) => p.send({ cmd: 'mark', at })),
    report: async (detailed = false) =>
      (
        await Promise.all(
          procs.map(
            (p) =>
              new Promise<AgentReport[]>((resolve) => {
                const on = (m: { report?: AgentReport[] }) => {
                  if (!m.report) return;
                  p.off('message', on);
                  resolve(m.report);
                };
                p.on('message', on);
                p.send({ cmd: 'report', detailed });
              }),
          ),
        )
      ).flat(),
    stop: async () => {
      await Promise.all(
        procs.map(
          (p) =>
            new Promise<void>((resolve) => {
              p.once('exit', () => resolve());
              p.send({ cmd: 'stop' });
              setTimeout(() => p.kill('SIGKILL'), 10_000).unref();
            }),
        ),
      );
    },
  };
}

const pct = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]! : NaN;
};

interface Result {
  setupS: number;
  memPerAgentKiB: number;
  memPerQueueKiB: number;
  idleCpuPct: number;
  deliveriesPerS: number;
  cpuPerDeliveryUs: number;
  affected: number;
  recoverP50S: number;
  recoverMaxS: number;
  unrecovered: number;
  lostInOutage: number;
  lostAfterRecovery: number;
  leftoverQueues: number;
  listenDrops: number;
}

async function measure(kind: Kind): Promise<Result> {
  const v = clusterVhost(`sgq-${kind}`);
  const pub = await amqp.connect(v.urls[0]!);
  const pch = await pub.createConfirmChannel();
  await pch.assertExchange(EXCHANGE, 'direct', { durable: true });
  let w: Workers | undefined;
  try {
    const mem0 = brokerMemory();
    const t0 = Date.now();
    w = await startWorkers(kind, v);
    const setupS = (Date.now() - t0) / 1000;
    await sleep(2000);
    const mem1 = brokerMemory();
    // Idle: heartbeats only.
    const c0 = beamCpu();
    await sleep(10_000);
    const idleCpuPct = ((beamCpu() - c0) / 10) * 100;
    // Deliveries: PUBLISH messages on the key every agent bound.
    const d0 = (await w.report()).reduce((s, a) => s + a.deliveries, 0);
    const c1 = beamCpu();
    const t1 = Date.now();
    for (let i = 0; i < PUBLISH; i++) pch.publish(EXCHANGE, SHARED_KEY, Buffer.alloc(600, 0x20));
    await pch.waitForConfirms();
    let delivered = 0;
    while (delivered < N * PUBLISH) {
      if (Date.now() - t1 > 300_000) throw new Error(`deliveries: ${delivered} of ${N * PUBLISH} after 5 minutes`);
      await sleep(200);
      delivered = (await w.report()).reduce((s, a) => s + a.deliveries, 0) - d0;
    }
    const deliverS = (Date.now() - t1) / 1000;
    const cpuPerDeliveryUs = ((beamCpu() - c1) / (N * PUBLISH)) * 1e6;
    // A node killed under a trickle of sequenced messages to every agent: the node holding the most
    // agent queues (each holds some). Affected: the agents connected to it or whose queue is there.
    const where = queueNodes(v.name);
    const queueNode = (id: number) => nodeNumber(where.get(`bq.agent.${id}`) ?? '');
    const counts = [1, 2, 3].map((n) => [...where].filter(([q, node]) => q.startsWith('bq.agent.') && nodeNumber(node) === n).length);
    const victim = counts.indexOf(Math.max(...counts)) + 1;
    const before = await w.report();
    const affected = new Set(before.filter((a) => a.node === victim || queueNode(a.id) === victim).map((a) => a.id));
    // The publisher is on a node that stays.
    await pub.close();
    const pub2 = await amqp.connect(v.urls[victim === 1 ? 1 : 0]!);
    pub2.on('error', () => undefined);
    const tch = await pub2.createConfirmChannel();
    tch.on('error', () => undefined);
    let seq = 0;
    let trickling = true;
    const trickle = (async () => {
      while (trickling) {
        tch.publish(EXCHANGE, SHARED_KEY, Buffer.from('{}'), { headers: { seq: ++seq, at: Date.now() } });
        await sleep(100);
      }
    })();
    await sleep(1000);
    const drops0 = listenDrops();
    const killedAt = Date.now();
    const seqAtKill = seq;
    await killNode(victim);
    // Messages published from here on can only reach a queue that survived or was made again.
    const deadAt = Date.now();
    w.mark(deadAt);
    const seqAtDeath = seq;
    // Until every agent receives messages again (each has been receiving them before the kill).
    const deadline = killedAt + 120_000;
    let reports = await w.report();
    while (reports.some((a) => !a.resumedAt) && Date.now() < deadline) {
      await sleep(250);
      reports = await w.report();
    }
    await sleep(2000);
    trickling = false;
    await trickle;
    await tch.waitForConfirms().catch(() => undefined);
    const lastSeq = seq;
    await sleep(2000);
    reports = await w.report(true);
    const times = reports.filter((a) => affected.has(a.id) && a.resumedAt).map((a) => (a.resumedAt - killedAt) / 1000);
    // Messages missed while down (expected where the queue died with its node: the full sync that
    // follows makes up for them), and missed after the agent received again (must be none).
    let lostInOutage = 0;
    let lostAfter = 0;
    for (const a of reports) {
      const got = new Set(a.seqs);
      const firstAfter = Math.min(...a.seqs!.filter((x) => x > seqAtDeath));
      for (let x = seqAtKill + 1; x <= lastSeq; x++) {
        if (got.has(x)) continue;
        if (x < firstAfter) lostInOutage++;
        else lostAfter++;
      }
    }
    const drops = listenDrops() - drops0;
    await pub2.close().catch(() => undefined);
    await restartNode(victim);
    await sleep(3000);
    const leftover = [...queueNodes(v.name).keys()].filter((q) => q.startsWith('bq.agent.')).length - N;
    return {
      setupS,
      memPerAgentKiB: (mem1.rss - mem0.rss) / N / 1024,
      memPerQueueKiB: (mem1.queues - mem0.queues) / N / 1024,
      idleCpuPct,
      deliveriesPerS: (N * PUBLISH) / deliverS,
      cpuPerDeliveryUs,
      affected: affected.size,
      recoverP50S: pct(times, 0.5),
      recoverMaxS: pct(times, 1),
      unrecovered: reports.filter((a) => !a.resumedAt).length,
      lostInOutage,
      lostAfterRecovery: lostAfter,
      leftoverQueues: leftover,
      listenDrops: drops,
    };
  } finally {
    await w?.stop();
    await pub.close().catch(() => undefined);
    v.remove();
  }
}

async function main(): Promise<void> {
  await ensureCluster();
  const results = new Map<Kind, Result>();
  for (const kind of KINDS) {
    let r: Result;
    try {
      r = await measure(kind);
    } catch (e) {
      console.log(`scale.queue.${kind} n=${N} failed: ${(e as Error).message}`);
      continue;
    }
    results.set(kind, r);
    console.log(
      `scale.queue.${kind} n=${N} setup=${r.setupS.toFixed(1)}s mem/agent=${r.memPerAgentKiB.toFixed(0)}KiB mem/queue=${r.memPerQueueKiB.toFixed(1)}KiB idle_cpu=${r.idleCpuPct.toFixed(1)}% deliveries/s=${r.deliveriesPerS.toFixed(0)} cpu/delivery=${r.cpuPerDeliveryUs.toFixed(0)}us affected=${r.affected} recover_p50=${r.recoverP50S.toFixed(2)}s recover_max=${r.recoverMaxS.toFixed(2)}s unrecovered=${r.unrecovered} lost_in_outage=${r.lostInOutage} lost_after_recovery=${r.lostAfterRecovery} leftover_queues=${r.leftoverQueues} listen_drops=${r.listenDrops}`,
    );
  }
  const [ours, ...others] = KINDS;
  const o = results.get(ours!);
  if (!o) return;
  for (const k of others) {
    const b = results.get(k);
    if (!b) continue;
    const line = (metric: string, x: number, y: number, unit: string, digits = 1) =>
      console.log(
        `scale.queue.${metric}.${k} ours=${x.toFixed(digits)}${unit} baseline=${y.toFixed(digits)}${unit} ratio=${(y / x).toFixed(2)} (${ours} vs ${k})`,
      );
    line('setup', o.setupS, b.setupS, 's');
    line('mem_per_agent', o.memPerAgentKiB, b.memPerAgentKiB, 'KiB', 0);
    line('idle_cpu', o.idleCpuPct, b.idleCpuPct, '%');
    line('cpu_per_delivery', o.cpuPerDeliveryUs, b.cpuPerDeliveryUs, 'us', 0);
    line('recover_max', o.recoverMaxS, b.recoverMaxS, 's', 2);
  }
}

if (process.env.SCALEQ_ROLE === 'worker') {
  worker().catch((e) => {
    console.error(e);
    process.exit(1);
  });
} else {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
