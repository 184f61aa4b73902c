// OVN for bench:ovn, all of it the benchmark's own: Debian's packages (installed by bench/ovn-install.sh
// when missing, their services never started), and every daemon started here in the foreground with
// its databases, sockets, pid and log files in one temporary directory, inside a network namespace of
// its own: the central side (Northbound and Southbound ovsdb-servers, ovn-northd) and one real chassis
// (a local ovsdb-server, ovs-vswitchd in userspace with `--disable-system` and br-int on the netdev
// datapath: this kernel has no openvswitch module; and ovn-controller, reaching the Southbound DB over
// TCP on the namespace's loopback so that what it receives can be counted). stop() ends them all and
// removes the namespace and directory; if this process is killed first, a watcher does
// (test/helpers/reaper.ts).
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Daemons } from '../test/helpers/daemons.js';
import { Netns } from '../test/helpers/netns.js';
import { Reaper } from '../test/helpers/reaper.js';
import { waitFor } from '../test/helpers/wait.js';
import { OvsdbClient } from './ovsdb-client.js';

/** The Southbound DB's TCP port on the namespace's loopback. */
const SB_PORT = 6642;

export type OvnDaemon = 'nb' | 'sb' | 'northd' | 'ovsdb-local' | 'vswitchd' | 'controller';

/** Installs the packages when missing; throws with the installer's words when it could not. */
export function ensureOvnInstalled(): void {
  const r = spawnSync('sh', [path.join(__dirname, 'ovn-install.sh')], { encoding: 'utf8', stdio: ['ignore', 'inherit', 'pipe'] });
  if (r.status !== 0) throw new Error(`bench:ovn: installing OVN failed: ${r.stderr}`);
}

export class OvnLab {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-ovn-'));
  private readonly reaper = new Reaper();
  private readonly ns: Netns;
  private readonly daemons: Daemons;
  private readonly pids = new Map<OvnDaemon, number>();
  nb!: OvsdbClient;
  sb!: OvsdbClient;
  local!: OvsdbClient;

  /** `chassis`: the real chassis' name (its system-id and hostname). */
  constructor(readonly chassis: string) {
    this.reaper.add({ dirs: [this.dir] });
    this.ns = Netns.create('sgovn');
    this.reaper.add({ namespaces: [this.ns.name] });
    this.daemons = new Daemons(this.dir, this.reaper);
  }

  private file(name: string): string {
    return path.join(this.dir, name);
  }

  /** Every OVS and OVN tool's default directories: this lab's, never the system's. */
  private get env(): Record<string, string> {
    const d = this.dir;
    return {
      OVS_RUNDIR: d,
      OVS_DBDIR: d,
      OVS_LOGDIR: d,
      OVS_SYSCONFDIR: d,
      OVS_PKGDATADIR: '/usr/share/openvswitch',
      OVN_RUNDIR: d,
      OVN_DBDIR: d,
      OVN_LOGDIR: d,
      OVN_SYSCONFDIR: d,
    };
  }

  private start(name: OvnDaemon, cmd: string, args: string[]): void {
    // ovn-controller has no --unixctl: its control socket goes to OVN_RUNDIR, which is this lab's.
    const unixctl = name === 'controller' ? [] : [`--unixctl=${this.file(`${name}.ctl`)}`];
    const child = this.daemons.start(
      name,
      'ip',
      [
        'netns',
        'exec',
        this.ns.name,
        cmd,
        ...args,
        ...unixctl,
        `--log-file=${this.file(`${name}.log`)}`,
        `--pidfile=${this.file(`${name}.pid`)}`,
      ],
      this.env,
    );
    // `ip netns exec` becomes the daemon itself (no fork): its CPU is read from this pid.
    this.pids.set(name, child.pid!);
  }

  private async server(name: OvnDaemon, db: string, schema: string, remotes: string[]): Promise<OvsdbClient> {
    execFileSync('ovsdb-tool', ['create', this.file(db), schema]);
    this.start(name, 'ovsdb-server', [
      this.file(db),
      `--remote=punix:${this.file(`${name}.sock`)}`,
      ...remotes.map((r) => `--remote=${r}`),
    ]);
    await waitFor(
      `${name} ovsdb-server`,
      () => fs.existsSync(this.file(`${name}.sock`)),
      30_000,
      () => this.tail(name),
    );
    return OvsdbClient.connect(this.file(`${name}.sock`));
  }

  tail(name: OvnDaemon): string {
    for (const f of [`${name}.log`, `${name}.out`]) {
      try {
        return fs.readFileSync(this.file(f), 'utf8').split('\n').slice(-20).join('\n');
      } catch {
        // not written yet
      }
    }
    return '';
  }

  /** Central side, then the real chassis; resolves once ovn-controller has registered its chassis. */
  async startAll(): Promise<void> {
    this.nb = await this.server('nb', 'nb.db', '/usr/share/ovn/ovn-nb.ovsschema', []);
    this.sb = await this.server('sb', 'sb.db', '/usr/share/ovn/ovn-sb.ovsschema', [`ptcp:${SB_PORT}:127.0.0.1`]);
    await this.nb.transact('OVN_Northbound', [{ op: 'insert', table: 'NB_Global', row: {} }]);
    this.start('northd', 'ovn-northd', [`--ovnnb-db=unix:${this.file('nb.sock')}`, `--ovnsb-db=unix:${this.file('sb.sock')}`]);

    this.local = await this.server('ovsdb-local', 'conf.db', '/usr/share/openvswitch/vswitch.ovsschema', []);
    const db = `unix:${this.file('ovsdb-local.sock')}`;
    const vsctl = (...args: string[]) => this.vsctl(...args);
    vsctl('--no-wait', 'init');
    this.start('vswitchd', 'ovs-vswitchd', [db, '--disable-system']);
    vsctl(
      'add-br',
      'br-int',
      '--',
      'set',
      'Bridge',
      'br-int',
      'datapath_type=netdev',
      'fail-mode=secure',
      'other-config:disable-in-band=true',
    );
    vsctl(
      'set',
      'Open_vSwitch',
      '.',
      `external_ids:system-id=${this.chassis}`,
      `external_ids:hostname=${this.chassis}`,
      `external_ids:ovn-remote=tcp:127.0.0.1:${SB_PORT}`,
      'external_ids:ovn-encap-type=geneve',
      'external_ids:ovn-encap-ip=127.0.0.1',
      'external_ids:ovn-bridge-datapath-type=netdev',
    );
    this.start('controller', 'ovn-controller', [db]);
    await waitFor(
      'ovn-controller to register its chassis',
      async () => {
        const [r] = await this.sb.transact('OVN_Southbound', [
          { op: 'select', table: 'Chassis_Private', where: [['name', '==', this.chassis]], columns: ['name'] },
        ]);
        return (r!.rows as unknown[]).length > 0;
      },
      60_000,
      () => this.tail('controller'),
    );
  }

  /** ovs-vsctl on the real chassis' database; waits for ovs-vswitchd to apply the change. */
  vsctl(...args: string[]): string {
    return execFileSync('ovs-vsctl', [`--db=unix:${this.file('ovsdb-local.sock')}`, '--timeout=60', ...args], {
      encoding: 'utf8',
      env: { ...process.env, ...this.env },
    });
  }

  pid(name: OvnDaemon): number {
    return this.pids.get(name)!;
  }

  /** Bytes ovn-controller has received on its Southbound connection (the kernel's count, `ss -ti`). */
  sbBytesReceived(): number {
    const out = this.ns.exec('ss', ['-tinH', 'state', 'established', 'dport', '=', `:${SB_PORT}`]);
    const counts = [...out.matchAll(/bytes_received:(\d+)/g)].map((m) => Number(m[1]));
    if (counts.length !== 1) throw new Error(`bench:ovn: expected one Southbound connection, found ${counts.length}:\n${out}`);
    return counts[0]!;
  }

  async stop(): Promise<void> {
    for (const c of [this.nb, this.sb, this.local]) c?.close();
    await this.daemons.killAll();
    this.ns.destroy();
    fs.rmSync(this.dir, { recursive: true, force: true });
    this.reaper.stop();
  }
}
