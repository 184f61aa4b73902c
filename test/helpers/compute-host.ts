// An OpenStack compute host for tests: a network namespace with its own Open vSwitch (ovsdb-server and
// ovs-vswitchd in userspace, `--disable-system`, netdev datapath: this kernel may have no openvswitch
// module, and each host's database and run directory are its own), Neutron's real OVS agent, sg-agent,
// and VMs that Nova's os-vif plugs as it does for a hybrid-plugged port (tap → qbr… → qvb…/qvo… →
// br-int), each VM a network namespace of its own behind its tap.
//
// What the OVS agent needs that a bare machine lacks: `sudo` for its privileged helpers (a shim that
// runs its arguments: everything here runs as root already), its broker on the namespace's loopback
// (test/helpers/netns-forward.py carries it to the machine's), and OVS_RUNDIR for ovs-ofctl. It ignores
// SIGTERM for long and lives on when its main loop dies: it is stopped with SIGKILL, and judged by
// its log, not its pid.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { Daemons } from './daemons.js';
import { Netns } from './netns.js';
import type { Reaper } from './reaper.js';
import { bin, tail } from './neutron-env.js';
import { startProcess, stopProcess, type Running } from './processes.js';
import { Topology, type Vm } from './topology.js';
import { waitFor } from './wait.js';
import type { HostView } from './converged.js';

const repo = path.resolve(__dirname, '../..');

export type FirewallDriver = 'sg_agent' | 'iptables_hybrid';

export interface ComputeHostOptions {
  /** The host's name as Neutron knows it (the agent's `host`, its ports' binding:host_id). */
  name: string;
  /** Where everything of this host lives (configuration, databases, logs). */
  dir: string;
  /** The OVS agent's broker: `rabbit://user:password@127.0.0.1:<port>/<vhost>` on the machine's loopback. */
  transportUrl: string;
  /** The directory holding the `sudo` shim. */
  shimDir: string;
  firewallDriver?: FirewallDriver;
  /** sg-agent's environment (broker, keys, ...), host and namespace aside. */
  sgAgentEnv: Record<string, string>;
  /** More of it, until startSgAgent is given other (e.g. SG_DROP_UNKNOWN_DEVICES). */
  sgAgentExtra?: Record<string, string>;
  reaper?: Reaper;
}

/** A VM: its namespace, its tap (as Nova names it), its port. */
export interface OsVm extends Vm {
  portId: string;
  instance: string;
}

export interface PortSpec {
  id: string;
  mac: string;
  networkId: string;
  projectId: string;
  ip4: string;
  ip6: string;
}

/** Nova's name for a port's devices: prefix + the port id, 14 characters. */
export const devName = (prefix: 'tap' | 'qbr' | 'qvb' | 'qvo', portId: string) => `${prefix}${portId}`.slice(0, 14);

export class ComputeHost {
  readonly ns: Netns;
  /** The traffic helpers (ping, tcp, echo servers, long connections) for this host's VMs. */
  readonly traffic: Topology;
  readonly vms = new Map<string, OsVm>();
  firewallDriver: FirewallDriver;
  sgAgent?: Running;
  /** sg-agent's environment beyond the host's (the last given to startSgAgent: kept across restarts). */
  private sgAgentExtra: Record<string, string>;
  metrics = '';
  private readonly daemons: Daemons;
  private agentLogOffset = 0;

  constructor(private readonly o: ComputeHostOptions) {
    fs.mkdirSync(o.dir, { recursive: true });
    this.daemons = new Daemons(o.dir, o.reaper);
    this.ns = Netns.create('sgos');
    o.reaper?.add({ namespaces: [this.ns.name], dirs: [o.dir] });
    this.traffic = new Topology(this.ns);
    this.firewallDriver = o.firewallDriver ?? 'sg_agent';
    this.sgAgentExtra = o.sgAgentExtra ?? {};
    // Bridged traffic (the VMs' qbr bridges) meets iptables: Neutron's hybrid firewall and sg-agent both need it.
    this.ns.exec('sysctl', ['-qw', 'net.bridge.bridge-nf-call-iptables=1', 'net.bridge.bridge-nf-call-ip6tables=1']);
  }

  get name(): string {
    return this.o.name;
  }

  private file(name: string): string {
    return path.join(this.o.dir, name);
  }

  private get db(): string {
    return `unix:${this.file('db.sock')}`;
  }

  /** The environment of every OVS tool and of the agent: this host's OVS, and sudo. */
  private get ovsEnv(): Record<string, string> {
    const dir = this.o.dir;
    return {
      OVS_RUNDIR: dir,
      OVS_DBDIR: dir,
      OVS_LOGDIR: dir,
      OVS_SYSCONFDIR: dir,
      PATH: `${this.o.shimDir}:${path.dirname(bin('python'))}:${process.env.PATH}`,
    };
  }

  vsctl(...args: string[]): string {
    return execFileSync('ovs-vsctl', [`--db=${this.db}`, '--timeout=30', ...args], {
      encoding: 'utf8',
      env: { ...process.env, ...this.ovsEnv },
    });
  }

  /** One of Neutron's commands run on this host (in its namespace, its OVS, sudo), with the agent's configuration. */
  neutronTool(name: string, args: string[] = []): string {
    return execFileSync('ip', ['netns', 'exec', this.ns.name, bin(name), '--config-file', this.agentConfigFile, ...args], {
      encoding: 'utf8',
      env: { ...process.env, ...this.ovsEnv },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  }

  /** A shell script run in this host's namespace as an operator would run it there (`sh -e`), with
   *  Neutron's commands and sudo on the PATH; its output. */
  shell(script: string): string {
    const r = spawnSync('ip', ['netns', 'exec', this.ns.name, 'sh', '-ec', script], {
      encoding: 'utf8',
      env: { ...process.env, ...this.ovsEnv },
    });
    if (r.status !== 0) throw new Error(`on ${this.name}, exit ${r.status}: ${r.stderr}\n${script}`);
    return r.stdout;
  }

  private spawnInNs(name: string, cmd: string, args: string[]): void {
    this.daemons.start(name, 'ip', ['netns', 'exec', this.ns.name, cmd, ...args], this.ovsEnv);
  }

  /** ovsdb-server and ovs-vswitchd in the namespace, and the provider bridge br-phys. */
  async startOvs(): Promise<void> {
    execFileSync('ovsdb-tool', ['create', this.file('conf.db'), '/usr/share/openvswitch/vswitch.ovsschema']);
    this.spawnInNs('ovsdb-server', 'ovsdb-server', [
      this.file('conf.db'),
      `--remote=p${this.db}`,
      `--unixctl=${this.file('ovsdb-server.ctl')}`,
      `--log-file=${this.file('ovsdb-server.log')}`,
      `--pidfile=${this.file('ovsdb-server.pid')}`,
    ]);
    await waitFor(
      'ovsdb-server',
      () => fs.existsSync(this.file('db.sock')),
      30_000,
      () => tail(this.file('ovsdb-server.out')),
    );
    this.vsctl('--no-wait', 'init');
    this.spawnInNs('ovs-vswitchd', 'ovs-vswitchd', [
      this.db,
      '--disable-system',
      `--unixctl=${this.file('ovs-vswitchd.ctl')}`,
      `--log-file=${this.file('ovs-vswitchd.log')}`,
      `--pidfile=${this.file('ovs-vswitchd.pid')}`,
    ]);
    this.vsctl('add-br', 'br-phys', '--', 'set', 'bridge', 'br-phys', 'datapath_type=netdev');
  }

  /** Connects the machine's broker port to this namespace's loopback (same port number inside). */
  async forwardBroker(port: number): Promise<void> {
    const child = this.daemons.start(
      'broker-forward',
      'python3',
      [path.join(__dirname, 'netns-forward.py'), this.ns.path, `${port}:${port}`],
      {},
      { pipeStdout: true },
    );
    await new Promise<void>((resolve, reject) => {
      readline
        .createInterface({ input: child.stdout! })
        .once('line', (l) => (l === 'ready' ? resolve() : reject(new Error(`netns-forward: ${l}`))));
      child.once('exit', (code) => reject(new Error(`netns-forward exited ${code}`)));
    });
  }

  get agentConfigFile(): string {
    return this.file('ovs-agent.ini');
  }

  private agentConf(): string {
    const dir = this.o.dir;
    return `[DEFAULT]
host = ${this.o.name}
transport_url = ${this.o.transportUrl}
log_file = ${dir}/ovs-agent.log
state_path = ${dir}/state
[agent]
root_helper = sudo
report_interval = 4
tunnel_types =
[ovs]
bridge_mappings = physnet1:br-phys
datapath_type = netdev
ovsdb_connection = ${this.db}
of_listen_address = 127.0.0.1
integration_bridge = br-int
[securitygroup]
firewall_driver = ${this.firewallDriver}
enable_security_group = true
[oslo_concurrency]
lock_path = ${dir}/state
`;
  }

  /** Starts the OVS agent with the configured firewall driver; resolves once its first loop completed. */
  async startOvsAgent(): Promise<void> {
    fs.mkdirSync(this.file('state'), { recursive: true });
    fs.writeFileSync(this.agentConfigFile, this.agentConf());
    const log = this.file('ovs-agent.log');
    this.agentLogOffset = fs.existsSync(log) ? fs.statSync(log).size : 0;
    this.spawnInNs('ovs-agent', bin('neutron-openvswitch-agent'), ['--config-file', this.agentConfigFile]);
    await this.agentLoopCompleted(0);
  }

  /** The agent's log since it was last started. */
  agentLog(): string {
    try {
      const fd = fs.openSync(this.file('ovs-agent.log'), 'r');
      const size = fs.fstatSync(fd).size;
      const buf = Buffer.alloc(Math.max(0, size - this.agentLogOffset));
      fs.readSync(fd, buf, 0, buf.length, this.agentLogOffset);
      fs.closeSync(fd);
      return buf.toString();
    } catch {
      return '';
    }
  }

  /** Waits until the agent's rpc_loop iteration `n` (counted from its start) completed. */
  async agentLoopCompleted(n: number, ms = 120_000): Promise<void> {
    await waitFor(
      `the OVS agent of ${this.name}: iteration ${n}`,
      () => {
        const text = this.agentLog();
        if (/ERROR .*(Agent terminated|Traceback)|CRITICAL/.test(text))
          throw new Error(`OVS agent of ${this.name} failed:\n${text.slice(-3000)}`);
        return new RegExp(`rpc_loop - iteration:${n} completed`).test(text);
      },
      ms,
      () => this.agentLog().slice(-3000) + tail(this.file('ovs-agent.out'), 10),
    );
  }

  /** SIGKILL: the agent ignores SIGTERM for long. VM wiring (OVS, bridges, taps) stays as it is. */
  async stopOvsAgent(): Promise<void> {
    await this.daemons.kill('ovs-agent');
    // Its privileged helpers run in their own sessions: only the host's namespace knows them all.
    for (const pid of this.pidsIn().filter((p) => this.cmdline(p).includes('privsep-helper'))) this.killPid(pid);
  }

  private pidsIn(): number[] {
    return spawnSync('ip', ['netns', 'pids', this.ns.name], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number);
  }

  private cmdline(pid: number): string {
    try {
      return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      return '';
    }
  }

  private killPid(pid: number): void {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone
    }
  }

  /** Starts sg-agent; `extra` (environment) stays for later starts until another is given. */
  async startSgAgent(extra?: Record<string, string>): Promise<void> {
    if (extra) this.sgAgentExtra = extra;
    this.sgAgent = startProcess('src/cli/sg-agent.ts', ['run'], {
      ...this.o.sgAgentEnv,
      SG_AGENT_HOST: this.o.name,
      SG_NETNS: this.ns.path,
      SG_METRICS_LISTEN: this.metrics,
      ...this.sgAgentExtra,
    });
    const pid = this.sgAgent.child.pid;
    if (pid) {
      this.o.reaper?.add({ pids: [pid] });
      void this.sgAgent.exit.then(() => this.o.reaper?.remove({ pids: [pid] }));
    }
    await waitFor(
      `sg-agent of ${this.name}`,
      async () => {
        if (this.sgAgent!.exited) throw new Error(`sg-agent of ${this.name} exited:\n${this.sgAgent!.dump()}`);
        return (await this.status()).connected;
      },
      60_000,
    );
  }

  async stopSgAgent(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await stopProcess(this.sgAgent, signal);
  }

  /** `sg-agent cleanup` in this host's namespace: its jump, chains, tables and sets go. */
  sgAgentCleanup(): void {
    const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'src/cli/sg-agent.ts'), 'cleanup'], {
      cwd: repo,
      env: { ...process.env, ...this.o.sgAgentEnv, SG_AGENT_HOST: this.o.name, SG_NETNS: this.ns.path },
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`sg-agent cleanup on ${this.name}: ${r.stderr}`);
  }

  async status(): Promise<SgAgentStatus> {
    const r = await fetch(`http://${this.metrics}/status`);
    if (!r.ok) throw new Error(`status of ${this.name}: ${r.status}`);
    return (await r.json()) as SgAgentStatus;
  }

  /** Waits until sg-agent reports these ports' filters in the kernel as they now are. */
  async filtered(...portIds: string[]): Promise<void> {
    await waitFor(
      `ports ${portIds.join(', ')} filtered on ${this.name}`,
      async () => {
        const s = await this.status();
        return portIds.every((id) => s.ports.some((p) => p.id === id && p.inKernel));
      },
      60_000,
    );
  }

  /** Waits until sg-agent here no longer holds the port (it left this host). */
  async forgot(portId: string): Promise<void> {
    await waitFor(
      `port ${portId} forgotten on ${this.name}`,
      async () => !(await this.status()).ports.some((p) => p.id === portId),
      30_000,
    );
  }

  private osVif(action: 'plug' | 'unplug', port: PortSpec, instance: string): void {
    const conf = this.file('os-vif.conf');
    if (!fs.existsSync(conf)) fs.writeFileSync(conf, `[os_vif_ovs]\novsdb_connection = ${this.db}\n`);
    const spec = {
      port_id: port.id,
      mac: port.mac,
      network_id: port.networkId,
      instance_uuid: instance,
      project_id: port.projectId,
      datapath_type: 'netdev',
    };
    const r = spawnSync(
      'ip',
      ['netns', 'exec', this.ns.name, bin('python'), path.join(__dirname, 'os-vif-plug.py'), conf, action, JSON.stringify(spec)],
      {
        encoding: 'utf8',
        env: { ...process.env, ...this.ovsEnv },
      },
    );
    if (r.status !== 0) throw new Error(`os-vif ${action} of ${port.id} on ${this.name}: ${r.stderr.slice(-2000)}`);
  }

  /** Nova's part of booting (or receiving) a VM: os-vif plugs the port (qbr…, qvb…/qvo…, qvo… on br-int). */
  prepare(port: PortSpec, instance: string): void {
    this.osVif('plug', port, instance);
  }

  /** Waits until Neutron's OVS agent here has wired the port: its qvo… on br-int tagged with a local
   *  VLAN (a port not yet wired sits on the dead VLAN, 4095). The agent then reports the device up,
   *  and Neutron tells Nova (`network-vif-plugged`), which waits for that before a live migration
   *  moves the VM (`live_migration_wait_for_vif_plug`, on by default). */
  async wired(portId: string): Promise<void> {
    await waitFor(
      `port ${portId} wired by the OVS agent on ${this.name}`,
      () => {
        let tag: string;
        try {
          tag = this.vsctl('get', 'Port', devName('qvo', portId), 'tag').trim();
        } catch {
          return false; // not plugged yet
        }
        return /^\d+$/.test(tag) && tag !== '4095';
      },
      60_000,
    );
  }

  /** Libvirt's part: the VM's tap on qbr…, its other end the VM's eth0. An existing VM namespace (a
   *  live migration) keeps its sockets: its connections resume once its address is back. */
  attach(port: PortSpec, instance: string, existing?: OsVm): OsVm {
    const tap = devName('tap', port.id);
    const ns = existing?.ns ?? Netns.create('sgosvm');
    if (!existing) this.o.reaper?.add({ namespaces: [ns.name] });
    this.ns.exec('ip', ['link', 'add', tap, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name]);
    this.ns.exec('ip', ['link', 'set', tap, 'master', devName('qbr', port.id), 'up']);
    if (!existing) ns.exec('sysctl', ['-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
    ns.exec('ip', ['link', 'set', 'eth0', 'address', port.mac]);
    ns.exec('ip', ['addr', 'add', `${port.ip4}/24`, 'dev', 'eth0']);
    ns.exec('ip', ['addr', 'add', `${port.ip6}/64`, 'dev', 'eth0', 'nodad']);
    // Userspace OVS forwards what it gets: a TCP segment whose checksum the veth left to offload would
    // arrive with it unfilled, and be dropped.
    ns.exec('ethtool', ['-K', 'eth0', 'tx', 'off']);
    ns.exec('ip', ['link', 'set', 'eth0', 'up']);
    const vm: OsVm = existing ?? {
      name: `vm-${port.id.slice(0, 8)}`,
      ns,
      device: tap,
      mac: port.mac,
      ip4: port.ip4,
      ip6: port.ip6,
      portId: port.id,
      instance,
    };
    this.vms.set(port.id, vm);
    if (!this.traffic.vms.includes(vm)) this.traffic.vms.push(vm);
    return vm;
  }

  /** A VM booted here: prepare, then attach. */
  plug(port: PortSpec): OsVm {
    const instance = randomUUID();
    this.prepare(port, instance);
    return this.attach(port, instance);
  }

  /** The VM's tap goes (the domain stopped, or gone to another host): its eth0 with it. */
  detach(portId: string): void {
    this.ns.run('ip', ['link', 'del', devName('tap', portId)]);
  }

  /** os-vif unplugs the port; the VM is forgotten here, and its namespace removed unless it lives on
   *  elsewhere (`keepVm`, a migration). */
  release(port: PortSpec, opts: { keepVm?: boolean } = {}): void {
    const vm = this.vms.get(port.id);
    this.osVif('unplug', port, vm?.instance ?? randomUUID());
    this.vms.delete(port.id);
    if (vm) {
      const i = this.traffic.vms.indexOf(vm);
      if (i >= 0) this.traffic.vms.splice(i, 1);
      if (!opts.keepVm) vm.ns.destroy();
    }
  }

  /** A VM deleted: detach, then release. */
  unplug(port: PortSpec): void {
    this.detach(port.id);
    this.release(port);
  }

  /** What of a port is left in this host's namespace: its devices, and its port on br-int. */
  traces(portId: string): string[] {
    const links = this.ns.exec('ip', ['-o', 'link', 'show']);
    const found = (['tap', 'qbr', 'qvb', 'qvo'] as const)
      .map((p) => devName(p, portId))
      .filter((d) => links.includes(`: ${d}`) || links.includes(`: ${d}@`));
    const ovs = this.vsctl('--columns=name', 'find', 'Interface', `external_ids:iface-id=${portId}`).trim();
    return ovs ? [...found, `ovs: ${ovs}`] : found;
  }

  /** Everything of this host goes: its processes (every one left in its namespace too), its VMs, its
   *  namespace and its directory. */
  async destroy(): Promise<void> {
    await this.stopSgAgent('SIGKILL');
    await this.daemons.killAll();
    for (const pid of this.pidsIn()) this.killPid(pid);
    for (const vm of this.vms.values())
      for (const pid of spawnSync('ip', ['netns', 'pids', vm.ns.name], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean))
        this.killPid(Number(pid));
    this.traffic.destroy();
    fs.rmSync(this.o.dir, { recursive: true, force: true });
  }
}

export interface SgAgentStatus extends HostView {
  connected: boolean;
  ports: (HostView['ports'][number] & { device: string; groups: string[] })[];
  groups: (HostView['groups'][number] & { members: number })[];
  messagesByGroup: Record<string, number>;
}

/** `sudo` for the agents' privileged helpers: runs its arguments (options dropped), as root already. */
export function sudoShim(dir: string): string {
  const shim = path.join(dir, 'sudo');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(shim, '#!/bin/sh\nwhile [ "${1#-}" != "$1" ]; do shift; done\nexec "$@"\n', { mode: 0o755 });
  return dir;
}
