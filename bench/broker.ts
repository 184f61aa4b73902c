// The RabbitMQ node a benchmark runs on: one of its own, beside the machine's (whose other users must
// not lose their connections, and whose load would blur the figures), started on first use and
// stopped when the benchmark's process ends, however it ends.
import { spawnSync } from 'node:child_process';
import { startRabbitNode, type OwnRabbitNode } from '../test/helpers/rabbit-node.js';

let node: Promise<OwnRabbitNode> | undefined;

function stopOnExit(n: OwnRabbitNode): void {
  let stopped = false;
  const stop = () => {
    if (!stopped) n.stop();
    stopped = true;
  };
  process.once('exit', stop);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => (stop(), process.exit(130)));
}

export interface BenchBroker {
  node: string;
  port: number;
  /** The node's process id (its CPU is part of what the central side of a storm costs). */
  pid(): number;
  /** A fresh vhost `name` where guest may do anything; its URL. */
  vhost(name: string): string;
  /** Removes vhost `name` (and what it held). */
  dropVhost(name: string): void;
}

export async function benchBroker(what = "the benchmark's RabbitMQ node"): Promise<BenchBroker> {
  node ??= startRabbitNode({
    name: 'sgbench',
    what,
    manyFiles: true,
    conf: ({ port }) => `listeners.tcp.default = 127.0.0.1:${port}\n`,
  }).then((n) => {
    stopOnExit(n);
    return n;
  });
  const n = await node;
  const ctl = (...args: string[]) => spawnSync('rabbitmqctl', ['-n', n.node, ...args], { stdio: 'ignore' });
  return {
    node: n.node,
    port: n.port,
    pid: () => n.pid(),
    vhost: (name) => {
      ctl('add_vhost', name);
      ctl('set_permissions', '-p', name, 'guest', '.*', '.*', '.*');
      return `amqp://guest:guest@127.0.0.1:${n.port}/${encodeURIComponent(name)}`;
    },
    dropVhost: (name) => void ctl('delete_vhost', name),
  };
}
