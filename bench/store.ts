// The controller's store: LMDB (the embedded default, baseline) against a three-member etcd cluster
// (ours: what controllers on several machines share), side by side in one run, and the failover of a
// control plane on three machines.
//
//   latency     an API change (PUT /ports/{id} on the admin API, a new address in a group) from the
//               request to its member delta arriving at a consumer of the group's routing key: the
//               store's commit, the relay's read of the outbox, the signed publish, the broker. The
//               relay's pacing is set to 1 ms (it is the same for both stores, and would otherwise be
//               most of the figure). Serial: one change at a time, each published before the next;
//               16 concurrent clients: each sends its changes one after another.
//   throughput  changes per second with the 16 clients, until the last one is published.
//   failover    scripts/lab.sh's three machines (etcd member, RabbitMQ node, controller each) and a
//               compute host with an agent: the leader's whole machine killed (SIGKILL of all its
//               processes), then a change sent through a surviving machine, retried until answered;
//               the time from the kill to that change being in the agent's kernel set. Ten runs, the
//               machine started again between runs.
//
// Output: store.change.p50|p99[.c16] ours=<etcd> baseline=<lmdb>, store.throughput ours=… baseline=…,
// store.failover ours=<max> p50=<p50> runs=<n> (seconds). STORE_PARTS=latency,failover (default both;
// failover needs root), STORE_SERIAL (default 300), STORE_CONCURRENT (changes with 16 clients,
// default 1600), STORE_FAILOVER_RUNS (default 10).
import amqp from 'amqplib';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Controller } from '../src/controller/controller.js';
import { GROUP_EXCHANGE, groupKey } from '../src/protocol/routing.js';
import { generateSigningKey, MessageSigner } from '../src/protocol/signing.js';
import { startRabbitNode, type OwnRabbitNode } from '../test/helpers/rabbit-node.js';
import { EtcdCluster } from '../test/helpers/etcd.js';
import { Lab } from '../test/helpers/lab.js';
import { waitFor } from '../test/helpers/wait.js';

const PARTS = (process.env.STORE_PARTS ?? 'latency,failover').split(',');
const SERIAL = Number(process.env.STORE_SERIAL ?? 300);
const CONCURRENT = Number(process.env.STORE_CONCURRENT ?? 1600);
const CLIENTS = 16;
const FAILOVER_RUNS = Number(process.env.STORE_FAILOVER_RUNS ?? 10);
const TOKEN = `bench-${randomBytes(12).toString('hex')}`;

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
};
const sec = (x: number) => `${x.toFixed(4)}s`;

interface Measured {
  serial: number[];
  concurrent: number[];
  throughput: number;
  commit: { p50: number; p99: number };
  /** Changes answered 503 (and sent again). */
  refused: number;
}

/** One store's run: a controller on it, its admin API, a consumer of the group's messages. */
async function measure(broker: OwnRabbitNode, store: 'lmdb' | 'etcd', etcd?: EtcdCluster): Promise<Measured> {
  const vhost = `sgstore-${store}-${randomBytes(3).toString('hex')}`;
  const ctl = (args: string[]) => spawnSync('rabbitmqctl', ['-q', '-n', broker.node, ...args], { stdio: 'ignore' });
  ctl(['add_vhost', vhost]);
  ctl(['set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*']);
  const url = `amqp://guest:guest@127.0.0.1:${broker.port}/${vhost}`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-bench-store-'));
  const keys = generateSigningKey(dir);
  const controller = await Controller.start({
    amqpUrl: url,
    signer: MessageSigner.fromFile(keys.privateKeyFile),
    dataDir: path.join(dir, 'data'),
    ...(etcd ? { etcd: { endpoints: etcd.endpoints, prefix: `/bench-${randomBytes(3).toString('hex')}/` } } : {}),
    api: { listen: '127.0.0.1:0', token: TOKEN },
    coalesceMs: 1,
    relayIntervalMs: { min: 1, max: 1 },
  });
  const conn = await amqp.connect(url);
  try {
    await controller.brokerReady;
    await waitFor('the controller leads', () => controller.isLeader, 30_000);
    const ch = await conn.createChannel();
    const q = await ch.assertQueue('', { exclusive: true });
    await ch.bindQueue(q.queue, GROUP_EXCHANGE, groupKey('bench'));
    let refused = 0;
    const sentAt = new Map<string, number>();
    const latency = new Map<string, number>();
    const waiters = new Map<string, () => void>();
    await ch.consume(
      q.queue,
      (m) => {
        if (!m) return;
        const now = performance.now();
        const body = JSON.parse(m.content.toString()) as { type: string; added?: string[] };
        for (const ip of body.added ?? []) {
          const t = sentAt.get(ip);
          if (t !== undefined && !latency.has(ip)) latency.set(ip, (now - t) / 1000);
          waiters.get(ip)?.();
        }
      },
      { noAck: true },
    );
    const api = controller.httpAddress!;
    const put = async (i: number, round: number) => {
      const ip = `10.${round}.${i >> 8}.${i & 255}`;
      const published = new Promise<void>((r) => waiters.set(ip, r));
      sentAt.set(ip, performance.now());
      // A 503 (the store did not answer in time) is retried, as a client does; counted.
      for (;;) {
        const res = await fetch(`${api}/ports/b${round}-${i}`, {
          method: 'PUT',
          headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
          body: JSON.stringify({
            host: `h${i % 50}`,
            device: `tap${i}`,
            mac: '02:00:00:00:00:01',
            fixedIps: [ip],
            securityGroups: ['bench'],
          }),
        });
        const text = await res.text();
        if (res.ok) break;
        if (res.status !== 503) throw new Error(`PUT: ${res.status} ${text}`);
        refused++;
      }
      return { ip, published };
    };
    // Warm-up (connections, JIT), not counted.
    for (let i = 0; i < 30; i++) await (await put(i, 1)).published;
    const serial: number[] = [];
    for (let i = 0; i < SERIAL; i++) {
      const { ip, published } = await put(i, 2);
      await published;
      serial.push(latency.get(ip)!);
    }
    let next = 0;
    const ips: string[] = [];
    const started = performance.now();
    const pending: Promise<void>[] = [];
    await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        while (next < CONCURRENT) {
          const { ip, published } = await put(next++, 3);
          ips.push(ip);
          pending.push(published);
        }
      }),
    );
    await Promise.all(pending);
    const seconds = (performance.now() - started) / 1000;
    const commits = (await controller.metrics.registry.getSingleMetric('sg_controller_store_commit_seconds')!.get()).values;
    const bucketQ = (q: number) => {
      const named = commits as { metricName?: string; value: number; labels: Record<string, string | number> }[];
      const count = named.find((v) => v.metricName?.endsWith('_count'))!.value;
      const b = named.filter((v) => v.metricName?.endsWith('_bucket')).find((v) => v.value >= q * count);
      return Number(b?.labels.le ?? NaN);
    };
    return {
      serial,
      concurrent: ips.map((ip) => latency.get(ip)!),
      throughput: CONCURRENT / seconds,
      commit: { p50: bucketQ(0.5), p99: bucketQ(0.99) },
      refused,
    };
  } finally {
    await conn.close().catch(() => undefined);
    await controller.stop();
    fs.rmSync(dir, { recursive: true, force: true });
    ctl(['delete_vhost', vhost]);
  }
}

async function failover(): Promise<number[]> {
  const lab = await Lab.up({ hosts: 1, logLevel: 'warn' });
  const times: number[] = [];
  try {
    const ok = async (m: number, p: string, body: unknown) =>
      (await lab.call(m, 'PUT', p, body, 3_000).catch(() => ({ status: 0 }))).status === 200;
    await waitFor(
      'the group',
      () => ok(1, '/groups/web', { rules: [{ id: 'w', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'web' }] }),
      60_000,
    );
    await waitFor(
      'the host port',
      () =>
        ok(1, '/ports/own', {
          host: 'lab-host-1',
          device: 'tap-own',
          mac: '02:00:00:00:aa:01',
          fixedIps: ['10.120.0.1'],
          securityGroups: ['web'],
        }),
      60_000,
    );
    await waitFor('the agent holds web', async () => (await lab.kernelMembers(1, 'web')).includes('10.120.0.1'), 120_000);
    for (let run = 0; run < FAILOVER_RUNS; run++) {
      const leader = await waitFor('a leader', () => lab.leader(), 60_000);
      const survivor = leader === 1 ? 2 : 1;
      const ip = `10.121.0.${run + 1}`;
      // The machine started again last has caught up: any one machine may go down.
      await waitFor("the leader's machine not quorum-critical", () => lab.quorumSafe(leader), 120_000);
      const killedAt = performance.now();
      await lab.kill(leader);
      await waitFor(
        'the change answered',
        () =>
          ok(survivor, `/ports/f${run}`, {
            host: 'elsewhere',
            device: `f${run}`,
            mac: '02:00:00:00:bb:01',
            fixedIps: [ip],
            securityGroups: ['web'],
          }),
        120_000,
      );
      const answeredAt = performance.now();
      await waitFor('the change in the kernel', async () => (await lab.kernelMembers(1, 'web')).includes(ip), 120_000).catch((e: Error) => {
        throw new Error(`${e.message} (run ${run + 1}, machine ${leader} killed)\n${lab.logs()}`);
      });
      const t = (performance.now() - killedAt) / 1000;
      times.push(t);
      console.log(
        `# failover run ${run + 1}: machine ${leader} killed; change answered after ${((answeredAt - killedAt) / 1000).toFixed(2)}s, ` +
          `in the agent's kernel after ${t.toFixed(2)}s`,
      );
      await lab.start(leader);
      await waitFor(
        'three controllers',
        async () =>
          (
            await Promise.all(
              [1, 2, 3].map((m) =>
                lab.health(m).then(
                  (h) => h.store.quorum,
                  () => false,
                ),
              ),
            )
          ).every(Boolean),
        120_000,
      );
    }
  } finally {
    await lab.down();
  }
  return times;
}

(async () => {
  const load = os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(' ');
  const runs = `serial=${SERIAL} concurrent=${CONCURRENT} clients=${CLIENTS} failover runs=${FAILOVER_RUNS}`;
  console.log(`# bench:store ${runs} (${os.cpus().length} cpus, load ${load})`);
  if (PARTS.includes('latency')) {
    const broker = await startRabbitNode({
      name: `sgstore${randomBytes(2).toString('hex')}`,
      what: "bench:store's RabbitMQ node",
      conf: ({ port }) => `listeners.tcp.default = 127.0.0.1:${port}\n`,
    });
    const etcd = await EtcdCluster.start(3);
    try {
      const base = await measure(broker, 'lmdb');
      const ours = await measure(broker, 'etcd', etcd);
      console.log(
        `# store commit (one transaction, the store's own histogram, bucket bounds): ` +
          `lmdb p50<=${base.commit.p50}s p99<=${base.commit.p99}s; etcd p50<=${ours.commit.p50}s p99<=${ours.commit.p99}s; ` +
          `answered 503 and sent again: lmdb ${base.refused}, etcd ${ours.refused}`,
      );
      const line = (id: string, o: number, b: number) =>
        console.log(`store.${id} ours=${sec(o)} baseline=${sec(b)} ratio=${(b / o).toFixed(2)}`);
      line('change.p50', quantile(ours.serial, 0.5), quantile(base.serial, 0.5));
      line('change.p99', quantile(ours.serial, 0.99), quantile(base.serial, 0.99));
      line('change.p50.c16', quantile(ours.concurrent, 0.5), quantile(base.concurrent, 0.5));
      line('change.p99.c16', quantile(ours.concurrent, 0.99), quantile(base.concurrent, 0.99));
      console.log(
        `store.throughput ours=${ours.throughput.toFixed(0)}/s baseline=${base.throughput.toFixed(0)}/s ` +
          `ratio=${(ours.throughput / base.throughput).toFixed(2)}`,
      );
    } finally {
      await etcd.stop();
      broker.stop();
    }
  }
  if (PARTS.includes('failover')) {
    const times = await failover();
    console.log(
      `store.failover ours=${quantile(times, 1).toFixed(2)}s p50=${quantile(times, 0.5).toFixed(2)}s runs=${times.length}` +
        (quantile(times, 1) <= 5 ? ' target<=5s met' : ' target<=5s MISSED'),
    );
  }
  process.exit(0);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
