// A real neutron-server for tests and benchmarks, brought up from nothing and torn down again:
// MariaDB (a private mariadbd on a unix socket in a throwaway directory, no TCP), Neutron 29 from PyPI
// (scripts/neutron-venv.sh) with ML2/openvswitch and `auth_strategy = noauth`, its API served by uWSGI
// (`neutron.wsgi.api:application`), `neutron-rpc-server`, and a fake OVS agent per test host (so that
// ports bind, see neutron-fake-agent.py). RabbitMQ is the caller's node (the tests': test-broker.ts), in
// a vhost of our own; only a benchmark asking for it uses the machine's.
//
// Fast on a second run: the venv is kept (bench/.neutron-venv) and so is a migrated, cleanly shut down
// MariaDB data directory next to it, copied for each environment instead of running the ~7 s of
// `neutron-db-manage upgrade heads` again.
//
// Run directly (`node --import tsx test/helpers/neutron-env.ts host-a host-b`) it brings one up on the
// tests' broker, prints where everything is, and tears it down on Ctrl-C.
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { ensureRabbit } from './rabbit.js';
import { testBroker } from './test-broker.js';
import { waitFor as until } from './wait.js';

const repo = path.resolve(__dirname, '../..');
const venv = path.join(repo, 'bench/.neutron-venv');
/** A program of the Neutron venv (Neutron's commands, its Python, uWSGI). */
export const bin = (name: string) => path.join(venv, 'bin', name);
/** A migrated, cleanly shut down data directory, valid for the venv's Neutron (it lives inside it). */
const dbTemplate = path.join(venv, 'sg-db-template');

export function tail(file: string, lines = 30): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return `(no ${file})`;
  }
}

/** A free port below the kernel's ephemeral range, for the API: a restart binds it again, and a port
 *  from the ephemeral range (what port 0 gives) may meanwhile be taken as the local end of some
 *  outgoing connection, which makes the bind fail. */
export function portFree(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const srv = net
      .createServer()
      .once('error', () => resolve(false))
      .listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

export async function listenPort(): Promise<number> {
  const [low] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
  const top = Math.min(low ?? 32768, 32768);
  for (;;) {
    const port = 20000 + Math.floor(Math.random() * (top - 20000));
    if (await portFree(port)) return port;
  }
}

/** A fresh, empty MariaDB data directory (root logs in by password, on the socket only). */
export function installMariadb(datadir: string): void {
  execFileSync(
    'mariadb-install-db',
    [
      '--no-defaults',
      `--datadir=${datadir}`,
      '--auth-root-authentication-method=normal',
      '--skip-test-db',
      '--user=root',
      '--innodb-log-file-size=8M',
    ],
    { stdio: 'ignore' },
  );
}

/** The mariadbd flags every instance runs with: no TCP, small and fast (the data is throwaway). */
export function mariadbArgs(datadir: string, socket: string, log: string): string[] {
  return [
    '--no-defaults',
    `--datadir=${datadir}`,
    `--socket=${socket}`,
    '--skip-networking',
    `--pid-file=${datadir}.pid`,
    '--user=root',
    '--innodb-log-file-size=8M',
    '--innodb-buffer-pool-size=64M',
    '--innodb-flush-log-at-trx-commit=0',
    '--skip-log-bin',
    '--skip-name-resolve',
    `--log-error=${log}`,
  ];
}

export function sql(socket: string, statement: string): boolean {
  return spawnSync('mariadb', ['--no-defaults', '-S', socket, '-uroot', '-e', statement], { stdio: 'ignore' }).status === 0;
}

export interface NeutronEnvOptions {
  /** Hosts for which a fake OVS agent reports from the start (more with addHost). */
  hosts?: string[];
  /** Log at debug level (large logs; for looking into a failure). */
  debug?: boolean;
  /** uWSGI processes serving the API (default 1; a benchmark's reads then need not wait for its writes). */
  apiProcesses?: number;
  /** The RabbitMQ node to use (its node name and AMQP port); unset: the machine's (benchmarks only). */
  rabbit?: { node: string; port: number };
  /** Neutron service plugins to load (`service_plugins`), e.g. `log` for the logging API. */
  servicePlugins?: string[];
  /** The API behind Keystone (`auth_strategy = keystone`, keystonemiddleware) instead of noauth: the
   *  service user keystonemiddleware validates tokens with, and the token this env's calls carry. */
  keystone?: NeutronKeystone;
  /** Whether the fake OVS agent runs (default true): false where real agents report (openstack-env.ts). */
  fakeAgent?: boolean;
}

export interface NeutronKeystone {
  authUrl: string;
  /** keystonemiddleware's own user, in project `service` of domain Default. */
  username: string;
  password: string;
  /** A valid token for this env's own REST calls (renewed by the caller). */
  token(): Promise<string>;
}

/** rabbitmqctl, on the given node or the machine's default one. */
export function rabbitmqctl(rabbit: NeutronEnvOptions['rabbit'], args: string[]): void {
  spawnSync('rabbitmqctl', [...(rabbit ? ['-n', rabbit.node] : []), ...args], { stdio: 'ignore' });
}

/** Neutron's resource paths, by the key its JSON bodies use. */
const PATHS = {
  network: 'networks',
  subnet: 'subnets',
  port: 'ports',
  security_group: 'security-groups',
  security_group_rule: 'security-group-rules',
  address_group: 'address-groups',
  log: 'log/logs',
} as const;
export type Resource = keyof typeof PATHS;
export type Body = Record<string, unknown>;

export class NeutronEnv {
  readonly tag = randomBytes(3).toString('hex');
  readonly vhost = `sgneutron-${this.tag}`;
  /** Project every resource is created in (noauth: the project goes in the body, not a header). */
  readonly project = randomBytes(16).toString('hex');
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-neutron-'));
  apiUrl = '';
  private apiPort = 0;
  private readonly procs = new Map<string, ChildProcess>();
  private agent?: ChildProcess;
  private readonly reported = new Set<string>();
  private stopped = false;

  private constructor(private readonly opts: NeutronEnvOptions) {}

  /** oslo.messaging's transport URL for Neutron's broker (our vhost). */
  get transportUrl(): string {
    return `rabbit://guest:guest@127.0.0.1:${this.opts.rabbit?.port ?? 5672}/${this.vhost}`;
  }

  get amqpUrl(): string {
    return `amqp://guest:guest@127.0.0.1:${this.opts.rabbit?.port ?? 5672}/${this.vhost}`;
  }

  private get socket(): string {
    return path.join(this.dir, 'db.sock');
  }

  static async start(opts: NeutronEnvOptions = {}): Promise<NeutronEnv> {
    const env = new NeutronEnv(opts);
    try {
      execFileSync('bash', [path.join(repo, 'scripts/neutron-venv.sh')], { stdio: ['ignore', 'ignore', 'inherit'] });
      if (!opts.rabbit) await ensureRabbit();
      rabbitmqctl(opts.rabbit, ['add_vhost', env.vhost]);
      rabbitmqctl(opts.rabbit, ['set_permissions', '-p', env.vhost, 'guest', '.*', '.*', '.*']);
      await ensureDbTemplate();
      fs.cpSync(dbTemplate, path.join(env.dir, 'db'), { recursive: true });
      await env.startMariadb();
      env.writeConfig();
      await env.startServer();
      if (opts.fakeAgent ?? true) {
        env.startAgent(opts.hosts ?? []);
        for (const h of opts.hosts ?? []) await env.waitReported(h);
      }
      return env;
    } catch (e) {
      await env.stop();
      throw e;
    }
  }

  private spawnLogged(name: string, cmd: string, args: string[], extraEnv: Record<string, string> = {}): ChildProcess {
    const log = fs.openSync(path.join(this.dir, `${name}.out`), 'a');
    // Its own process group, so that stopping it also stops the workers it forked (uWSGI, rpc-server).
    const child = spawn(cmd, args, { cwd: this.dir, env: { ...process.env, ...extraEnv }, stdio: ['ignore', log, log], detached: true });
    fs.closeSync(log);
    child.on('error', () => undefined);
    this.procs.set(name, child);
    return child;
  }

  private async startMariadb(): Promise<void> {
    this.spawnLogged('mariadb', 'mariadbd', mariadbArgs(path.join(this.dir, 'db'), this.socket, path.join(this.dir, 'mariadb.err')));
    await until(
      'mariadb',
      () => sql(this.socket, 'select 1'),
      30_000,
      () => tail(path.join(this.dir, 'mariadb.err')),
    );
  }

  private writeConfig(): void {
    const etc = path.join(this.dir, 'etc');
    fs.mkdirSync(etc, { recursive: true });
    fs.mkdirSync(path.join(this.dir, 'state'), { recursive: true });
    fs.copyFileSync(path.join(venv, 'etc/neutron/api-paste.ini'), path.join(etc, 'api-paste.ini'));
    const plugins = this.opts.servicePlugins ?? [];
    const conf = neutronConf(this.dir, this.transportUrl, this.socket, !!this.opts.debug, plugins, this.opts.keystone);
    fs.writeFileSync(path.join(etc, 'neutron.conf'), conf);
    fs.writeFileSync(path.join(etc, 'ml2_conf.ini'), ML2_CONF);
  }

  private configArgs(): string[] {
    return ['--config-file', path.join(this.dir, 'etc/neutron.conf'), '--config-file', path.join(this.dir, 'etc/ml2_conf.ini')];
  }

  /** Starts the API (uWSGI) and the RPC server, and waits until the API answers. */
  async startServer(): Promise<void> {
    this.apiPort ||= await listenPort();
    this.apiUrl = `http://127.0.0.1:${this.apiPort}`;
    this.spawnLogged(
      'neutron-api',
      bin('uwsgi'),
      [
        '--http-socket',
        `127.0.0.1:${this.apiPort}`,
        '--module',
        'neutron.wsgi.api:application',
        '--home',
        venv,
        '--master',
        '--processes',
        String(this.opts.apiProcesses ?? 1),
        '--threads',
        '1',
        '--enable-threads',
        '--lazy-apps',
        '--need-app',
        '--die-on-term',
        '--buffer-size',
        '65535',
        '--disable-logging',
      ],
      { OS_NEUTRON_CONFIG_DIR: path.join(this.dir, 'etc'), OS_NEUTRON_CONFIG_FILES: 'neutron.conf;ml2_conf.ini' },
    );
    this.spawnLogged('neutron-rpc', bin('neutron-rpc-server'), this.configArgs());
    // Behind Keystone an unauthenticated request is answered 401: the app is up all the same.
    const up = (r: Response) => r.ok || (!!this.opts.keystone && r.status === 401);
    await until(
      'neutron API',
      async () => up(await fetch(`${this.apiUrl}/v2.0/networks?limit=1`)),
      90_000,
      () => tail(path.join(this.dir, 'neutron-api.out')),
    );
  }

  /** Stops the API and the RPC server (SIGTERM, as a service manager does; SIGKILL with `kill`). */
  async stopServer(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await Promise.all(['neutron-api', 'neutron-rpc'].map((n) => this.kill(n, signal)));
  }

  async restartServer(): Promise<void> {
    await this.stopServer();
    // The old server's socket may outlive its processes for a moment (workers still exiting): the
    // new one would fail to bind and exit.
    await until('the API port to be free', () => portFree(this.apiPort), 30_000);
    await this.startServer();
  }

  private async kill(name: string, signal: NodeJS.Signals): Promise<void> {
    const child = this.procs.get(name);
    this.procs.delete(name);
    if (!child?.pid || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    try {
      process.kill(-child.pid, signal);
    } catch {
      return;
    }
    const late = setTimeout(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // gone
      }
    }, 15_000);
    await exited;
    clearTimeout(late);
    // Workers of the group that outlived their parent.
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // none left
    }
  }

  private startAgent(hosts: string[]): void {
    const child = spawn(bin('python'), [path.join(__dirname, 'neutron-fake-agent.py'), ...hosts], {
      env: { ...process.env, FAKE_AGENT_TRANSPORT_URL: this.transportUrl, FAKE_AGENT_INTERVAL_S: '4' },
      stdio: ['pipe', 'pipe', fs.openSync(path.join(this.dir, 'fake-agent.err'), 'a')],
      detached: true,
    });
    child.on('error', () => undefined);
    child.stdin!.on('error', () => undefined);
    readline.createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const m = JSON.parse(line) as { reported?: string };
        if (m.reported) this.reported.add(m.reported);
      } catch {
        // not ours
      }
    });
    this.agent = child;
    this.procs.set('fake-agent', child);
  }

  private async waitReported(host: string): Promise<void> {
    await until(
      `agent of ${host}`,
      () => this.reported.has(host),
      60_000,
      () => tail(path.join(this.dir, 'fake-agent.err')),
    );
  }

  /** Makes `host` a compute host Neutron binds ports to: an OVS agent reports from it. */
  async addHost(host: string): Promise<void> {
    this.agent!.stdin!.write(`${host}\n`);
    await this.waitReported(host);
  }

  /** The pids of its processes, each the leader of its process group. */
  pids(): number[] {
    return [...this.procs.values()].map((c) => c.pid ?? 0).filter((p) => p > 1);
  }

  /** CPU seconds used so far by a component's processes (its process group: master and workers). */
  cpuSeconds(name: 'neutron-api' | 'neutron-rpc'): number {
    const pgid = this.procs.get(name)?.pid;
    if (!pgid) return 0;
    let total = 0;
    for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
      let stat: string;
      try {
        stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      } catch {
        continue; // gone meanwhile
      }
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // Fields after the name: state ppid pgrp ... utime(12th) stime cutime cstime, in clock ticks.
      if (Number(f[2]) === pgid) total += (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
    }
    return total;
  }

  // ---- REST, as an admin (noauth makes every call one; with Keystone, the token of an admin) ----

  async call<T = Body>(method: string, p: string, body?: unknown): Promise<T> {
    const token: Record<string, string> = this.opts.keystone ? { 'x-auth-token': await this.opts.keystone.token() } : {};
    const r = await fetch(`${this.apiUrl}/v2.0/${p}`, {
      method,
      // A connection a call of its own: neutron-server (eventlet) may close an idle kept-alive one just
      // as the next call goes out on it, and a POST is not retried ("other side closed").
      headers: { 'content-type': 'application/json', accept: 'application/json', connection: 'close', ...token },
      body: body === undefined ? null : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`neutron ${method} ${p}: ${r.status} ${text.slice(0, 500)}`);
    return (text ? JSON.parse(text) : {}) as T;
  }

  async create(kind: Resource, body: Body): Promise<Body & { id: string }> {
    const r = await this.call('POST', PATHS[kind], { [kind]: { project_id: this.project, ...body } });
    return r[kind] as Body & { id: string };
  }

  async update(kind: Resource, id: string, body: Body): Promise<Body & { id: string }> {
    const r = await this.call('PUT', `${PATHS[kind]}/${id}`, { [kind]: body });
    return r[kind] as Body & { id: string };
  }

  async remove(kind: Resource, id: string): Promise<void> {
    await this.call('DELETE', `${PATHS[kind]}/${id}`);
  }

  async list(kind: Resource, query = ''): Promise<Body[]> {
    const r = await this.call('GET', `${PATHS[kind]}${query ? `?${query}` : ''}`);
    return r[`${kind}s`] as Body[];
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await Promise.all([...this.procs.keys()].map((n) => this.kill(n, 'SIGKILL')));
    rabbitmqctl(this.opts.rabbit, ['delete_vhost', this.vhost]);
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

function neutronConf(
  dir: string,
  transportUrl: string,
  socket: string,
  debug: boolean,
  servicePlugins: string[],
  keystone?: NeutronKeystone,
): string {
  return `[DEFAULT]
core_plugin = ml2
service_plugins = ${servicePlugins.join(',')}
auth_strategy = ${keystone ? 'keystone' : 'noauth'}
transport_url = ${transportUrl}
# One worker each keeps the server at ~0.65 GB; the RPC notifiers need rpc_workers > 0 in the API too.
api_workers = 1
rpc_workers = 1
rpc_state_report_workers = 1
state_path = ${dir}/state
api_paste_config = ${dir}/etc/api-paste.ini
log_dir = ${dir}
debug = ${debug}
[database]
connection = mysql+pymysql://root@/neutron?unix_socket=${socket}
[oslo_concurrency]
lock_path = ${dir}/state
[agent]
report_interval = 4
${keystone ? keystoneSections(keystone) : ''}`;
}

/** keystonemiddleware's configuration; no Nova to notify of port events in these clouds. */
function keystoneSections(k: NeutronKeystone): string {
  return `[keystone_authtoken]
www_authenticate_uri = ${k.authUrl}
auth_url = ${k.authUrl}
auth_type = password
username = ${k.username}
password = ${k.password}
project_name = service
user_domain_name = Default
project_domain_name = Default
[DEFAULT]
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
`;
}

const ML2_CONF = `[ml2]
type_drivers = flat,vxlan
tenant_network_types = vxlan
mechanism_drivers = openvswitch
extension_drivers = port_security
[ml2_type_flat]
flat_networks = physnet1
[ml2_type_vxlan]
vni_ranges = 1:1000
[securitygroup]
enable_security_group = true
`;

/** Makes the migrated data directory once per venv: a fresh MariaDB, `upgrade heads`, a clean shutdown. */
async function ensureDbTemplate(): Promise<void> {
  if (fs.existsSync(path.join(dbTemplate, 'neutron'))) return;
  // Made next to the template, so that the final rename stays on one file system.
  const work = fs.mkdtempSync(path.join(venv, 'sg-db-work-'));
  const datadir = path.join(work, 'db');
  const socket = path.join(work, 'db.sock');
  let server: ChildProcess | undefined;
  try {
    installMariadb(datadir);
    server = spawn('mariadbd', mariadbArgs(datadir, socket, path.join(work, 'mariadb.err')), { stdio: 'ignore' });
    await until(
      'mariadb (template)',
      () => sql(socket, 'select 1'),
      30_000,
      () => tail(path.join(work, 'mariadb.err')),
    );
    if (!sql(socket, 'CREATE DATABASE neutron CHARACTER SET utf8mb4')) throw new Error('cannot create the neutron database');
    fs.writeFileSync(path.join(work, 'neutron.conf'), `[database]\nconnection = mysql+pymysql://root@/neutron?unix_socket=${socket}\n`);
    fs.writeFileSync(path.join(work, 'ml2_conf.ini'), ML2_CONF);
    const r = spawnSync(
      bin('neutron-db-manage'),
      ['--config-file', path.join(work, 'neutron.conf'), '--config-file', path.join(work, 'ml2_conf.ini'), 'upgrade', 'heads'],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`neutron-db-manage upgrade heads failed:\n${(r.stderr ?? '').slice(-2000)}`);
    // A clean shutdown, so that a copy starts without crash recovery.
    const exited = new Promise((res) => server!.once('exit', res));
    server.kill('SIGTERM');
    await exited;
    server = undefined;
    try {
      fs.renameSync(datadir, dbTemplate);
    } catch (e) {
      // Another run made it meanwhile: theirs is as good as ours.
      if (!fs.existsSync(path.join(dbTemplate, 'neutron'))) throw e;
    }
  } finally {
    server?.kill('SIGKILL');
    fs.rmSync(work, { recursive: true, force: true });
  }
}

if (require.main === module) {
  void (async () => {
    const env = await NeutronEnv.start({ hosts: process.argv.slice(2), rabbit: await testBroker() });
    console.log(JSON.stringify({ api: env.apiUrl, transportUrl: env.transportUrl, project: env.project, dir: env.dir }));
    const stop = () => void env.stop().then(() => process.exit(0));
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  })().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
