// The three-node RabbitMQ cluster of scripts/rabbit-cluster.sh, for the cluster tests and bench:scale:
// start it (once; idempotent), kill and restart a node, vhosts on it, and where a queue lives.
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureErlangCookie } from './rabbit-node.js';

const repo = path.resolve(__dirname, '../..');
const script = path.join(repo, 'scripts/rabbit-cluster.sh');
export const CLUSTER_DIR = process.env.SG_CLUSTER_DIR ?? '/tmp/sg-rabbit-cluster';
const BASE_PORT = Number(process.env.SG_CLUSTER_PORT ?? 5701);
const shortHost = os.hostname().split('.')[0]!;

/** Node n (1–3): its name and AMQP port. */
export const clusterNode = (n: number) => ({ n, name: `sgc${n}@${shortHost}`, port: BASE_PORT + n - 1 });
export const CLUSTER_NODES = [1, 2, 3].map(clusterNode);

/** Runs the script without blocking the event loop: a test's or benchmark's clients keep running. */
function run(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('bash', [script, ...args], { encoding: 'utf8', timeout: 180_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`rabbit-cluster.sh ${args.join(' ')}: ${stderr || stdout || err.message}`));
      else resolve(stdout);
    });
  });
}

export function rabbitmqctl(node: number, args: string[]): string {
  const r = spawnSync('rabbitmqctl', ['-q', '-n', clusterNode(node).name, ...args], { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new Error(`rabbitmqctl -n ${clusterNode(node).name} ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** Node n's memory by category (`rabbitmq-diagnostics memory_breakdown`), bytes. */
export function memoryBreakdown(node: number): Record<string, number> {
  const r = spawnSync('rabbitmq-diagnostics', ['-q', '-n', clusterNode(node).name, 'memory_breakdown', '--formatter', 'json'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.status !== 0) throw new Error(`memory_breakdown of node ${node}: ${r.stderr || r.stdout}`);
  return Object.fromEntries(Object.entries(JSON.parse(r.stdout) as Record<string, { bytes: number }>).map(([k, v]) => [k, v.bytes]));
}

/** Node n's resident memory (`rabbitmqctl status`: the OS's figure; the Erlang total counts what it
 *  reserved but never touched), bytes. */
export function nodeMemory(node: number): number {
  return (JSON.parse(rabbitmqctl(node, ['status', '--formatter', 'json'])) as { memory: { total: { rss: number } } }).memory.total.rss;
}

/** Starts the cluster unless all three nodes already run in it. */
export async function ensureCluster(): Promise<void> {
  // The three nodes start at once: on a machine where no node ever ran, each would make a cookie.
  ensureErlangCookie();
  await run(['start']);
}

/** SIGKILL of node n: a crash, as far as the other nodes and the clients can tell. */
export async function killNode(n: number): Promise<void> {
  await run(['kill', String(n)]);
}

/** Starts node n again (it rejoins the cluster); resolves once it runs. */
export async function restartNode(n: number): Promise<void> {
  await run(['restart', String(n)]);
}

export function nodeUp(n: number): boolean {
  return spawnSync('rabbitmqctl', ['-q', '-n', clusterNode(n).name, 'ping'], { stdio: 'ignore', timeout: 20_000 }).status === 0;
}

/** The first node that answers (commands go to it while another is down). */
export function liveNode(): number {
  const n = [1, 2, 3].find(nodeUp);
  if (!n) throw new Error('no cluster node answers');
  return n;
}

/** The beam process of node n (its CPU and memory, read from /proc). */
export function nodePid(n: number): number | undefined {
  try {
    return Number(fs.readFileSync(path.join(CLUSTER_DIR, `node${n}`, 'pid'), 'utf8').trim()) || undefined;
  } catch {
    return undefined;
  }
}

export interface ClusterVhost {
  name: string;
  /** AMQP URL of each node for this vhost (guest, every permission). */
  urls: string[];
  remove(): void;
}

export function clusterVhost(prefix: string): ClusterVhost {
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  const n = liveNode();
  rabbitmqctl(n, ['add_vhost', name]);
  rabbitmqctl(n, ['set_permissions', '-p', name, 'guest', '.*', '.*', '.*']);
  return {
    name,
    urls: CLUSTER_NODES.map((c) => `amqp://guest:guest@127.0.0.1:${c.port}/${encodeURIComponent(name)}`),
    remove: () =>
      void spawnSync('rabbitmqctl', ['-q', '-n', clusterNode(liveNode()).name, 'delete_vhost', name], { stdio: 'ignore', timeout: 60_000 }),
  };
}

/** Queues of a vhost and the node each lives on (a quorum queue: its leader's). */
export function queueNodes(vhost: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const l of rabbitmqctl(liveNode(), ['list_queues', '-p', vhost, '--no-table-headers', 'name', 'pid', 'leader']).split('\n')) {
    const [name, pid, leader] = l.split('\t');
    if (!name) continue;
    // A classic queue's pid reads <node.creation.id.serial>.
    out.set(name, leader || /^<(.+)\.\d+\.\d+\.\d+>$/.exec(pid ?? '')?.[1] || '');
  }
  return out;
}

/** Node n's number from its name (`sgc2@host` → 2). */
export const nodeNumber = (name: string) => Number(/^sgc(\d+)@/.exec(name)?.[1] ?? NaN);

/** Stops the three nodes and removes their data. */
export async function stopCluster(): Promise<void> {
  await run(['stop']);
}

/** Whether node n can go down without taking any quorum queue below its majority (the nodes it was
 *  cut off from have caught up): the precondition of "any one node down". */
export function quorumSafeWithout(n: number): Promise<boolean> {
  return new Promise((resolve) => {
    execFile('rabbitmq-queues', ['-q', '-n', clusterNode(n).name, 'check_if_node_is_quorum_critical'], { timeout: 30_000 }, (err) =>
      resolve(!err),
    );
  });
}
