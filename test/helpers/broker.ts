// Per-test RabbitMQ vhosts, broker users made the way a deployment makes them (`sg-controller
// broker-user`), and cutting a client's connection from the broker's side. Everything here is scoped
// to the test's own vhost or users, on the tests' own node (test-broker.ts) or another of theirs.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { testBroker } from './test-broker.js';

const repo = path.resolve(__dirname, '../..');

export interface TestVhost {
  name: string;
  /** The RabbitMQ node (rabbitmqctl -n). */
  node: string;
  /** Its AMQP (or, for a TLS node, AMQPS) port on this machine. */
  port: number;
  /** URL for a user of this vhost (guest, with every permission, by default). */
  url(user?: string, password?: string): string;
  users: string[];
  remove(): void;
}

/** rabbitmqctl on `node`; its output. Throws if it fails. */
export function rabbitmqctl(node: string, args: string[]): string {
  const r = spawnSync('rabbitmqctl', ['-n', node, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`rabbitmqctl ${args.join(' ')}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

/** A fresh vhost on the tests' broker, or on a TLS node of the test's own (reached at localhost). */
export async function testVhost(prefix: string, o: { tls?: { node: string; port: number } } = {}): Promise<TestVhost> {
  const b = o.tls ?? (await testBroker());
  const at = { node: b.node, port: b.port, base: o.tls ? `amqps://localhost:${b.port}` : `amqp://127.0.0.1:${b.port}` };
  const name = `${prefix}-${randomBytes(3).toString('hex')}`;
  rabbitmqctl(at.node, ['add_vhost', name]);
  rabbitmqctl(at.node, ['set_permissions', '-p', name, 'guest', '.*', '.*', '.*']);
  const v: TestVhost = {
    name,
    node: at.node,
    port: at.port,
    users: [],
    url: (user = 'guest', password = 'guest') =>
      at.base.replace('//', `//${encodeURIComponent(user)}:${encodeURIComponent(password)}@`) + `/${encodeURIComponent(name)}`,
    remove: () => {
      spawnSync('rabbitmqctl', ['-n', at.node, 'delete_vhost', name], { stdio: 'ignore' });
      for (const u of v.users) spawnSync('rabbitmqctl', ['-n', at.node, 'delete_user', u], { stdio: 'ignore' });
    },
  };
  return v;
}

/** Creates a broker user with the permissions of its role through `sg-controller broker-user`. */
export function brokerUser(
  v: TestVhost,
  role: 'controller' | 'agent',
  host?: string,
  o: { user?: string; noPassword?: boolean } = {},
): { user: string; password: string; url: string } {
  const user = o.user ?? `${v.name}-${role}-${randomBytes(3).toString('hex')}`;
  const password = o.noPassword ? '' : randomBytes(12).toString('hex');
  const args = [
    'broker-user',
    role,
    user,
    ...(host ? ['--host', host] : []),
    '--vhost',
    v.name,
    '--node',
    v.node,
    o.noPassword ? '--no-password' : '--password-stdin',
  ];
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
  const list = JSON.parse(rabbitmqctl(v.node, ['list_connections', 'name', 'vhost', 'client_properties', '--formatter', 'json'])) as {
    name: string;
    vhost: string;
    client_properties: [string, string, unknown][];
  }[];
  const wanted = new Set(
    list
      .filter((c) => c.vhost === v.name && c.client_properties.some(([k, , val]) => k === 'connection_name' && val === name))
      .map((c) => c.name),
  );
  const pids = rabbitmqctl(v.node, ['list_connections', '-q', '--no-table-headers', 'pid', 'name'])
    .split('\n')
    .map((l) => l.split('\t'))
    .filter(([, n]) => n && wanted.has(n))
    .map(([pid]) => pid!);
  for (const pid of pids) rabbitmqctl(v.node, ['close_connection', pid, 'closed by a test']);
  return pids.length;
}
