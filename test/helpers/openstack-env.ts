// The real OpenStack stack around sg-agent, for tests and benchmarks: Keystone, neutron-server behind
// it (keystonemiddleware), Neutron's RabbitMQ (a vhost on the tests' node) and MariaDB (each service's
// own), and compute hosts, each a network namespace with its own Open vSwitch, Neutron's real OVS
// agent and sg-agent (compute-host.ts), joined by a flat provider network (a veth between their
// br-phys bridges). sg-controller reads Neutron as docs/neutron.md deploys it: the `OS_*` variables,
// the endpoint from Keystone's catalog, its own broker users. VMs are booted as Nova would: a port
// created through Neutron's API with the host in `binding:host_id`, os-vif plugging, a tap on qbr….
//
// About 1.6 GB and a minute to start: start it once per test file and share it.
// Run directly (`node --import tsx test/helpers/openstack-env.ts`), it comes up on the tests' broker,
// prints where everything is, and is torn down on Ctrl-C.
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { brokerUser, rabbitmqctl, testVhost, type TestVhost } from './broker.js';
import { ComputeHost, sudoShim, type FirewallDriver, type PortSpec } from './compute-host.js';
import { testKey, testToken, removeKeys, type TestKey } from './keys.js';
import { Keystone, type Credentials } from './keystone.js';
import { Reaper } from './reaper.js';
import { freePort } from './net.js';
import { NeutronEnv, type Body } from './neutron-env.js';
import { startProcess, stopProcess, type Running } from './processes.js';
import { testBroker, type TestBroker } from './test-broker.js';
import { waitFor } from './wait.js';

/** sg-controller's user on Neutron's broker: the permissions docs/neutron.md (step 1) gives it. */
export const NEUTRON_READER_PERMISSIONS = [
  '^(amq\\.gen-.*|q-agent-notifier-.*_fanout|neutron-vo-.*_fanout)$',
  '^amq\\.gen-.*$',
  '^(q-agent-notifier-.*_fanout|neutron-vo-.*_fanout|amq\\.gen-.*)$',
];

export interface OpenStackHostOptions {
  name: string;
  /** sg-agent's dataplane on this host. */
  dataplane?: 'iptables' | 'nftables';
  firewallDriver?: FirewallDriver;
  /** More of sg-agent's environment on this host; default `SG_DROP_UNKNOWN_DEVICES=tap`, as
   *  docs/neutron.md (step 5) configures every host that does not run Neutron's iptables driver. */
  sgAgentEnv?: Record<string, string>;
}

export interface OpenStackEnvOptions {
  hosts: OpenStackHostOptions[];
  /** Keystone's `[token] expiration`, seconds. */
  tokenExpiration?: number;
}

/** A token Keystone issued to sg-controller, seen on its way (the counting proxy below). */
export interface IssuedToken {
  at: number;
  expiresAt: number;
}

export class OpenStackEnv {
  readonly tag = randomBytes(3).toString('hex');
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-openstack-'));
  keystone!: Keystone;
  neutron!: NeutronEnv;
  broker!: TestBroker;
  /** sg-agent's vhost (docs/neutron.md, step 2). */
  sg!: TestVhost;
  readonly hosts: ComputeHost[] = [];
  /** The tenants' project (its id). */
  project = '';
  network = '';
  subnet4 = '';
  subnet6 = '';
  controller?: Running;
  controllerUrl = '';
  /** Tokens Keystone issued to sg-controller, in order. */
  readonly controllerTokens: IssuedToken[] = [];
  key?: TestKey;
  apiToken?: ReturnType<typeof testToken>;
  private controllerCreds?: Credentials;
  private nova?: Credentials;
  private readerUser = '';
  private readerPassword = randomBytes(12).toString('hex');
  private agentUser = '';
  private proxy?: http.Server;
  private controllerDataDir = '';
  private stopped = false;
  /** Removes all of it should this process be killed before stop() (an ava timeout, Ctrl-C). */
  private readonly reaper = new Reaper();

  private constructor(private readonly opts: OpenStackEnvOptions) {
    this.reaper.add({ dirs: [this.dir] });
  }

  static async start(opts: OpenStackEnvOptions): Promise<OpenStackEnv> {
    const env = new OpenStackEnv(opts);
    try {
      await env.bringUp();
      return env;
    } catch (e) {
      await env.stop();
      throw e;
    }
  }

  private async bringUp(): Promise<void> {
    this.broker = await testBroker();
    const node = this.broker.node;
    const neutronService = { username: `neutron-${this.tag}`, password: randomBytes(12).toString('hex') };
    // Keystone and neutron-server start side by side: Neutron needs Keystone only once a request comes.
    const keystonePort = await freePort();
    const authUrl = `http://127.0.0.1:${keystonePort}/v3`;
    const [keystone, neutron] = await Promise.allSettled([
      Keystone.start({ port: keystonePort, tokenExpiration: this.opts.tokenExpiration, reaper: this.reaper }),
      NeutronEnv.start({
        rabbit: this.broker,
        fakeAgent: false,
        keystone: { authUrl, ...neutronService, token: () => this.keystone.token() },
      }),
    ]);
    // Whichever started is stopped with the rest (stop()) if the other did not.
    if (keystone.status === 'fulfilled') this.keystone = keystone.value;
    if (neutron.status === 'fulfilled') this.neutron = neutron.value;
    if (keystone.status === 'rejected') throw keystone.reason;
    if (neutron.status === 'rejected') throw neutron.reason;
    this.reaper.add({
      groups: this.neutron.pids(),
      dirs: [this.neutron.dir],
      commands: [`rabbitmqctl -n ${node} delete_vhost ${this.neutron.vhost}`],
    });
    await this.keystone.user(neutronService.username, 'service', ['admin', 'service'], neutronService.password);
    // Nova's service user: Neutron lets only the `service` role manage port bindings (a live migration).
    this.nova = await this.keystone.user(`nova-${this.tag}`, 'service', ['admin', 'service']);
    this.project = await this.keystone.project(`demo-${this.tag}`);
    await this.keystone.endpoint('network', 'neutron', this.neutron.apiUrl);
    // docs/neutron.md, step 1: an API account reading every project (admin in `service`), a broker user.
    this.controllerCreds = await this.keystone.user(`sg-controller-${this.tag}`, 'service', ['admin']);
    this.readerUser = `sg-neutron-reader-${this.tag}`;
    this.agentUser = `neutron-agent-${this.tag}`;
    this.reaper.add({ commands: [this.readerUser, this.agentUser].map((u) => `rabbitmqctl -n ${node} delete_user ${u}`) });
    rabbitmqctl(this.broker.node, ['add_user', this.readerUser, this.readerPassword]);
    rabbitmqctl(this.broker.node, ['set_permissions', '-p', this.neutron.vhost, this.readerUser, ...NEUTRON_READER_PERMISSIONS]);
    // The OVS agents' own broker user (guest may only log in over loopback, as a real host does not).
    const agentPassword = randomBytes(12).toString('hex');
    rabbitmqctl(this.broker.node, ['add_user', this.agentUser, agentPassword]);
    rabbitmqctl(this.broker.node, ['set_permissions', '-p', this.neutron.vhost, this.agentUser, '.*', '.*', '.*']);
    // Step 2: sg-agent's vhost, its controller user and one user per compute host; the signing key.
    this.sg = await testVhost(`sgos-${this.tag}`);
    this.reaper.add({ commands: [`rabbitmqctl -n ${node} delete_vhost ${this.sg.name}`] });
    const controllerBroker = brokerUser(this.sg, 'controller');
    this.key = testKey();
    this.apiToken = testToken();
    this.controllerDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-openstack-ctl-'));
    this.reaper.add({ dirs: [this.controllerDataDir, this.key.dir, path.dirname(this.apiToken.file)] });

    const shim = sudoShim(path.join(this.dir, 'bin'));
    const transportUrl = `rabbit://${this.agentUser}:${agentPassword}@127.0.0.1:${this.broker.port}/${this.neutron.vhost}`;
    for (const h of this.opts.hosts) {
      const agentBroker = brokerUser(this.sg, 'agent', h.name);
      const host = new ComputeHost({
        reaper: this.reaper,
        name: h.name,
        dir: path.join(this.dir, h.name),
        transportUrl,
        shimDir: shim,
        firewallDriver: h.firewallDriver,
        sgAgentEnv: {
          SG_AMQP_URL: agentBroker.url,
          SG_TRUSTED_KEYS: this.key.publicKeyFile,
          SG_DATAPLANE: h.dataplane ?? 'iptables',
          SG_QUEUE_EXPIRES_MS: '120000',
          SG_LOG_LEVEL: 'warn',
        },
        sgAgentExtra: h.sgAgentEnv ?? { SG_DROP_UNKNOWN_DEVICES: 'tap' },
      });
      host.metrics = `127.0.0.1:${await freePort()}`;
      this.hosts.push(host);
    }
    await Promise.all(this.hosts.map((h) => h.startOvs()));
    this.providerNetwork();
    await Promise.all(
      this.hosts.map(async (h) => {
        await h.forwardBroker(this.broker.port);
        await h.startOvsAgent();
      }),
    );
    await Promise.all(this.hosts.map((h) => this.agentAlive(h.name)));

    await this.startController(controllerBroker.url);
    await Promise.all(this.hosts.map((h) => h.startSgAgent()));
    this.network = (
      await this.create('network', { name: `net-${this.tag}`, 'provider:network_type': 'flat', 'provider:physical_network': 'physnet1' })
    ).id;
    this.subnet4 = (
      await this.create('subnet', { network_id: this.network, cidr: '10.100.0.0/24', ip_version: 4, enable_dhcp: false, gateway_ip: null })
    ).id;
    this.subnet6 = (
      await this.create('subnet', { network_id: this.network, cidr: 'fd00:100::/64', ip_version: 6, enable_dhcp: false, gateway_ip: null })
    ).id;
  }

  /** The flat provider network: a veth from one host's br-phys to the next's. */
  private providerNetwork(): void {
    for (let i = 0; i + 1 < this.hosts.length; i++) {
      const [a, b] = [this.hosts[i]!, this.hosts[i + 1]!];
      const [ea, eb] = [`phys${i}a`, `phys${i}b`];
      a.ns.exec('ip', ['link', 'add', ea, 'type', 'veth', 'peer', 'name', eb, 'netns', b.ns.name]);
      a.ns.exec('ip', ['link', 'set', ea, 'up']);
      b.ns.exec('ip', ['link', 'set', eb, 'up']);
      a.vsctl('add-port', 'br-phys', ea);
      b.vsctl('add-port', 'br-phys', eb);
    }
  }

  /** Neutron lists the host's OVS agent as alive. */
  async agentAlive(host: string): Promise<void> {
    await waitFor(
      `the OVS agent of ${host} alive in Neutron`,
      async () => {
        const agents = await this.neutron.call<{ agents: { alive: boolean }[] }>(
          'GET',
          `agents?host=${host}&binary=neutron-openvswitch-agent`,
        );
        return agents.agents.some((a) => a.alive);
      },
      60_000,
    );
  }

  /** Keystone as sg-controller sees it: every request passed on, the tokens issued noted. */
  private async keystoneProxy(): Promise<string> {
    const target = new URL(this.keystone.url);
    this.proxy = http.createServer((req, res) => {
      const body: Buffer[] = [];
      req.on('data', (b: Buffer) => body.push(b));
      req.on('end', () => {
        const headers = Object.fromEntries(
          Object.entries(req.headers).filter(([k]) => !['host', 'connection', 'content-length'].includes(k)),
        ) as Record<string, string>;
        fetch(`${target.origin}${req.url}`, { method: req.method, headers, body: body.length ? Buffer.concat(body) : null })
          .then(async (r) => {
            const text = Buffer.from(await r.arrayBuffer());
            if (req.method === 'POST' && req.url?.startsWith('/v3/auth/tokens') && r.status === 201) {
              const expires = Date.parse((JSON.parse(text.toString()) as { token: { expires_at: string } }).token.expires_at);
              this.controllerTokens.push({ at: Date.now(), expiresAt: expires });
            }
            const out: Record<string, string> = {};
            r.headers.forEach((v, k) => {
              if (!['content-length', 'connection', 'transfer-encoding', 'content-encoding'].includes(k)) out[k] = v;
            });
            res.writeHead(r.status, out).end(text);
          })
          .catch(() => res.writeHead(502).end());
      });
    });
    await new Promise<void>((resolve) => this.proxy!.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.proxy.address() as { port: number }).port}/v3`;
  }

  /** sg-controller as docs/neutron.md (step 4) runs it: Keystone credentials, the catalog's endpoint. */
  async startController(amqpUrl?: string): Promise<void> {
    const authUrl = this.proxy ? `http://127.0.0.1:${(this.proxy.address() as { port: number }).port}/v3` : await this.keystoneProxy();
    const port = await freePort();
    this.controllerUrl = `http://127.0.0.1:${port}`;
    const reader = `rabbit://${this.readerUser}:${this.readerPassword}@127.0.0.1:${this.broker.port}/${this.neutron.vhost}`;
    this.controllerAmqp = amqpUrl ?? this.controllerAmqp;
    this.controller = startProcess('src/cli/sg-controller.ts', [], {
      SG_SOURCE: 'neutron',
      OS_AUTH_URL: authUrl,
      OS_USERNAME: this.controllerCreds!.username,
      OS_PASSWORD: this.controllerCreds!.password,
      OS_PROJECT_NAME: 'service',
      OS_USER_DOMAIN_NAME: 'Default',
      OS_PROJECT_DOMAIN_NAME: 'Default',
      OS_INTERFACE: 'internal',
      SG_NEUTRON_TRANSPORT_URL: reader,
      SG_AMQP_URL: this.controllerAmqp,
      SG_DATA_DIR: this.controllerDataDir,
      SG_HTTP_LISTEN: `127.0.0.1:${port}`,
      SG_SIGNING_KEY_FILE: this.key!.privateKeyFile,
      SG_HTTP_TOKEN_FILE: this.apiToken!.file,
      SG_LOG_LEVEL: 'warn',
    });
    const pid = this.controller.child.pid;
    if (pid) {
      this.reaper.add({ pids: [pid] });
      void this.controller.exit.then(() => this.reaper.remove({ pids: [pid] }));
    }
    await waitFor(
      'sg-controller',
      async () => {
        if (this.controller!.exited) throw new Error(`sg-controller exited:\n${this.controller!.dump()}`);
        return (await fetch(`${this.controllerUrl}/healthz`)).ok;
      },
      90_000,
    );
  }

  private controllerAmqp = '';

  async stopController(): Promise<void> {
    await stopProcess(this.controller);
  }

  /** GET on sg-controller's API (read-only in Neutron mode). */
  async controllerGet<T = unknown>(p: string): Promise<T> {
    const r = await fetch(`${this.controllerUrl}${p}`, { headers: { authorization: `Bearer ${this.apiToken!.token}` } });
    if (!r.ok) throw new Error(`GET ${p}: ${r.status}`);
    return (await r.json()) as T;
  }

  /** A call to Neutron's API as Nova makes it (its service user's token). */
  async asNova<T = Body>(method: string, p: string, body?: unknown): Promise<T> {
    const r = await fetch(`${this.neutron.apiUrl}/v2.0/${p}`, {
      method,
      // A connection a call of its own: neutron-server (eventlet) may close an idle kept-alive one just
      // as the next call goes out on it, and a POST is not retried ("other side closed").
      headers: {
        'content-type': 'application/json',
        accept: 'application/json',
        connection: 'close',
        'x-auth-token': await this.keystone.token(this.nova),
      },
      body: body === undefined ? null : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`neutron (as nova) ${method} ${p}: ${r.status} ${text.slice(0, 500)}`);
    return (text ? JSON.parse(text) : {}) as T;
  }

  /** A resource in the tenants' project, created by the admin (a token from Keystone). */
  create(kind: Parameters<NeutronEnv['create']>[0], body: Body): Promise<Body & { id: string }> {
    return this.neutron.create(kind, { project_id: this.project, ...body });
  }

  /** A VM's port as Nova asks for it when booting on `host`: bound there from the start. */
  async port(host: string, n: number, groups: string[]): Promise<PortSpec> {
    const spec = { mac: mac(n), ip4: ip4(n), ip6: ip6(n) };
    const p = await this.create('port', {
      network_id: this.network,
      mac_address: spec.mac,
      security_groups: groups,
      fixed_ips: [
        { subnet_id: this.subnet4, ip_address: spec.ip4 },
        { subnet_id: this.subnet6, ip_address: spec.ip6 },
      ],
      device_owner: 'compute:nova',
      device_id: randomUUID(),
      'binding:host_id': host,
    });
    return { id: p.id, networkId: this.network, projectId: this.project, ...spec };
  }

  async portStatus(id: string): Promise<{ status: string; host: string }> {
    const p = (await this.neutron.call<{ port: Body }>('GET', `ports/${id}`)).port;
    return { status: p.status as string, host: p['binding:host_id'] as string };
  }

  async waitActive(...ids: string[]): Promise<void> {
    await waitFor(
      `ports ${ids.join(', ')} ACTIVE`,
      async () => (await Promise.all(ids.map((id) => this.portStatus(id)))).every((s) => s.status === 'ACTIVE'),
      60_000,
    );
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    // Whatever fails below, the watcher still removes what is left once this process is gone.
    await stopProcess(this.controller);
    await Promise.all(this.hosts.map((h) => h.destroy()));
    await new Promise((r) => (this.proxy ? this.proxy.close(r) : r(undefined)));
    await Promise.all([this.neutron?.stop(), this.keystone?.stop()]);
    this.sg?.remove();
    for (const u of [this.readerUser, this.agentUser]) if (u && this.broker) spawnDeleteUser(this.broker.node, u);
    if (this.controllerDataDir) fs.rmSync(this.controllerDataDir, { recursive: true, force: true });
    removeKeys(this.key);
    this.apiToken?.remove();
    fs.rmSync(this.dir, { recursive: true, force: true });
    this.reaper.stop();
  }
}

function spawnDeleteUser(node: string, user: string): void {
  try {
    rabbitmqctl(node, ['delete_user', user]);
  } catch {
    // never made
  }
}

export const ip4 = (n: number) => `10.100.0.${n}`;
export const ip6 = (n: number) => `fd00:100::${n.toString(16)}`;
export const mac = (n: number) => `fa:16:3e:00:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`;

if (require.main === module) {
  void (async () => {
    const env = await OpenStackEnv.start({ hosts: [{ name: 'compute-a' }, { name: 'compute-b', dataplane: 'nftables' }] });
    console.log(
      JSON.stringify({
        keystone: env.keystone.url,
        neutron: env.neutron.apiUrl,
        controller: env.controllerUrl,
        dir: env.dir,
        hosts: env.hosts.map((h) => h.ns.name),
      }),
    );
    const stop = () => void env.stop().then(() => process.exit(0));
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  })().catch((e: unknown) => {
    console.error(e);
    process.exit(1);
  });
}
