// The agent's Prometheus metrics: what the engine counts itself is exported as counters (a gauge named
// `_total` breaks rate() and increase() across restarts and is refused by exposition linters), each
// following the engine's count at scrape time. Unit test of that mapping; test/security.test.ts reads
// the same counters from a real agent's /metrics.
import test from 'ava';
import { AgentMetrics } from '../src/agent/metrics.js';
import type { EngineStats, FirewallEngine } from '../src/firewall/engine.js';

const ENGINE_TOTALS = [
  'sg_agent_set_operations_total',
  'sg_agent_chain_restores_total',
  'sg_agent_drift_repaired_total',
  'sg_agent_apply_errors_total',
  'sg_agent_conntrack_deleted_total',
];

const stats = (n: number, quarantined = 0): EngineStats => ({
  applies: n,
  applyErrors: n,
  setSyncs: n,
  setDeltas: n,
  restores: n,
  repairs: n,
  conntrackDeleted: n,
  rejectedInput: 0,
  quarantined,
});

test("the engine's counts are counters that follow it, and a new engine's count adds to them (unit)", async (t) => {
  let engine: { stats: EngineStats } | undefined;
  const m = new AgentMetrics(() => engine as FirewallEngine | undefined);
  const read = async () => {
    const text = await m.registry.metrics();
    return Object.fromEntries(
      text
        .split('\n')
        .filter((l) => l && !l.startsWith('#'))
        .map((l) => [l.split(' ')[0]!, Number(l.split(' ')[1])]),
    );
  };
  const text = await m.registry.metrics();
  for (const name of ENGINE_TOTALS) t.regex(text, new RegExp(`^# TYPE ${name} counter$`, 'm'), name);
  t.regex(text, /^# TYPE sg_agent_quarantined_objects gauge$/m, 'what is held now stays a gauge');
  t.is((await read()).sg_agent_chain_restores_total, 0, 'no engine yet');
  engine = { stats: stats(3, 2) };
  t.like(await read(), { sg_agent_chain_restores_total: 3, sg_agent_set_operations_total: 6, sg_agent_quarantined_objects: 2 });
  engine = { stats: stats(5, 0) };
  t.like(await read(), { sg_agent_chain_restores_total: 5, sg_agent_set_operations_total: 10, sg_agent_quarantined_objects: 0 });
  t.like(await read(), { sg_agent_chain_restores_total: 5 }, 'a scrape alone adds nothing');
  // A new engine counts from zero: what it counted is added, the counter never goes down.
  engine = { stats: stats(2) };
  t.like(await read(), { sg_agent_chain_restores_total: 7, sg_agent_apply_errors_total: 7, sg_agent_set_operations_total: 14 });
});
