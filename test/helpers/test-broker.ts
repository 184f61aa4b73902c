// The RabbitMQ node the tests use, never the machine's own (rabbit@<host>): tests restart their broker,
// and other users of the machine's must not lose their connections to that. Either the test run's
// node, which scripts/test.sh starts before ava and names in the environment (SG_TEST_RABBIT_*), or,
// for a test file run on its own, a node its worker starts on first use; a watcher process stops that
// one when the worker is gone, however it ends (ava ends workers that outlive a timeout, and Ctrl-C
// ends them all, where no hook of ours would run).
//
//   node --import tsx test/helpers/test-broker.ts start [PID]   start a node; print its SG_TEST_RABBIT_*
//                                                              as shell exports; stop it once PID is gone
//   node --import tsx test/helpers/test-broker.ts stop          stop the node SG_TEST_RABBIT_* name
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { startRabbitNode, stopRabbitNode } from './rabbit-node.js';

export interface TestBroker {
  /** For `rabbitmqctl -n`. */
  node: string;
  /** Its AMQP port on 127.0.0.1. */
  port: number;
  /** The URL of a vhost on it (guest, which may log in over loopback, by default). */
  url(vhost: string, user?: string, password?: string): string;
}

const ENV = { node: 'SG_TEST_RABBIT_NODE', port: 'SG_TEST_RABBIT_PORT', dir: 'SG_TEST_RABBIT_DIR' } as const;
const repo = path.resolve(__dirname, '../..');

function broker(node: string, port: number): TestBroker {
  // A variable pointing the tests at the machine's own node would have them restart it.
  if (/^rabbit@/.test(node)) throw new Error(`${ENV.node}=${node} names the machine's own RabbitMQ node; the tests use one of their own`);
  return {
    node,
    port,
    url: (vhost, user = 'guest', password = 'guest') =>
      `amqp://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${encodeURIComponent(vhost)}`,
  };
}

async function startNode(): Promise<{ node: string; port: number; dir: string }> {
  return startRabbitNode({
    name: 'sgtest',
    what: "the tests' RabbitMQ node",
    conf: ({ port }) => `listeners.tcp.default = 127.0.0.1:${port}\n`,
  });
}

/** A process of its own that stops the node (this file's `stop`) once process `pid` is gone. */
function stopWhenGone(pid: number, n: { node: string; dir: string }): ChildProcess {
  const stop = `${JSON.stringify(process.execPath)} --import tsx ${JSON.stringify(__filename)} stop`;
  const watcher = spawn('sh', ['-c', `while kill -0 ${pid} 2>/dev/null; do sleep 1; done; exec ${stop}`], {
    cwd: repo,
    env: { ...process.env, [ENV.node]: n.node, [ENV.dir]: n.dir },
    detached: true,
    stdio: 'ignore',
  });
  watcher.unref();
  return watcher;
}

let own: Promise<TestBroker> | undefined;

/** The broker of this test run (see the top of this file). */
export function testBroker(): Promise<TestBroker> {
  const node = process.env[ENV.node];
  const port = Number(process.env[ENV.port]);
  if (node && port) return Promise.resolve(broker(node, port));
  own ??= startNode().then((n) => {
    stopWhenGone(process.pid, n);
    return broker(n.node, n.port);
  });
  return own;
}

function rabbitmqctl(node: string, command: string): Promise<void> {
  return new Promise((resolve, reject) => {
    spawn('rabbitmqctl', ['-n', node, command], { stdio: 'ignore' })
      .once('error', reject)
      .once('exit', (code) => {
        if (code === 0) resolve();
        else reject(new Error(`rabbitmqctl -n ${node} ${command} exited ${code}`));
      });
  });
}

/** The broker restarted (its RabbitMQ application stopped, `whileDown` run, started again): every
 *  client loses its connection. Without blocking the event loop, so that clients run meanwhile. Test
 *  files run one at a time (ava's concurrency in package.json): no other file's test sees it. */
export async function restartTestBroker(whileDown: () => Promise<unknown>): Promise<void> {
  const { node } = await testBroker();
  await rabbitmqctl(node, 'stop_app');
  try {
    await whileDown();
  } finally {
    await rabbitmqctl(node, 'start_app');
  }
}

if (require.main === module) {
  const [command, watched] = process.argv.slice(2);
  if (command === 'start') {
    void startNode().then(
      (n) => {
        if (watched) stopWhenGone(Number(watched), n);
        console.log(`export ${ENV.node}=${n.node} ${ENV.port}=${n.port} ${ENV.dir}=${n.dir}`);
      },
      (e: unknown) => {
        console.error((e as Error).message);
        process.exit(1);
      },
    );
  } else if (command === 'stop' && process.env[ENV.node] && process.env[ENV.dir]) {
    stopRabbitNode(process.env[ENV.node]!, process.env[ENV.dir]!);
  } else {
    console.error(`usage: ${path.relative(repo, __filename)} start [PID] | stop (with ${ENV.node} and ${ENV.dir} set)`);
    process.exit(2);
  }
}
