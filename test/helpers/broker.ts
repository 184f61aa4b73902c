// Per-test RabbitMQ vhosts, broker users made the way a deployment makes them (`sg-controller
// broker-user`), and cutting a client's connection from the broker's side. Everything here is scoped
// to the test's own vhost or users: other users of the machine's broker are not affected.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { ensureRabbit } from './rabbit.js';

const repo = path.resolve(__dirname, '../..');

export interface TestVhost {
  name: string;
  /** The RabbitMQ node (rabbitmqctl -n); undefined: the machine's broker. */
  node?: string;
  /** URL for a user of this vhost (guest, with every permission, by default). */
  url(user?: string, password?: string): string;
  users: string[];
  remove(): void;
}

function rabbitmqctl(args: string[], node?: string): string {
  const r = spawnSync('rabbitmqctl', [...(node ? ['-n', node] : []), ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`rabbitmqctl ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** A fresh vhost on the machine's broker, or on a node of the test's own (`node`, reached over TLS at
 *  localhost:`tlsPort`). */
export async function testVhost(prefix: string, o: { node?: string; tlsPort?: number } = {}): Promise<TestVhost> {
  if (!o.node) await ensureRabbit();
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  rabbitmqctl(['add_vhost', name], o.node);
  rabbitmqctl(['set_permissions', '-p', name, 'guest', '.*', '.*', '.*'], o.node);
  const base = o.tlsPort ? `amqps://localhost:${o.tlsPort}` : 'amqp://127.0.0.1:5672';
  const v: TestVhost = {
    name,
    ...(o.node ? { node: o.node } : {}),
    users: [],
    url: (user = 'guest', password = 'guest') => base.replace('//', `//${encodeURIComponent(user)}:${encodeURIComponent(password)}@`) + `/${encodeURIComponent(name)}`,
    remove: () => {
      const n = o.node ? ['-n', o.node] : [];
      spawnSync('rabbitmqctl', [...n, 'delete_vhost', name], { stdio: 'ignore' });
      for (const u of v.users) spawnSync('rabbitmqctl', [...n, 'delete_user', u], { stdio: 'ignore' });
    },
  };
  return v;
}

/** Creates a broker user with the permissions of its role through `sg-controller broker-user`. */
export function brokerUser(v: TestVhost, role: 'controller' | 'agent', host?: string, o: { user?: string; noPassword?: boolean } = {}): { user: string; password: string; url: string } {
  const user = o.user ?? `${v.name}-${role}-${randomBytes(3).toString('hex')}`;
  const password = o.noPassword ? '' : randomBytes(12).toString('hex');
  const args = ['broker-user', role, user, ...(host ? ['--host', host] : []), '--vhost', v.name, ...(v.node ? ['--node', v.node] : []), o.noPassword ? '--no-password' : '--password-stdin'];
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'src/cli/sg-controller.ts'), ...args], {
    cwd: repo,
    input: `${password}\n`,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`sg-controller broker-user: ${r.stderr || r.stdout}`);
  v.users.push(user);
  return { user, password, url: v.url(user, password) };
}

/** Closes, from the broker's side, every connection of this vhost whose client named it `name`. */
export function closeConnections(v: TestVhost, name: string): number {
  // The JSON listing shows client properties; only the plain one prints pids close_connection accepts.
  // Both show the connection's address pair, which is unique.
  const list = JSON.parse(rabbitmqctl(['list_connections', 'name', 'vhost', 'client_properties', '--formatter', 'json'], v.node)) as { name: string; vhost: string; client_properties: [string, string, unknown][] }[];
  const wanted = new Set(list.filter((c) => c.vhost === v.name && c.client_properties.some(([k, , val]) => k === 'connection_name' && val === name)).map((c) => c.name));
  const pids = rabbitmqctl(['list_connections', '-q', '--no-table-headers', 'pid', 'name'], v.node).split('\n').map((l) => l.split('\t')).filter(([, n]) => n && wanted.has(n)).map(([pid]) => pid!);
  for (const pid of pids) rabbitmqctl(['close_connection', pid, 'closed by a test'], v.node);
  return pids.length;
}
