// A RabbitMQ node of our own beside the machine's: its own node name, ports, data directory, config
// and plugins, stopped (and its directory removed) by `stop()`. Every test's broker is one (the tests'
// node, test-broker.ts; a TLS-only listener), and so is a benchmark's that must not share the machine's
// (a thousand connections; a run another suite's broker restart would spoil). The machine's node is
// neither needed nor touched: it may not even run (a fresh CI machine), and its users keep their
// connections. What the nodes share with it is epmd, which the first node started brings up as the
// Erlang VM does, and the rabbitmq user's Erlang cookie, which the CLI (run as that user) reads.
import { spawnSync } from 'node:child_process';
import { randomBytes, randomInt } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { freePort } from './net.js';

export interface OwnRabbitNode {
  /** `name@host`, for `rabbitmqctl -n`. */
  node: string;
  /** The AMQP port the config listens on. */
  port: number;
  dir: string;
  pid(): number;
  stop: () => void;
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

/** The rabbitmq user's Erlang cookie, made as the VM would make it if no node ever ran here: nodes
 *  started at once (a cluster) and the CLI would otherwise each make one of their own. */
export function ensureErlangCookie(): void {
  const entry = spawnSync('getent', ['passwd', 'rabbitmq'], { encoding: 'utf8' }).stdout.split(':');
  const home = entry[5];
  if (!home) throw new Error('no rabbitmq user: is rabbitmq-server installed (scripts/setup.sh)?');
  const cookie = path.join(home, '.erlang.cookie');
  if (fs.existsSync(cookie)) return;
  // Complete (content, owner, mode) before it appears under its name, and only if none appeared meanwhile.
  const draft = `${cookie}.${process.pid}`;
  fs.writeFileSync(draft, Array.from({ length: 20 }, () => String.fromCharCode(65 + randomInt(26))).join(''), { mode: 0o400 });
  spawnSync('chown', ['rabbitmq:rabbitmq', draft]);
  try {
    fs.linkSync(draft, cookie);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  } finally {
    fs.rmSync(draft, { force: true });
  }
}

function pidIn(dir: string): number {
  const file = path.join(dir, 'pid');
  return fs.existsSync(file) ? Number(fs.readFileSync(file, 'utf8').trim()) : 0;
}

/** Stops the node `rabbitmq-server` started with this data directory (its pid file in it), and removes
 *  the directory. */
export function stopRabbitNode(node: string, dir: string): void {
  const r = spawnSync('rabbitmqctl', ['-n', node, 'stop'], { stdio: 'ignore', timeout: 60_000 });
  // Not reachable (still starting, or failed half-way): end the process we started, by its pid.
  if (r.status !== 0 && pidIn(dir) > 1) spawnSync('kill', ['-KILL', String(pidIn(dir))]);
  fs.rmSync(dir, { recursive: true, force: true });
}

export async function startRabbitNode(o: OwnRabbitOptions): Promise<OwnRabbitNode> {
  ensureErlangCookie();
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
  const pid = () => pidIn(dir);
  const stop = () => stopRabbitNode(node, dir);
  if (o.manyFiles) {
    spawnSync(
      'su',
      [
        'rabbitmq',
        '-s',
        '/bin/sh',
        '-c',
        'ulimit -n "$(ulimit -Hn)" && cd /var/lib/rabbitmq && exec /usr/lib/rabbitmq/bin/rabbitmq-server -detached',
      ],
      { env, stdio: 'ignore' },
    );
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
    const log = fs.existsSync(logs)
      ? fs
          .readdirSync(logs)
          .map((f) => fs.readFileSync(path.join(logs, f), 'utf8').slice(-2000))
          .join('\n')
      : '';
    stop();
    throw new Error(`${o.what ?? 'RabbitMQ node'} did not start: ${up.stderr || up.stdout}\n${log}`);
  }
  return { node, port, dir, pid, stop };
}
