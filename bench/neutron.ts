// Neutron benchmark: N ports created through a real neutron-server's API (test/helpers/neutron-env.ts),
// one after another by one client, all in one security group (ingress from the group itself), across
// H hosts.
//   npm run bench:neutron        (as root; RabbitMQ is started if needed; namespaces are throwaway)
// Ours: sg-controller in Neutron mode (its own process) and H `sg-agent run` processes.
// Baseline: Neutron's own agent-side security-group code (bench/neutron-agent.py: Neutron's
// SecurityGroupAgentRpc with its iptables driver and deferred refresh, as the OVS agent runs it, its 2 s
// loop), H processes against the same real neutron-server: member casts from the server, rules fetched
// with Neutron's security_group_rules_for_devices (each remote-group rule expanded per member).
// Each N runs in a fresh Neutron of its own, ours then the baseline.
// Prints, per N, as `<id> ours=… baseline=… ratio=…`:
//   neutron.convergence.p50.N / .p99.N  from the API call for a port returning to every host with a
//                                       port in the group enforcing the new member;
//   neutron.bytes.N                     broker bytes received per agent (median), AMQP framing included;
//   neutron.controller.cpu_per_port.N   ours: sg-controller plus what its reads cost Neutron's API
//                                       (as many reads replayed on the idle API after the run);
//                                       baseline: what neutron-rpc-server spent beyond our run's
//                                       (answering the agents' rule requests).
// Broker: a RabbitMQ node of the benchmark's own on 127.0.0.1:5790 (NEUTRON_BENCH_RABBIT_PORT), started
// and stopped by it, so that other suites restarting the machine's node cannot stall a run.
// Knobs: NEUTRON_BENCH_PORTS (default 100,500), NEUTRON_BENCH_HOSTS (5), NEUTRON_BENCH_ONLY=ours|baseline,
// NEUTRON_BENCH_DEBUG=1 (the slowest ports, host by host), NEUTRON_BENCH_RABBIT=default (the machine's node).
import amqp from 'amqplib';
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { NeutronEnv, rabbitmqctl } from '../test/helpers/neutron-env.js';
import { freePort } from '../test/helpers/net.js';
import { ensureRabbit } from '../test/helpers/rabbit.js';
import { waitFor } from '../test/helpers/wait.js';
import { startRabbitNode } from '../test/helpers/rabbit-node.js';
import { deviceName } from '../src/neutron/translate.js';
import { NeutronApi } from '../src/neutron/api.js';
import { generateSigningKey } from '../src/protocol/signing.js';

const repo = path.resolve(__dirname, '..');
const SIZES = (process.env.NEUTRON_BENCH_PORTS ?? '100,500').split(',').map(Number);
const HOSTS = Number(process.env.NEUTRON_BENCH_HOSTS ?? 5);
const ONLY = process.env.NEUTRON_BENCH_ONLY;
const tag = randomBytes(3).toString('hex');
const hostName = (h: number) => `nb-${tag}-${h}`;

/** What to undo if the run is interrupted (Ctrl-C): processes, namespaces, the Neutron. */
const cleanups = new Set<() => Promise<void> | void>();
async function cleanupAll(): Promise<void> {
  for (const c of [...cleanups].reverse()) await Promise.resolve(c()).catch(() => undefined);
  cleanups.clear();
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => void cleanupAll().then(() => process.exit(130)));

/** The broker of the runs: a RabbitMQ node of the benchmark's own beside the machine's (other suites
 *  on this shared machine restart the default node in their broker tests, and a restart stalls a
 *  run: Neutron's agents never make up for a lost cast). NEUTRON_BENCH_RABBIT=default uses the
 *  machine's node instead. */
interface Rabbit {
  node?: string;
  port: number;
  stop: () => void;
}
let rabbit: Rabbit = { port: 5672, stop: () => undefined };
const rabbitOpt = () => (rabbit.node ? { node: rabbit.node, port: rabbit.port } : undefined);

async function privateRabbit(): Promise<Rabbit> {
  const n = await startRabbitNode({
    name: 'sgnbench',
    port: Number(process.env.NEUTRON_BENCH_RABBIT_PORT ?? 5790),
    what: "the benchmark's RabbitMQ node",
    conf: ({ port }) => `listeners.tcp.default = 127.0.0.1:${port}\n`,
  });
  cleanups.add(n.stop);
  return {
    node: n.node,
    port: n.port,
    stop: () => {
      cleanups.delete(n.stop);
      n.stop();
    },
  };
}

/** Watches the broker through a connection of its own: a restart during a run (another suite's
 *  test, on this shared machine) spoils it, since Neutron's agents never make up for a lost cast. */
async function brokerWatch(): Promise<{ restarted: () => boolean; close: () => Promise<void> }> {
  const conn = await amqp.connect(`amqp://guest:guest@127.0.0.1:${rabbit.port}`);
  let lost = false;
  conn.on('error', () => undefined);
  conn.on('close', () => (lost = true));
  return {
    restarted: () => lost,
    close: async () => {
      if (!lost) await conn.close().catch(() => undefined);
    },
  };
}

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}
const median = (xs: number[]) => quantile(xs, 0.5);
function cpuOf(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const x = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(x[11]) + Number(x[12]) + Number(x[13]) + Number(x[14])) / 100;
}

/** Bytes the broker has sent on each process's connections (RabbitMQ's send_oct, matched by port). */
function brokerBytes(pids: number[]): Map<number, number> {
  const portToPid = new Map<number, number>();
  for (const l of execFileSync('ss', ['-tnpH', 'state', 'established', `( dport = :${rabbit.port} )`], { encoding: 'utf8' }).split('\n')) {
    const m = new RegExp(`:(\\d+)\\s+\\S+:${rabbit.port}\\s+users:.*pid=(\\d+),`).exec(l);
    if (m) portToPid.set(Number(m[1]), Number(m[2]));
  }
  const out = new Map(pids.map((p) => [p, 0]));
  for (const l of execFileSync(
    'rabbitmqctl',
    ['-q', ...(rabbit.node ? ['-n', rabbit.node] : []), 'list_connections', 'peer_port', 'send_oct'],
    { encoding: 'utf8' },
  )
    .split('\n')
    .slice(1)) {
    const [port, bytes] = l.trim().split(/\s+/).map(Number);
    const pid = portToPid.get(port!);
    if (pid !== undefined && out.has(pid)) out.set(pid, out.get(pid)! + bytes!);
  }
  return out;
}

interface Run {
  /** Per port: API return → the last host concerned enforcing it (s). */
  lag: number[];
  bytes: number[];
  /** CPU seconds of the control side (ours: sg-controller; baseline: none of its own). */
  controllerCpu: number;
  /** Ours: what sg-controller's reads cost Neutron's API (replayed, see ours()); baseline: 0. */
  readsApiCpu: number;
  /** Ours: API requests sg-controller made during the run. */
  reads?: number;
  apiCpu: number;
  rpcCpu: number;
}

/** Network, subnet and the group every port joins. */
async function scene(env: NeutronEnv): Promise<{ network: string; subnet: string; group: string }> {
  const network = (await env.create('network', { name: 'bench', 'provider:network_type': 'flat', 'provider:physical_network': 'physnet1' }))
    .id;
  const subnet = (
    await env.create('subnet', { network_id: network, cidr: '10.60.0.0/16', ip_version: 4, enable_dhcp: false, gateway_ip: null })
  ).id;
  const group = (await env.create('security_group', { name: 'bench' })).id;
  await env.create('security_group_rule', { security_group_id: group, direction: 'ingress', ethertype: 'IPv4', remote_group_id: group });
  return { network, subnet, group };
}

/** First time each host reached k enforced members, from a stream of (time, count) observations. */
class Reach {
  readonly at: number[][] = Array.from({ length: HOSTS }, () => []);
  saw(h: number, count: number, when: number): void {
    const a = this.at[h]!;
    for (let k = a.length + 1; k <= count; k++) a[k - 1] = when;
  }
  reached(h: number, k: number): number | undefined {
    return this.at[h]![k - 1];
  }
  /** Port i (the (i+1)th member) is enforced once every host with a port by then holds it. */
  lags(returned: number[]): number[] {
    const lags = returned.map((t, i) => {
      let last = t;
      for (let h = 0; h < Math.min(HOSTS, i + 1); h++) last = Math.max(last, this.reached(h, i + 1)!);
      return (last - t) / 1000;
    });
    if (process.env.NEUTRON_BENCH_DEBUG) {
      const worst = lags
        .map((l, i) => [l, i] as const)
        .sort((a, b) => b[0] - a[0])
        .slice(0, 6);
      for (const [l, i] of worst)
        console.log(
          `  port ${i} (host ${i % HOSTS}): ${l.toFixed(3)}s; per host ${[...Array(Math.min(HOSTS, i + 1)).keys()].map((h) => ((this.reached(h, i + 1)! - returned[i]!) / 1000).toFixed(3)).join(' ')}`,
        );
    }
    return lags;
  }
}

async function createPorts(
  env: NeutronEnv,
  s: { network: string; subnet: string; group: string },
  n: number,
  onPort: (i: number, id: string) => void,
): Promise<number[]> {
  const returned: number[] = [];
  for (let i = 0; i < n; i++) {
    const p = await env.create('port', {
      network_id: s.network,
      fixed_ips: [{ subnet_id: s.subnet, ip_address: `10.60.${(i + 10) >> 8}.${(i + 10) & 255}` }],
      security_groups: [s.group],
      device_owner: 'compute:nova',
      'binding:host_id': hostName(i % HOSTS),
    });
    returned.push(Date.now());
    onPort(i, p.id);
  }
  return returned;
}

function netns(h: number): string {
  const ns = `sgnb-${tag}-${h}`;
  spawnSync('ip', ['netns', 'add', ns]);
  return ns;
}

async function ours(n: number): Promise<Run> {
  const env = await NeutronEnv.start({
    hosts: [...Array(HOSTS).keys()].map(hostName),
    apiProcesses: 2,
    ...(rabbitOpt() ? { rabbit: rabbitOpt()! } : {}),
  });
  const vhost = `sgnb-${tag}-${n}`;
  rabbitmqctl(rabbitOpt(), ['add_vhost', vhost]);
  rabbitmqctl(rabbitOpt(), ['set_permissions', '-p', vhost, 'guest', '.*', '.*', '.*']);
  const amqpUrl = `amqp://guest:guest@127.0.0.1:${rabbit.port}/${vhost}`;
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-neutron-bench-'));
  // As deployed: the controller signs, the agents hold its public key; the API takes a token.
  const keys = generateSigningKey(path.join(dataDir, 'keys'));
  const token = randomBytes(24).toString('hex');
  const procs: ChildProcess[] = [];
  const spaces: string[] = [];
  const cleanup = async () => {
    for (const p of procs) p.kill('SIGKILL');
    for (const ns of spaces) spawnSync('ip', ['netns', 'del', ns]);
    await env.stop();
    rabbitmqctl(rabbitOpt(), ['delete_vhost', vhost]);
    fs.rmSync(dataDir, { recursive: true, force: true });
  };
  cleanups.add(cleanup);
  try {
    const s = await scene(env);
    const http = `127.0.0.1:${await freePort()}`;
    const ctl = spawn(process.execPath, ['--import', 'tsx', path.join(repo, 'src/cli/sg-controller.ts')], {
      env: {
        ...process.env,
        SG_SOURCE: 'neutron',
        SG_NEUTRON_URL: env.apiUrl,
        SG_NEUTRON_TRANSPORT_URL: env.transportUrl,
        SG_AMQP_URL: amqpUrl,
        SG_DATA_DIR: path.join(dataDir, 'store'),
        SG_HTTP_LISTEN: http,
        SG_SIGNING_KEY_FILE: keys.privateKeyFile,
        SG_HTTP_TOKEN: token,
        SG_LOG_LEVEL: 'error',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    procs.push(ctl);
    await waitFor('sg-controller', async () => (await fetch(`http://${http}/healthz`)).ok, 60_000);
    const agents: { metrics: string; child: ChildProcess }[] = [];
    for (let h = 0; h < HOSTS; h++) {
      const ns = netns(h);
      spaces.push(ns);
      const metrics = `127.0.0.1:${await freePort()}`;
      const child = spawn(process.execPath, ['--import', 'tsx', path.join(repo, 'src/cli/sg-agent.ts'), 'run'], {
        env: {
          ...process.env,
          SG_AGENT_HOST: hostName(h),
          SG_AMQP_URL: amqpUrl,
          SG_TRUSTED_KEYS: keys.publicKeyFile,
          SG_NETNS: `/var/run/netns/${ns}`,
          SG_METRICS_LISTEN: metrics,
          SG_LOG_LEVEL: 'error',
          SG_RECONCILE_INTERVAL_MS: '0',
        },
        stdio: ['ignore', 'ignore', 'inherit'],
      });
      procs.push(child);
      agents.push({ metrics, child });
    }
    type Status = { connected: boolean; sets: { name: string; size: number; pending?: true }[] };
    const status = async (m: string) => (await (await fetch(`http://${m}/status`)).json()) as Status;
    for (const a of agents) await waitFor('agent', async () => (await status(a.metrics)).connected, 30_000);
    const pids = agents.map((a) => a.child.pid!);
    const requests = async () =>
      ((await (await fetch(`http://${http}/neutron`, { headers: { authorization: `Bearer ${token}` } })).json()) as { apiRequests: number })
        .apiRequests;
    const requests0 = await requests();
    const bytes0 = brokerBytes(pids);
    const cpu0 = { ctl: cpuOf(ctl.pid!), api: env.cpuSeconds('neutron-api'), rpc: env.cpuSeconds('neutron-rpc') };
    const reach = new Reach();
    let polling = true;
    // Every host's member set as the agent reports it: its size is what the agent holds, in the kernel
    // once no change of it is pending (a sample with one pending is skipped).
    const poller = (async () => {
      while (polling) {
        await Promise.all(
          agents.map(async (a, h) => {
            const st = await status(a.metrics).catch(() => undefined);
            const sets = (st?.sets ?? []).filter((x) => x.name.startsWith('sg4-'));
            if (sets.some((x) => x.pending)) return;
            const size = Math.max(0, ...sets.map((x) => x.size));
            reach.saw(h, size, Date.now());
          }),
        );
        await new Promise((r) => setTimeout(r, 20));
      }
    })();
    const returned = await createPorts(env, s, n, () => undefined);
    await waitFor(
      'every host enforcing every member',
      () => reach.at.every((a) => a.length >= n),
      300_000,
      () => `members enforced per host: ${reach.at.map((a) => a.length).join(', ')} of ${n}`,
    );
    polling = false;
    await poller;
    const bytes1 = brokerBytes(pids);
    const run = {
      lag: reach.lags(returned),
      bytes: pids.map((p) => bytes1.get(p)! - bytes0.get(p)!),
      controllerCpu: cpuOf(ctl.pid!) - cpu0.ctl,
      apiCpu: env.cpuSeconds('neutron-api') - cpu0.api,
      rpcCpu: env.cpuSeconds('neutron-rpc') - cpu0.rpc,
    };
    // What sg-controller's reads cost the API, which also ran the creations meanwhile: as many reads
    // of the kind it makes (ports by id, its fields) replayed now, the API otherwise idle.
    const reads = (await requests()) - requests0;
    const ids = (await env.list('port', 'fields=id')).map((p) => p.id as string);
    const api = new NeutronApi({ url: env.apiUrl, auth: { kind: 'noauth' } });
    const before = env.cpuSeconds('neutron-api');
    for (let r = 0; r < reads; r++) await api.ports([ids[r % ids.length]!]);
    return { ...run, reads, readsApiCpu: env.cpuSeconds('neutron-api') - before };
  } finally {
    cleanups.delete(cleanup);
    await cleanup();
  }
}

async function baseline(n: number): Promise<Run> {
  const python = execFileSync('bash', [path.join(repo, 'scripts/neutron-venv.sh')], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  }).trim();
  const env = await NeutronEnv.start({
    hosts: [...Array(HOSTS).keys()].map(hostName),
    apiProcesses: 2,
    ...(rabbitOpt() ? { rabbit: rabbitOpt()! } : {}),
  });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-neutron-bench-'));
  const procs: ChildProcess[] = [];
  const spaces: string[] = [];
  const cleanup = async () => {
    for (const p of procs) p.kill('SIGKILL');
    for (const ns of spaces) spawnSync('ip', ['netns', 'del', ns]);
    await env.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  cleanups.add(cleanup);
  try {
    const s = await scene(env);
    const reach = new Reach();
    const ready: boolean[] = [];
    for (let h = 0; h < HOSTS; h++) {
      const ns = netns(h);
      spaces.push(ns);
      fs.writeFileSync(path.join(dir, `devices-${h}`), '');
      const child = spawn(python, [path.join(repo, 'bench/neutron-agent.py')], {
        env: {
          ...process.env,
          BASE_HOST: hostName(h),
          BASE_AMQP_URL: env.amqpUrl,
          BASE_NETNS: ns,
          BASE_DEVICES_FILE: path.join(dir, `devices-${h}`),
          BASE_LOCK_DIR: dir,
        },
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      procs.push(child);
      readline.createInterface({ input: child.stdout }).on('line', (l) => {
        const m = JSON.parse(l) as { ready?: boolean; applied?: number; ports?: number; at?: number };
        if (m.applied === undefined) return;
        ready[h] = true;
        // Neutron expands a remote-group rule for a port into one rule per member but the port itself
        // (its own addresses are skipped): `applied` members per port means applied + 1 in the group.
        if (m.ports) reach.saw(h, m.applied + 1, m.at!);
      });
    }
    await waitFor('baseline agents', () => ready.filter(Boolean).length === HOSTS, 120_000);
    const pids = procs.map((p) => p.pid!);
    const bytes0 = brokerBytes(pids);
    const cpu0 = { api: env.cpuSeconds('neutron-api'), rpc: env.cpuSeconds('neutron-rpc') };
    const returned = await createPorts(env, s, n, (i, id) =>
      fs.appendFileSync(path.join(dir, `devices-${i % HOSTS}`), `${deviceName(id)}\n`),
    );
    // At scale the server may not keep up with the agents' rule requests (their RPC calls time out and
    // back off): after the deadline, a port not enforced everywhere counts as converging at it (a
    // lower bound of its lag), and the run is marked incomplete.
    const deadline = Date.now() + Math.max(180_000, n * 2_000);
    const complete = await waitFor(
      'every baseline host enforcing every member',
      () => reach.at.every((a) => a.length >= n),
      deadline - Date.now(),
    ).then(
      () => true,
      () => false,
    );
    if (!complete)
      console.log(
        `neutron.baseline.${n}: not converged after ${((deadline - returned[0]!) / 1000).toFixed(0)}s (members enforced per host: ${reach.at.map((a) => a.length).join(', ')} of ${n}); its lags are lower bounds`,
      );
    for (let h = 0; h < HOSTS; h++) reach.saw(h, n, Math.max(deadline, reach.at[h]!.at(-1) ?? 0));
    const bytes1 = brokerBytes(pids);
    return {
      lag: reach.lags(returned),
      bytes: pids.map((p) => bytes1.get(p)! - bytes0.get(p)!),
      controllerCpu: 0,
      readsApiCpu: 0,
      apiCpu: env.cpuSeconds('neutron-api') - cpu0.api,
      rpcCpu: env.cpuSeconds('neutron-rpc') - cpu0.rpc,
    };
  } finally {
    cleanups.delete(cleanup);
    await cleanup();
  }
}

const sec = (x: number) => `${x.toFixed(3)}s`;
const kib = (x: number) => `${(x / 1024).toFixed(1)}KiB`;
const ms = (x: number) => `${(x * 1000).toFixed(2)}ms`;
function line(id: string, o: number, b: number, unit: (x: number) => string, note = ''): void {
  console.log(`${id} ours=${unit(o)} baseline=${unit(b)} ratio=${(b / o).toFixed(1)}${note}`);
}

(async () => {
  if (process.env.NEUTRON_BENCH_RABBIT === 'default') await ensureRabbit();
  else rabbit = await privateRabbit();
  console.log(`neutron: broker ${rabbit.node ?? "the machine's default node"} on 127.0.0.1:${rabbit.port}; ${HOSTS} hosts`);
  for (const n of SIZES) {
    const watch = await brokerWatch();
    const o = ONLY === 'baseline' ? undefined : await ours(n);
    if (o)
      console.log(
        `neutron.ours.${n} p50=${sec(median(o.lag))} p99=${sec(quantile(o.lag, 0.99))} bytes=${kib(median(o.bytes))} controller=${sec(o.controllerCpu)} reads=${o.reads} reads_in_api=${sec(o.readsApiCpu)} api=${sec(o.apiCpu)} rpc=${sec(o.rpcCpu)}`,
      );
    const b = ONLY === 'ours' ? undefined : await baseline(n);
    if (watch.restarted()) console.log(`neutron: RabbitMQ restarted during the runs of N=${n}: their figures are not comparable`);
    await watch.close();
    if (b)
      console.log(
        `neutron.baseline.${n} p50=${sec(median(b.lag))} p99=${sec(quantile(b.lag, 0.99))} bytes=${kib(median(b.bytes))} api=${sec(b.apiCpu)} rpc=${sec(b.rpcCpu)}`,
      );
    if (!o || !b) continue;
    const target = n === 500 ? (quantile(o.lag, 0.99) <= 2 ? ' target<=2s met' : ' target<=2s MISSED') : '';
    line(`neutron.convergence.p50.${n}`, median(o.lag), median(b.lag), sec);
    line(`neutron.convergence.p99.${n}`, quantile(o.lag, 0.99), quantile(b.lag, 0.99), sec, target);
    line(`neutron.bytes.${n}`, median(o.bytes), median(b.bytes), kib);
    // Ours: sg-controller, and what its reads cost Neutron's API. Baseline: the RPC server's work beyond
    // our run's (the agents' rule requests; both runs have the fake agents' report_state).
    const oursCtl = o.controllerCpu + o.readsApiCpu;
    const baseCtl = Math.max(0, b.rpcCpu - o.rpcCpu);
    line(
      `neutron.controller.cpu_per_port.${n}`,
      oursCtl / n,
      baseCtl / n,
      ms,
      ` (ours: sg-controller ${sec(o.controllerCpu)} + its reads in the API ${sec(o.readsApiCpu)}; baseline: neutron-rpc-server ${sec(baseCtl)})`,
    );
  }
  rabbit.stop();
})().catch(async (e: unknown) => {
  console.error(e);
  await cleanupAll();
  process.exit(1);
});
