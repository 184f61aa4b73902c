// Prometheus metrics of the agent (prom-client), served on loopback by default with /status beside them.
import http from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { FirewallEngine } from '../firewall/engine.js';
import type { NetworkLogStats } from './network-log.js';
import { ConfigError, listenError, parseTcpListen, TCP_LISTEN_FORM } from '../settings.js';

/** A request the agent's listener cannot answer as asked (a 400, with its message). */
export class InputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InputError';
  }
}

export class AgentMetrics {
  readonly registry = new Registry();
  readonly messages = new Counter({
    name: 'sg_agent_messages_total',
    help: 'Messages received, by type',
    labelNames: ['type'],
    registers: [this.registry],
  });
  readonly bytes = new Counter({
    name: 'sg_agent_bytes_received_total',
    help: 'Message and sync-reply bytes received from the broker',
    registers: [this.registry],
  });
  readonly rejected = new Counter({
    name: 'sg_agent_messages_rejected_total',
    help: 'Malformed messages rejected to the dead-letter queue',
    registers: [this.registry],
  });
  readonly unauthenticated = new Counter({
    name: 'sg_agent_messages_unauthenticated_total',
    help: 'Updates and sync replies refused for their signature (unsigned, unknown-key, bad-signature)',
    labelNames: ['reason'],
    registers: [this.registry],
  });
  readonly syncRetries = new Counter({
    name: 'sg_agent_sync_retries_total',
    help: 'Sync RPC attempts that failed (timeout, no controller) and were retried',
    registers: [this.registry],
  });
  readonly dropped = new Counter({
    name: 'sg_agent_messages_stale_total',
    help: 'Duplicate or stale messages dropped by revision',
    registers: [this.registry],
  });
  readonly resyncs = new Counter({
    name: 'sg_agent_resyncs_total',
    help: 'Sync RPCs, by scope (host, group)',
    labelNames: ['scope'],
    registers: [this.registry],
  });
  readonly reconnects = new Counter({ name: 'sg_agent_reconnects_total', help: 'Broker reconnections', registers: [this.registry] });
  readonly handlerErrors = new Counter({
    name: 'sg_agent_handler_errors_total',
    help: 'Updates whose handling failed (logged; the periodic full sync makes up for them)',
    registers: [this.registry],
  });
  readonly quarantined = new Counter({
    name: 'sg_agent_quarantined_total',
    help: 'Objects of sync replies the validator refused, by kind (port, group, members)',
    labelNames: ['kind'],
    registers: [this.registry],
  });
  readonly bindings = new Gauge({ name: 'sg_agent_group_bindings', help: 'Group routing keys bound', registers: [this.registry] });
  readonly lag = new Histogram({
    name: 'sg_agent_convergence_lag_seconds',
    help: 'From the publisher sending an update to it being in the kernel',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5],
    registers: [this.registry],
  });

  constructor(engine: () => FirewallEngine | undefined) {
    // The engine counts these itself; each counter follows its count at scrape time. A count lower
    // than the last one seen comes from a new engine (its own count from zero): all of it is new.
    const total = (name: string, help: string, pick: (s: FirewallEngine['stats']) => number) => {
      let seen = 0;
      return new Counter({
        name,
        help,
        registers: [this.registry],
        collect() {
          const e = engine();
          if (!e) return;
          const now = pick(e.stats);
          const added = now >= seen ? now - seen : now;
          if (added > 0) this.inc(added);
          seen = now;
        },
      });
    };
    total('sg_agent_set_operations_total', 'ipset syncs and delta batches applied', (s) => s.setSyncs + s.setDeltas);
    total(
      'sg_agent_chain_restores_total',
      'Rule writes: iptables-restore runs, or nftables transactions that changed chains',
      (s) => s.restores,
    );
    total('sg_agent_drift_repaired_total', 'Kernel objects repaired or removed by reconcile', (s) => s.repairs);
    total('sg_agent_apply_errors_total', 'Failed firewall applies (retried)', (s) => s.applyErrors);
    total('sg_agent_conntrack_deleted_total', 'Conntrack entries deleted', (s) => s.conntrackDeleted);
    new Gauge({
      name: 'sg_agent_quarantined_objects',
      help: 'Objects quarantined now (refused by the validator or the kernel; see /status)',
      registers: [this.registry],
      collect() {
        const e = engine();
        if (e) this.set(e.stats.quarantined);
      },
    });
  }

  /** Security-group logging's counts: packets the kernel logged, lines written, packets over the
   *  rate limit. */
  countNetworkLog(stats: () => NetworkLogStats | undefined): void {
    const total = (name: string, help: string, pick: (s: NetworkLogStats) => number) => {
      let seen = 0;
      new Counter({
        name,
        help,
        registers: [this.registry],
        collect() {
          const s = stats();
          if (!s) return;
          const now = pick(s);
          if (now > seen) this.inc(now - seen);
          seen = now;
        },
      });
    };
    total('sg_agent_network_log_packets_total', "Packets the logging rules sent to the agent's log group", (s) => s.packets);
    total('sg_agent_network_log_lines_total', 'Security-group log lines written', (s) => s.lines);
    total('sg_agent_network_log_limited_total', 'Logged packets over the rate limit, not written', (s) => s.limited);
  }

  /** Per rule of every port's chains, what the kernel counted (opt-in: a series per rule and port). */
  countRules(engine: () => FirewallEngine | undefined): void {
    // The kernel's counts restart when a chain is rewritten: a count lower than the last one seen is
    // all new, so the exported counters never go down.
    const seen = new Map<string, number>();
    const follow = (c: Counter, key: string, labels: Record<string, string>, now: number) => {
      const was = seen.get(key) ?? 0;
      const added = now >= was ? now - was : now;
      if (added > 0) c.inc(labels, added);
      seen.set(key, now);
    };
    const labelNames = ['port', 'chain', 'rule'];
    const help = (what: string) => `${what} that reached each rule of each port (rule: a security-group rule id, or a fixed rule's name)`;
    // Registered first, so its collect (which reads the kernel for both) runs before the bytes are listed.
    const packets = new Counter({
      name: 'sg_agent_rule_packets_total',
      help: help('Packets'),
      labelNames,
      registers: [this.registry],
      async collect() {
        const e = engine();
        if (!e) return;
        for (const p of await e.counters().catch(() => [])) {
          for (const r of [...p.rules.map((x) => ({ ...x, rule: x.ruleId })), ...p.fixed.map((x) => ({ ...x, rule: x.name }))]) {
            const labels = { port: p.portId, chain: r.chain, rule: r.rule };
            const key = `${p.portId} ${r.chain} ${r.rule}`;
            follow(packets, `p ${key}`, labels, r.packets);
            follow(bytes, `b ${key}`, labels, r.bytes);
          }
        }
      },
    });
    const bytes = new Counter({ name: 'sg_agent_rule_bytes_total', help: help('Bytes'), labelNames, registers: [this.registry] });
  }

  /** /metrics, and each of `routes` as JSON (its handler gets the query; an InputError is a 400). */
  serve(listen: string, routes: Record<string, (q: URLSearchParams) => unknown>): Promise<http.Server> {
    const at = parseTcpListen(listen);
    if (!at) throw new ConfigError(`metrics.listen must be ${TCP_LISTEN_FORM}, not ${JSON.stringify(listen)}`);
    const { host, port } = at;
    const server = http.createServer((req, res) => {
      // Whatever a request holds, it is answered and the agent goes on: an error in this listener
      // would be uncaught, and stop the agent.
      const fail = (status: number) => (res.headersSent ? res.destroy() : res.writeHead(status).end());
      let url: URL;
      try {
        // Origin-form only ('/…'): anything else ('//[', '*', an absolute URL) names no route here.
        if (!req.url?.startsWith('/')) return fail(400);
        url = new URL(req.url, 'http://agent');
      } catch {
        return fail(400);
      }
      const route = routes[url.pathname];
      if (url.pathname === '/metrics') {
        this.registry
          .metrics()
          .then((text) => {
            res.writeHead(200, { 'content-type': this.registry.contentType });
            res.end(text);
          })
          .catch(() => fail(500));
      } else if (route) {
        Promise.resolve()
          .then(() => route(url.searchParams))
          .then(
            (body) => {
              res.writeHead(200, { 'content-type': 'application/json' });
              res.end(JSON.stringify(body));
            },
            (e: unknown) => {
              res.writeHead(e instanceof InputError ? 400 : 500, { 'content-type': 'application/json' });
              res.end(JSON.stringify({ error: e instanceof Error ? e.message : String(e) }));
            },
          )
          .catch(() => fail(500));
      } else fail(404);
    });
    return new Promise((resolve, reject) => {
      server.once('error', (e) => reject(listenError('metrics.listen', listen, e)));
      server.listen(port, host, () => resolve(server));
    });
  }
}
