// Prometheus metrics of the agent (prom-client), served on loopback by default with /status beside them.
import http from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { FirewallEngine } from '../firewall/engine.js';
import { listenError } from '../settings.js';

export class AgentMetrics {
  readonly registry = new Registry();
  readonly messages = new Counter({ name: 'sg_agent_messages_total', help: 'Messages received, by type', labelNames: ['type'], registers: [this.registry] });
  readonly bytes = new Counter({ name: 'sg_agent_bytes_received_total', help: 'Message and sync-reply bytes received from the broker', registers: [this.registry] });
  readonly rejected = new Counter({ name: 'sg_agent_messages_rejected_total', help: 'Malformed messages rejected to the dead-letter queue', registers: [this.registry] });
  readonly unauthenticated = new Counter({ name: 'sg_agent_messages_unauthenticated_total', help: 'Updates and sync replies refused for their signature (unsigned, unknown-key, bad-signature)', labelNames: ['reason'], registers: [this.registry] });
  readonly syncRetries = new Counter({ name: 'sg_agent_sync_retries_total', help: 'Sync RPC attempts that failed (timeout, no controller) and were retried', registers: [this.registry] });
  readonly dropped = new Counter({ name: 'sg_agent_messages_stale_total', help: 'Duplicate or stale messages dropped by revision', registers: [this.registry] });
  readonly resyncs = new Counter({ name: 'sg_agent_resyncs_total', help: 'Sync RPCs, by scope (host, group)', labelNames: ['scope'], registers: [this.registry] });
  readonly reconnects = new Counter({ name: 'sg_agent_reconnects_total', help: 'Broker reconnections', registers: [this.registry] });
  readonly handlerErrors = new Counter({ name: 'sg_agent_handler_errors_total', help: 'Updates whose handling failed (logged; the periodic full sync makes up for them)', registers: [this.registry] });
  readonly quarantined = new Counter({ name: 'sg_agent_quarantined_total', help: 'Objects of sync replies the validator refused, by kind (port, group, members)', labelNames: ['kind'], registers: [this.registry] });
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
    total('sg_agent_chain_restores_total', 'Rule writes: iptables-restore runs, or nftables transactions that changed chains', (s) => s.restores);
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

  serve(listen: string, status: () => unknown): Promise<http.Server> {
    const i = listen.lastIndexOf(':');
    const host = listen.slice(0, i) || '127.0.0.1';
    const port = Number(listen.slice(i + 1));
    const server = http.createServer((req, res) => {
      if (req.url === '/metrics') {
        this.registry.metrics().then((text) => {
          res.writeHead(200, { 'content-type': this.registry.contentType });
          res.end(text);
        }, () => res.writeHead(500).end());
      } else if (req.url === '/status') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(status()));
      } else res.writeHead(404).end();
    });
    return new Promise((resolve, reject) => {
      server.once('error', (e) => reject(listenError('metrics.listen', listen, e)));
      server.listen(port, host, () => resolve(server));
    });
  }
}
