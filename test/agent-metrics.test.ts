// The agent's Prometheus metrics: what the engine counts itself is exported as counters (a gauge named
// `_total` breaks rate() and increase() across restarts and is refused by exposition linters), each
// following the engine's count at scrape time. Unit test of that mapping; test/security.test.ts reads
// the same counters from a real agent's /metrics.
import test from 'ava';
import net, { type AddressInfo } from 'node:net';
import { AgentMetrics, InputError } from '../src/agent/metrics.js';
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

test("the agent's /metrics and /status listener answers any request target and goes on", async (t) => {
  const m = new AgentMetrics(() => undefined);
  const server = await m.serve('127.0.0.1:0', {
    '/status': () => ({ ok: true }),
    '/fails': () => {
      throw new InputError('bad query');
    },
  });
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const { port } = server.address() as AddressInfo;
  // Node hands these targets to the listener as they are; `new URL` throws on some of them.
  const answer = (target: string) =>
    new Promise<number>((resolve, reject) => {
      const sock = net.connect(port, '127.0.0.1', () => sock.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
      let text = '';
      sock.on('data', (b: Buffer) => (text += b.toString()));
      sock.on('end', () => resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0)));
      sock.on('error', reject);
    });
  for (const target of ['//[', '//a:b@', '///', '//a:99999/x', '*', 'http://evil.example/status']) t.is(await answer(target), 400, target);
  t.is(await answer('/nothing'), 404);
  t.is(await answer('/fails'), 400);
  t.is(await answer('/status'), 200, 'and it still serves');
  t.is(await answer('/metrics'), 200);
});
