// A worker process of bench:scale: runs many simulated hosts, each the real Agent (its own broker
// connection, queue, bindings, signature checks, decoding, revision handling and sync RPC) over the
// in-memory dataplane instead of the kernel. Forked by bench/scale.ts and driven over the IPC channel.
//
// What the bench needs to know about a host is when a change reached its "kernel": the recording
// dataplane notes, per host, the first time a watched token was applied — `p:<port>` (the port's
// filter), `m:<group>:<ip>` (an address in a member set), `r:<port range min>` (a rule in a filter).
import type { Channel } from 'amqplib';
import pino from 'pino';
import { Agent } from '../src/agent/agent.js';
import { loadConfig, type AgentConfig } from '../src/agent/config.js';
import { setKey, type ApplyOutcome, type ChangeSet } from '../src/firewall/dataplane.js';
import { MemoryDataplane } from '../src/firewall/memory.js';
import { agentQueue } from '../src/protocol/routing.js';

export type WorkerCommand =
  | { cmd: 'start'; url: string; keyFile: string; hosts: string[]; concurrency: number; jitterMs: number }
  | { cmd: 'watch'; prefixes: string[] }
  | { cmd: 'poll' }
  | { cmd: 'collect' }
  | { cmd: 'setSizes'; key: string }
  | { cmd: 'catchAll'; exchange: string }
  | { cmd: 'counters' }
  | { cmd: 'stop' };

export interface HostCounters {
  bytes: number;
  messages: number;
  syncs: number;
  reconnects: number;
  handlerErrors: number;
}

/** Remembers the first time each watched token was applied on one host. */
class RecordingDataplane extends MemoryDataplane {
  private readonly seen = new Set<string>();
  constructor(
    private readonly sink: (token: string, at: number) => void,
    private readonly watching: () => string[],
  ) {
    super();
  }

  override async apply(c: ChangeSet): Promise<ApplyOutcome> {
    const out = await super.apply(c);
    // The memory backend keeps every change set for tests; a long simulation must not.
    this.applied.length = 0;
    const prefixes = this.watching();
    if (prefixes.length === 0) return out;
    const at = Date.now();
    const failed = new Set(out.failedSets.map((f) => setKey(f.ref)));
    const note = (token: string) => {
      if (!prefixes.some((p) => token.startsWith(p)) || this.seen.has(token)) return;
      this.seen.add(token);
      this.sink(token, at);
    };
    for (const s of c.sets.fill) if (!failed.has(setKey(s))) for (const ip of s.members) note(`m:${s.groupId}:${ip}`);
    for (const d of c.sets.delta) if (!failed.has(setKey(d))) for (const ip of d.add) note(`m:${d.groupId}:${ip}`);
    const refused = new Set(out.failedFilters.map((f) => f.portId));
    for (const f of c.filters.upsert) {
      if (refused.has(f.portId)) continue;
      note(`p:${f.portId}`);
      for (const r of f.rules) if (r.portRangeMin !== null) note(`r:${r.portRangeMin}`);
    }
    return out;
  }
}

interface Sim {
  host: string;
  agent: Agent;
  dp: RecordingDataplane;
}

const sims: Sim[] = [];
let watching: string[] = [];
/** Tokens recorded since the last watch: [host index in this worker, token, time]. */
let fresh: [number, string, number][] = [];
const log = pino({ level: process.env.SCALE_AGENT_LOG ?? 'error' });

/** The defaults of a deployed agent (loadConfig), but for what a simulation must not do. */
function config(url: string, keyFile: string, host: string): AgentConfig {
  return loadConfig(undefined, {
    SG_AGENT_HOST: host,
    SG_AMQP_URL: url,
    SG_TRUSTED_KEYS: keyFile,
    // Never opened (the dataplane is given); were it ignored, the kernel backend would fail here
    // instead of touching this machine's own firewall.
    SG_NETNS: '/nonexistent/sg-scale',
    // No drift can happen in memory; the periodic full sync would only add noise to the figures.
    SG_RECONCILE_INTERVAL_MS: '0',
    SG_FULL_SYNC_INTERVAL_MS: '0',
    SG_METRICS_LISTEN: '',
    SG_SYNC_TIMEOUT_MS: '10000',
    SG_LOG_LEVEL: 'error',
  });
}

async function start(c: Extract<WorkerCommand, { cmd: 'start' }>): Promise<unknown> {
  const t0 = Date.now();
  let next = 0;
  // A bounded number of connects in flight, each after a random pause: a thousand at once would
  // overflow the broker's listen backlog (128 by default) and turn into SYN retries.
  const lane = async () => {
    while (next < c.hosts.length) {
      const host = c.hosts[next]!;
      const index = next++;
      await new Promise((r) => setTimeout(r, Math.random() * c.jitterMs));
      const dp = new RecordingDataplane(
        (token, at) => fresh.push([index, token, at]),
        () => watching,
      );
      const agent = new Agent(config(c.url, c.keyFile, host), log.child({ host }), { dataplane: dp });
      sims[index] = { host, agent, dp };
      await agent.start();
    }
  };
  await Promise.all(Array.from({ length: c.concurrency }, lane));
  return { ms: Date.now() - t0, started: sims.length };
}

async function counters(): Promise<Record<string, HostCounters>> {
  const out: Record<string, HostCounters> = {};
  const sum = async (m: { get(): Promise<{ values: { value: number }[] }> }) => (await m.get()).values.reduce((s, v) => s + v.value, 0);
  for (const s of sims) {
    const m = s.agent.metrics;
    out[s.host] = {
      bytes: await sum(m.bytes),
      messages: await sum(m.messages),
      syncs: await sum(m.resyncs),
      reconnects: await sum(m.reconnects),
      handlerErrors: await sum(m.handlerErrors),
    };
  }
  return out;
}

async function handle(c: WorkerCommand): Promise<unknown> {
  switch (c.cmd) {
    case 'start':
      return start(c);
    case 'watch':
      watching = c.prefixes;
      fresh = [];
      return null;
    case 'poll':
      // Only a count while a workload runs: the controller's CPU is measured in the parent meanwhile.
      return fresh.length;
    case 'collect':
      return fresh.map(([i, token, at]) => [sims[i]!.host, token, at]);
    case 'setSizes':
      return Object.fromEntries(sims.map((s) => [s.host, s.dp.sets.get(c.key)?.size ?? 0]));
    case 'counters':
      return counters();
    case 'catchAll':
      // The baseline: every host of this worker also hears everything routed to the catch-all
      // exchange. The agent's queue is exclusive to its connection, so only the agent's own channel
      // may bind it (a bench reaching into the agent: no reconnect happens while it runs).
      for (const s of sims) await (s.agent as unknown as { ch: Channel }).ch.bindQueue(agentQueue(s.host), c.exchange, '');
      return null;
    case 'stop':
      await Promise.all(sims.map((s) => s.agent.stop().catch(() => undefined)));
      return null;
  }
}

process.on('message', (c: WorkerCommand & { id: number }) => {
  handle(c).then(
    (result) => process.send!({ id: c.id, result }),
    (e: unknown) => process.send!({ id: c.id, error: String((e as Error)?.stack ?? e) }),
  );
});
process.on('disconnect', () => process.exit(0));
