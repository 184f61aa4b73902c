// The real OpenStack stack (test/helpers/openstack-env.ts: Keystone, neutron-server, two compute hosts
// with their own Open vSwitch and Neutron's OVS agent, VMs plugged by os-vif), measured from the API
// call to the packets, on host b:
//   npm run bench:openstack      (as root; its RabbitMQ node is its own, stopped when it ends)
// Ours: sg-agent filtering (the OVS agent with our firewall driver; dropUnknownDevices: ["tap"], so a
// port's first packet through means its filter is in place). Baseline: Neutron's own firewall on the
// same host (the OVS agent with firewall_driver = iptables_hybrid), the host moved there and back by
// docs/neutron.md's checklists. Prints, as `<id> ours=… baseline=… ratio=…`:
//   openstack.rule_add.p50 / .p99     a rule opening a port, from the API call to the first connection
//                                     through (a VM on host a polling every 10 ms, a new connection each);
//   openstack.rule_delete.p50 / .p99  its deletion, to the first refused connection after which none passes;
//   openstack.port.p50 / .p99         a new port: created bound to host b, plugged by os-vif as Nova
//                                     does, to the first connection reaching its VM;
//   openstack.live_migration.p50 / .p99  a VM live-migrated from host a to host b as Nova does it, from
//                                     its arrival on b to the first connection reaching it (the same VM
//                                     polling every 10 ms from host a); it is moved back between tries;
// and, for the host's switch from Neutron's firewall to sg-agent (and the rollback) with established
// connections through it (TCP and UDP both families, a message every 20 ms each way):
//   openstack.migration.udp_lost, .tcp_retransmits, .refused_passed   (target 0 each).
// Knob: OPENSTACK_BENCH_N (changes per figure, default 50).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import type { ComputeHost, OsVm, PortSpec } from '../test/helpers/compute-host.js';
import { migrateToSgAgent, rollBackToIptablesHybrid } from '../test/helpers/host-migration.js';
import { liveMigrate } from '../test/helpers/live-migration.js';
import { OpenStackEnv } from '../test/helpers/openstack-env.js';
import { startProbe, type Probe } from '../test/helpers/vm-probe.js';
import { waitFor } from '../test/helpers/wait.js';

const N = Number(process.env.OPENSTACK_BENCH_N ?? 50);
const tag = randomBytes(3).toString('hex');
const [WEB, DB, CLOSED] = [8080, 5432, 5433];

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

/** New TCP connections from a VM every 10 ms (each given 500 ms), to a target that can be changed:
 *  when each was tried and whether it got through. */
class Poller {
  readonly tries: { at: number; ok: boolean }[] = [];
  private readonly child;
  constructor(vm: OsVm) {
    const code = `
      const net = require('net'); let target = null;
      process.stdin.on('data', (d) => { const [h, p] = d.toString().trim().split(' '); target = { host: h, port: Number(p) }; });
      setInterval(() => {
        if (!target) return;
        const at = Date.now(); const s = net.connect(target); let done = false;
        const end = (ok) => { if (done) return; done = true; clearTimeout(t); s.destroy(); process.stdout.write(at + ' ' + (ok ? 1 : 0) + '\\n'); };
        const t = setTimeout(() => end(false), 500);
        s.on('connect', () => end(true)); s.on('error', () => end(false));
      }, 10);`;
    this.child = spawn('ip', ['netns', 'exec', vm.ns.name, process.execPath, '-e', code], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.child.stdin.on('error', () => undefined);
    readline.createInterface({ input: this.child.stdout }).on('line', (l) => {
      const [at, ok] = l.split(' ');
      this.tries.push({ at: Number(at), ok: ok === '1' });
    });
  }

  target(ip: string, port: number): void {
    this.tries.length = 0;
    this.child.stdin.write(`${ip} ${port}\n`);
  }

  /** The first try since `t0` that got through. */
  async opened(t0: number): Promise<number> {
    return (await waitFor('a connection through', () => this.tries.find((x) => x.at >= t0 && x.ok), 120_000)).at;
  }

  /** The first try since `t0` refused with none through after it, once a second of refusals follows. */
  async closed(t0: number): Promise<number> {
    return waitFor(
      'connections refused',
      () => {
        const since = this.tries.filter((x) => x.at >= t0);
        const lastOk = since.reduce((i, x, j) => (x.ok ? j : i), -1);
        const rest = since.slice(lastOk + 1);
        return rest.length > 0 && rest.at(-1)!.at - rest[0]!.at >= 1000 ? rest[0]!.at : undefined;
      },
      120_000,
    );
  }

  stop(): void {
    this.child.kill('SIGKILL');
  }
}

interface Figures {
  ruleAdd: number[];
  ruleDelete: number[];
  port: number[];
  live: number[];
}

async function measure(
  env: OpenStackEnv,
  groups: Record<string, string>,
  from: OsVm,
  to: OsVm,
  host: ComputeHost,
  moving: { port: PortSpec; vm: OsVm; home: ComputeHost },
): Promise<Figures> {
  const out: Figures = { ruleAdd: [], ruleDelete: [], port: [], live: [] };
  const poller = new Poller(from);
  try {
    poller.target(to.ip4, CLOSED);
    for (let i = 0; i < N; i++) {
      const t0 = Date.now();
      const rule = await env.create('security_group_rule', {
        security_group_id: groups.db,
        direction: 'ingress',
        ethertype: 'IPv4',
        protocol: 'tcp',
        port_range_min: CLOSED,
        port_range_max: CLOSED,
        remote_group_id: groups.web,
      });
      out.ruleAdd.push((await poller.opened(t0)) - t0);
      const t1 = Date.now();
      await env.neutron.remove('security_group_rule', rule.id);
      out.ruleDelete.push((await poller.closed(t1)) - t1);
    }
    for (let i = 0; i < N; i++) {
      const n = 100 + i;
      poller.target(`10.100.0.${n}`, DB);
      const t0 = Date.now();
      const port: PortSpec = await env.port(host.name, n, [groups.db!]);
      const vm = host.plug(port);
      host.traffic.serve(vm, DB);
      out.port.push((await poller.opened(t0)) - t0);
      host.unplug(port);
      await env.neutron.remove('port', port.id);
    }
    // A VM live-migrated from its home host to this host, as Nova does it, and back (not timed): from
    // its arrival to the first new connection reaching it.
    const { port, vm, home } = moving;
    poller.target(vm.ip4, WEB);
    for (let i = 0; i < N; i++) {
      let arrived = 0;
      await liveMigrate(env, port, vm, home, host, { arrived: async () => void (arrived = Date.now()) });
      out.live.push((await poller.opened(arrived)) - arrived);
      await settled(env, port.id, host, home);
      await liveMigrate(env, port, vm, host, home);
      await settled(env, port.id, home, host);
      await poller.opened(Date.now());
    }
  } finally {
    poller.stop();
  }
  return out;
}

/** A migrated port's binding is on `on`, filtered there, and forgotten by `left`'s sg-agent, if it runs. */
async function settled(env: OpenStackEnv, portId: string, on: ComputeHost, left: ComputeHost): Promise<void> {
  await waitFor('the binding moved', async () => (await env.portStatus(portId)).host === on.name, 30_000);
  await env.waitActive(portId);
  const runsSgAgent = (h: ComputeHost) => !!h.sgAgent && !h.sgAgent.exited;
  if (runsSgAgent(on)) await on.filtered(portId);
  if (runsSgAgent(left)) await left.forgot(portId);
}

/** TCP segments the VMs' kernels retransmitted so far (their namespaces' counters). */
function retransmits(vms: OsVm[]): number {
  return vms.reduce((sum, vm) => {
    const snmp = vm.ns
      .exec('cat', ['/proc/net/snmp'])
      .split('\n')
      .filter((l) => l.startsWith('Tcp:'));
    const [names, values] = snmp.map((l) => l.split(/\s+/));
    return sum + Number(values![names!.indexOf('RetransSegs')]);
  }, 0);
}

interface Losses {
  udpLost: number;
  tcpRetransmits: number;
  refusedPassed: number;
  retransmitsBySteps: Record<string, number>;
}

/** Loss on established connections while `change` runs (with the retransmissions after each of its
 *  steps), and refused attempts that passed. */
async function losses(vms: Record<string, OsVm>, change: (between: (step: string) => Promise<void>) => Promise<void>): Promise<Losses> {
  const { w1, w2, d, x } = vms as Record<'w1' | 'w2' | 'd' | 'x', OsVm>;
  const probes: Probe[] = await Promise.all([
    startProbe(
      w1,
      [
        { id: 'tcp4', proto: 'tcp', host: d.ip4, port: DB, open: true },
        { id: 'tcp6', proto: 'tcp', host: w2.ip6, port: WEB, open: true },
        { id: 'udp4', proto: 'udp', host: w2.ip4, port: WEB, open: true },
        { id: 'udp6', proto: 'udp', host: w2.ip6, port: WEB, open: true },
      ],
      20,
    ),
    startProbe(
      w2,
      [
        { id: 'tcp4 within b', proto: 'tcp', host: d.ip4, port: DB, open: true },
        { id: 'udp4', proto: 'udp', host: w1.ip4, port: WEB, open: true },
      ],
      20,
    ),
    startProbe(
      x,
      [
        { id: 'refused tcp', proto: 'tcp', host: d.ip4, port: DB, open: false },
        { id: 'refused udp', proto: 'udp', host: w2.ip6, port: WEB, open: false },
      ],
      20,
    ),
  ]);
  // The VMs at the ends of the established connections (x's refused SYNs are retransmitted by design).
  const ends = [w1, w2, d];
  const before = retransmits(ends);
  const retransmitsBySteps: Record<string, number> = {};
  let last = before;
  try {
    await change(async (step) => {
      const now = retransmits(ends);
      retransmitsBySteps[step] = now - last;
      last = now;
    });
    await Promise.all(probes.map((p) => p.carrying()));
    // Messages sent just now are answered or lost within the probe's five seconds.
    await new Promise((r) => setTimeout(r, 5_500));
    const reports = await Promise.all(probes.map((p) => p.report()));
    let udpLost = 0;
    let refusedPassed = 0;
    for (const r of reports) {
      for (const f of Object.values(r)) {
        if ('lost' in f) udpLost += f.lost;
        else refusedPassed += f.passed;
      }
    }
    retransmitsBySteps.after = retransmits(ends) - last;
    return { udpLost, tcpRetransmits: retransmits(ends) - before, refusedPassed, retransmitsBySteps };
  } finally {
    for (const p of probes) p.stop();
  }
}

const secs = (ms: number) => `${(ms / 1000).toFixed(3)}s`;

void (async () => {
  // Ctrl-C: the environment's watcher (test/helpers/reaper.ts) removes what this process leaves.
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(130));
  const env = await OpenStackEnv.start({
    hosts: [{ name: `bench-a-${tag}` }, { name: `bench-b-${tag}` }],
  });
  let failed = false;
  try {
    const [a, b] = env.hosts as [ComputeHost, ComputeHost];
    const groups: Record<string, string> = {};
    for (const name of ['web', 'db', 'iso']) groups[name] = (await env.create('security_group', { name: `${name}-${tag}` })).id;
    for (const e of ['IPv4', 'IPv6']) {
      await env.create('security_group_rule', {
        security_group_id: groups.web,
        direction: 'ingress',
        ethertype: e,
        remote_group_id: groups.web,
      });
      await env.create('security_group_rule', {
        security_group_id: groups.db,
        direction: 'ingress',
        ethertype: e,
        protocol: 'tcp',
        port_range_min: DB,
        port_range_max: DB,
        remote_group_id: groups.web,
      });
    }
    const boot = async (h: ComputeHost, n: number, g: string) => {
      const vm = h.plug(await env.port(h.name, n, [groups[g]!]));
      for (const p of [WEB, DB, CLOSED]) h.traffic.serve(vm, p);
      return vm;
    };
    const vms = { w1: await boot(a, 11, 'web'), w2: await boot(b, 21, 'web'), d: await boot(b, 22, 'db'), x: await boot(b, 23, 'iso') };
    // The VM that live-migrates to host b and back: its home is host a.
    const movingPort = await env.port(a.name, 12, [groups.web!]);
    const moving = { port: movingPort, vm: a.plug(movingPort), home: a };
    a.traffic.serve(moving.vm, WEB);
    await env.waitActive(...Object.values(vms).map((v) => v.portId), movingPort.id);
    await b.filtered(vms.w2.portId, vms.d.portId, vms.x.portId);

    console.log(`openstack: ${N} changes per figure; ours: sg-agent (iptables), baseline: Neutron's iptables_hybrid, on host b`);
    const ours = await measure(env, groups, vms.w1, vms.d, b, moving);
    const rollback = await losses(vms, (between) => rollBackToIptablesHybrid(env, b, between));
    const baseline = await measure(env, groups, vms.w1, vms.d, b, moving);
    const migration = await losses(vms, (between) => migrateToSgAgent(env, b, between));
    for (const [id, o, bl] of [
      ['rule_add', ours.ruleAdd, baseline.ruleAdd],
      ['rule_delete', ours.ruleDelete, baseline.ruleDelete],
      ['port', ours.port, baseline.port],
      ['live_migration', ours.live, baseline.live],
    ] as const) {
      for (const [q, name] of [
        [0.5, 'p50'],
        [0.99, 'p99'],
      ] as const) {
        const [x, y] = [quantile(o, q), quantile(bl, q)];
        console.log(`openstack.${id}.${name} ours=${secs(x)} baseline=${secs(y)} ratio=${(y / x).toFixed(1)}`);
      }
    }
    for (const [id, r] of [
      ['migration', migration],
      ['rollback', rollback],
    ] as const) {
      console.log(`openstack.${id}.udp_lost ours=${r.udpLost} target=0`);
      console.log(`openstack.${id}.tcp_retransmits ours=${r.tcpRetransmits} target=0`);
      console.log(`openstack.${id}.refused_passed ours=${r.refusedPassed} target=0`);
      console.log(`openstack.${id}.tcp_retransmits_by_step ${JSON.stringify(r.retransmitsBySteps)}`);
    }
    if (process.env.OPENSTACK_BENCH_RAW)
      fs.writeFileSync(path.resolve(process.env.OPENSTACK_BENCH_RAW), JSON.stringify({ ours, baseline, migration, rollback }));
  } catch (e) {
    failed = true;
    console.error(e);
  } finally {
    await env.stop();
  }
  process.exit(failed ? 1 : 0);
})();
