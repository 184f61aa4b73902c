// A real Keystone for tests and benchmarks, brought up from nothing and torn down again: Keystone
// 30.0.0 from PyPI (scripts/openstack-venv.sh), its own private MariaDB (unix socket, no TCP), fernet
// tokens, served by uWSGI (the Neutron venv's, `--home` Keystone's venv). Then `keystone-manage
// bootstrap` (admin user and project, roles, the identity endpoints) and, through its API, what a
// cloud's services need: the `service` project and service users with the admin role there, a
// project for tenants' resources, and catalog entries.
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Daemons } from './daemons.js';
import type { Reaper } from './reaper.js';
import { bin, installMariadb, listenPort, mariadbArgs, sql, tail } from './neutron-env.js';
import { waitFor as until } from './wait.js';

const repo = path.resolve(__dirname, '../..');
const venv = path.join(repo, 'bench/.openstack-venv');
const manage = path.join(venv, 'bin/keystone-manage');

export interface KeystoneOptions {
  /** `[token] expiration`, seconds (Keystone's default: an hour). */
  tokenExpiration?: number | undefined;
  /** Its port on 127.0.0.1 (default: a free one). */
  port?: number;
  reaper?: Reaper;
}

export interface Token {
  value: string;
  expiresAt: number;
}

/** Password credentials for a user, project-scoped, all in domain Default. */
export interface Credentials {
  username: string;
  password: string;
  project: string;
}

export class Keystone {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-keystone-'));
  url = '';
  /** The bootstrap admin (project admin). */
  readonly admin: Credentials = { username: 'admin', password: randomBytes(12).toString('hex'), project: 'admin' };
  private readonly daemons: Daemons;
  private readonly tokens = new Map<string, Token>();
  private stopped = false;

  private constructor(private readonly opts: KeystoneOptions) {
    this.daemons = new Daemons(this.dir, opts.reaper);
    opts.reaper?.add({ dirs: [this.dir] });
  }

  private get socket(): string {
    return path.join(this.dir, 'db.sock');
  }

  private get conf(): string {
    return path.join(this.dir, 'keystone.conf');
  }

  static async start(opts: KeystoneOptions = {}): Promise<Keystone> {
    const ks = new Keystone(opts);
    try {
      execFileSync('bash', [path.join(repo, 'scripts/openstack-venv.sh')], { stdio: ['ignore', 'ignore', 'inherit'] });
      const port = opts.port ?? (await listenPort());
      ks.url = `http://127.0.0.1:${port}/v3`;
      await ks.startMariadb();
      ks.writeConfig();
      // The key repositories need no database: made while the schema is.
      await Promise.all([
        ks.manage(['db_sync']),
        ks.manage(['fernet_setup', '--keystone-user', 'root', '--keystone-group', 'root']),
        ks.manage(['credential_setup', '--keystone-user', 'root', '--keystone-group', 'root']),
      ]);
      await ks.manage([
        'bootstrap',
        '--bootstrap-password',
        ks.admin.password,
        '--bootstrap-region-id',
        'RegionOne',
        ...['admin', 'internal', 'public'].flatMap((i) => [`--bootstrap-${i}-url`, ks.url]),
      ]);
      ks.daemons.start(
        'keystone',
        bin('uwsgi'),
        [
          '--http-socket',
          `127.0.0.1:${port}`,
          '--module',
          'keystone.wsgi.api:application',
          '--home',
          venv,
          '--master',
          '--processes',
          '1',
          '--threads',
          '1',
          '--enable-threads',
          '--lazy-apps',
          '--need-app',
          '--die-on-term',
          '--buffer-size',
          '65535',
          '--disable-logging',
          // Without it a client reusing a kept-alive connection uWSGI has already closed gets a reset.
          '--add-header',
          'Connection: close',
        ],
        { OS_KEYSTONE_CONFIG_DIR: ks.dir, OS_KEYSTONE_CONFIG_FILES: 'keystone.conf' },
      );
      await until(
        'keystone',
        async () => (await fetch(ks.url)).ok,
        60_000,
        () => tail(path.join(ks.dir, 'keystone.out')),
      );
      return ks;
    } catch (e) {
      await ks.stop();
      throw e;
    }
  }

  private async startMariadb(): Promise<void> {
    const datadir = path.join(this.dir, 'db');
    installMariadb(datadir);
    this.daemons.start('mariadb', 'mariadbd', mariadbArgs(datadir, this.socket, path.join(this.dir, 'mariadb.err')));
    await until(
      'mariadb (keystone)',
      () => sql(this.socket, 'select 1'),
      30_000,
      () => tail(path.join(this.dir, 'mariadb.err')),
    );
    if (!sql(this.socket, 'CREATE DATABASE keystone CHARACTER SET utf8mb4')) throw new Error('cannot create the keystone database');
  }

  private writeConfig(): void {
    for (const d of ['fernet-keys', 'fernet-receipts', 'credential-keys']) fs.mkdirSync(path.join(this.dir, d));
    fs.writeFileSync(
      this.conf,
      `[DEFAULT]
log_file = ${this.dir}/keystone.log
[database]
connection = mysql+pymysql://root@/keystone?unix_socket=${this.socket}
[token]
provider = fernet
expiration = ${this.opts.tokenExpiration ?? 3600}
[fernet_tokens]
key_repository = ${this.dir}/fernet-keys
[fernet_receipts]
key_repository = ${this.dir}/fernet-receipts
[credential]
key_repository = ${this.dir}/credential-keys
`,
    );
  }

  private manage(args: string[]): Promise<void> {
    return new Promise((resolve, reject) => {
      const out: Buffer[] = [];
      const child = spawn(manage, ['--config-file', this.conf, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout.on('data', (b: Buffer) => out.push(b));
      child.stderr.on('data', (b: Buffer) => out.push(b));
      child.once('error', reject).once('exit', (code) => {
        if (code === 0) resolve();
        else
          reject(
            new Error(
              `keystone-manage ${args[0]} exited ${code}:\n${Buffer.concat(out).toString().slice(-2000)}\n${tail(path.join(this.dir, 'keystone.log'))}`,
            ),
          );
      });
    });
  }

  /** A project-scoped token for these credentials. */
  async issue(c: Credentials): Promise<Token> {
    const r = await fetch(`${this.url}/auth/tokens?nocatalog`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        auth: {
          identity: { methods: ['password'], password: { user: { name: c.username, domain: { name: 'Default' }, password: c.password } } },
          scope: { project: { name: c.project, domain: { name: 'Default' } } },
        },
      }),
    });
    if (r.status !== 201) throw new Error(`keystone: token for ${c.username}: ${r.status} ${(await r.text()).slice(0, 300)}`);
    const body = (await r.json()) as { token: { expires_at: string } };
    return { value: r.headers.get('x-subject-token')!, expiresAt: Date.parse(body.token.expires_at) };
  }

  /** A valid token for these credentials, renewed once less than a third of its life is left. */
  async token(c: Credentials = this.admin): Promise<string> {
    const life = (this.opts.tokenExpiration ?? 3600) * 1000;
    const t = this.tokens.get(c.username);
    if (t && t.expiresAt - Date.now() > life / 3) return t.value;
    const fresh = await this.issue(c);
    this.tokens.set(c.username, fresh);
    return fresh.value;
  }

  /** A call to Keystone's API as the admin. */
  async call<T = Record<string, unknown>>(method: string, p: string, body?: unknown): Promise<T> {
    const r = await fetch(`${this.url}/${p}`, {
      method,
      headers: { 'content-type': 'application/json', 'x-auth-token': await this.token() },
      body: body === undefined ? null : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`keystone ${method} ${p}: ${r.status} ${text.slice(0, 300)}`);
    return (text ? JSON.parse(text) : {}) as T;
  }

  private async idOf(kind: 'projects' | 'roles' | 'users', name: string): Promise<string> {
    const r = await this.call<Record<string, { id: string }[]>>('GET', `${kind}?name=${encodeURIComponent(name)}`);
    const found = r[kind]?.[0];
    if (!found) throw new Error(`keystone: no ${kind.slice(0, -1)} ${name}`);
    return found.id;
  }

  /** A project in domain Default (made if missing); its id. */
  async project(name: string): Promise<string> {
    try {
      return await this.idOf('projects', name);
    } catch {
      return (await this.call<{ project: { id: string } }>('POST', 'projects', { project: { name, domain_id: 'default' } })).project.id;
    }
  }

  /** A role (made if missing); its id. */
  async role(name: string): Promise<string> {
    try {
      return await this.idOf('roles', name);
    } catch {
      return (await this.call<{ role: { id: string } }>('POST', 'roles', { role: { name } })).role.id;
    }
  }

  /** A user holding `roles` in `project` (the project made if missing): its credentials. */
  async user(
    username: string,
    project: string,
    roles: string[] = ['admin'],
    password = randomBytes(12).toString('hex'),
  ): Promise<Credentials> {
    const projectId = await this.project(project);
    const { user } = await this.call<{ user: { id: string } }>('POST', 'users', {
      user: { name: username, password, domain_id: 'default', default_project_id: projectId },
    });
    for (const role of roles) await this.call('PUT', `projects/${projectId}/users/${user.id}/roles/${await this.role(role)}`);
    return { username, password, project };
  }

  /** A catalog entry: the service and one endpoint per interface, all at `url`. */
  async endpoint(type: string, name: string, url: string): Promise<void> {
    const { service } = await this.call<{ service: { id: string } }>('POST', 'services', { service: { type, name } });
    for (const iface of ['public', 'internal', 'admin']) {
      await this.call('POST', 'endpoints', { endpoint: { service_id: service.id, interface: iface, url, region_id: 'RegionOne' } });
    }
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.daemons.killAll();
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}
