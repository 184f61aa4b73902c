// Prometheus metrics of the controller (prom-client), served by the admin API at `GET /metrics`: how
// long the store takes to commit a change, how far behind a replicated store's watch runs, and the
// outbox and leadership the relay works with.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export class StoreMetrics {
  readonly registry = new Registry();
  readonly commit = new Histogram({
    name: 'sg_controller_store_commit_seconds',
    help: 'One store transaction (a change and its outbox messages; with etcd, the changes batched into it), from sending to committed',
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 3],
    registers: [this.registry],
  });
  readonly watchLag = new Histogram({
    name: 'sg_controller_store_watch_lag_seconds',
    help: "etcd: from a transaction committed to this controller's copy of the store showing it (through the watch)",
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 3, 10],
    registers: [this.registry],
  });
  readonly conflicts = new Counter({
    name: 'sg_controller_store_conflicts_total',
    help: 'etcd: transactions refused because another controller changed what they read (run again on the newer state)',
    registers: [this.registry],
  });

  /** Gauges read at scrape time from whoever knows them. */
  observe(o: { outbox: () => number; leader: () => boolean; quorum: () => boolean; behindMs: () => number }): void {
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          this.set(read());
        },
      });
    gauge('sg_controller_outbox_entries', 'Messages stored but not yet confirmed by the broker (every controller of the store)', o.outbox);
    gauge('sg_controller_leader', '1 while this controller holds the leadership (publishes)', () => (o.leader() ? 1 : 0));
    gauge('sg_controller_store_quorum', '1 while the store can take changes (etcd: a majority answers)', () => (o.quorum() ? 1 : 0));
    gauge(
      'sg_controller_store_watch_behind_seconds',
      "etcd: how long this controller's copy has been known to lack a change a majority holds (0: current)",
      () => o.behindMs() / 1000,
    );
  }
}
