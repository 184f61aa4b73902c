// A RabbitMQ node of our own beside the machine's: its own node name, ports, data directory, config
// and plugins, stopped (and its directory removed) by `stop()`. Used where a test or benchmark must not
// share the machine's broker (a TLS-only listener; a thousand connections; a run another suite's broker
// restart would spoil). The machine's node and its users are not touched.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './net.js';
import { ensureRabbit } from './rabbit.js';

export interface OwnRabbitNode {
  /** `name@host`, for `rabbitmqctl -n`. */
  node: string;
  /** The AMQP port the config listens on. */
  port: number;
  dir: string;
  pid(): number;
  stop(): void;
}

export interface OwnRabbitOptions {
  /** Node name before `@localhost` (a random suffix is added). */
  name: string;
  /** A directory already holding what the config refers to (certificates); else a new one. */
  dir?: string;
  /** The AMQP port (default: a free one). */
  port?: number;
  /** rabbitmq.conf, given the port and the directory. */
  conf: (at: { port: number; dir: string }) => string;
  plugins?: string[];
  /** Raise the open-files limit to the hard limit: the server switches user through `su`, whose PAM
   *  session sets the soft limit back to 1,024, too few for a thousand connections. */
  manyFiles?: boolean;
  /** What a failure to start says it was. */
  what?: string;
}

export async function startRabbitNode(o: OwnRabbitOptions): Promise<OwnRabbitNode> {
  await ensureRabbit(); // epmd, and the Erlang cookie the CLI uses
  const dir = o.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), `sg-${o.name}-node-`));
  const port = o.port ?? (await freePort());
  const [distPort, nodePort] = [await freePort(), await freePort()];
  const node = `${o.name}${randomBytes(3).toString('hex')}@localhost`;
  fs.writeFileSync(path.join(dir, 'rabbitmq.conf'), o.conf({ port, dir }));
  fs.writeFileSync(path.join(dir, 'enabled_plugins'), `[${(o.plugins ?? []).join(',')}].\n`);
  // The server runs as the rabbitmq user: it must read its files and write its data and logs.
  spawnSync('chown', ['-R', 'rabbitmq:rabbitmq', dir]);
  fs.chmodSync(dir, 0o755);
  const env = {
    ...process.env,
    RABBITMQ_NODENAME: node,
    // The default listener's port, for a config that sets none (a TLS-only node).
    RABBITMQ_NODE_PORT: String(nodePort),
    RABBITMQ_DIST_PORT: String(distPort),
    RABBITMQ_MNESIA_BASE: path.join(dir, 'mnesia'),
    RABBITMQ_LOG_BASE: path.join(dir, 'log'),
    RABBITMQ_CONFIG_FILE: path.join(dir, 'rabbitmq'),
    RABBITMQ_ENABLED_PLUGINS_FILE: path.join(dir, 'enabled_plugins'),
    RABBITMQ_PID_FILE: path.join(dir, 'pid'),
  };
  const pidFile = path.join(dir, 'pid');
  const pid = () => (fs.existsSync(pidFile) ? Number(fs.readFileSync(pidFile, 'utf8').trim()) : 0);
  const stop = () => {
    const r = spawnSync('rabbitmqctl', ['-n', node, 'stop'], { stdio: 'ignore', timeout: 60_000 });
    // Not reachable (still starting, or failed half-way): end the process we started, by its pid.
    if (r.status !== 0 && pid() > 1) spawnSync('kill', ['-KILL', String(pid())]);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  if (o.manyFiles) {
    spawnSync('su', ['rabbitmq', '-s', '/bin/sh', '-c', 'ulimit -n "$(ulimit -Hn)" && cd /var/lib/rabbitmq && exec /usr/lib/rabbitmq/bin/rabbitmq-server -detached'], { env, stdio: 'ignore' });
  } else {
    spawnSync('rabbitmq-server', ['-detached'], { env, stdio: 'ignore' });
  }
  // await_startup needs the node registered with epmd first, which takes the VM a few seconds.
  let up = spawnSync('true', { encoding: 'utf8' });
  for (const end = Date.now() + 120_000; Date.now() < end; await new Promise((r) => setTimeout(r, 1000))) {
    up = spawnSync('rabbitmqctl', ['-n', node, 'await_startup', '--timeout', '60'], { encoding: 'utf8', timeout: 90_000 });
    if (up.status === 0) break;
  }
  if (up.status !== 0) {
    const logs = path.join(dir, 'log');
    const log = fs.existsSync(logs) ? fs.readdirSync(logs).map((f) => fs.readFileSync(path.join(logs, f), 'utf8').slice(-2000)).join('\n') : '';
    stop();
    throw new Error(`${o.what ?? 'RabbitMQ node'} did not start: ${up.stderr || up.stdout}\n${log}`);
  }
  return { node, port, dir, pid, stop };
}
