// Observing a running agent as an operator does, with real processes (sg-controller, sg-agent, the
// sg-agent command line), a real broker and real packets: a security-group log put through the admin
// API reaches the host of the group's ports (and goes again when disabled), and `sg-agent status
// --counters`, `sg-agent explain` and `sg-agent trace` answer for the port. On both backends (the
// iptables one traces through iptables-nft, Debian's default).
import type { ExecutionContext } from 'ava';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { brokerTest } from './helpers/gate.js';
import { agentConnected, startAgent, startController, testBed } from './helpers/sg.js';
import type { Vm } from './helpers/topology.js';
import { waitFor } from './helpers/wait.js';
import { linkLocalFromMac } from '../src/domain/mac.js';

const repo = path.resolve(__dirname, '..');

/** The agent's command line, pointed at the running agent's listener and namespace. */
function cliArgs(args: string[]): string[] {
  return ['--import', 'tsx', path.join(repo, 'src/cli/sg-agent.ts'), ...args];
}

function cliEnv(metrics: string, netns: string): NodeJS.ProcessEnv {
  return { ...process.env, SG_METRICS_LISTEN: metrics, SG_NETNS: netns };
}

for (const dataplane of ['nftables', 'iptables'] as const)
  brokerTest(
    `${dataplane} › standalone: a log through the admin API reaches the group's host; status --counters, explain and trace answer for the port`,
    (t) => observed(t, dataplane),
  );

async function observed(t: ExecutionContext, dataplane: 'nftables' | 'iptables'): Promise<void> {
  const bed = await testBed(t, { topology: true, prefix: 'sgobs' });
  const host = `obs-${bed.vhost.name}`;
  const [a, b] = [bed.topo.addVm(1), bed.topo.addVm(2)];
  const port = (vm: Vm, groups: string[]) => ({ host, device: vm.device, mac: vm.mac, fixedIps: [vm.ip4], securityGroups: groups });
  const ctl = bed.track(await startController({ amqpUrl: bed.vhost.url(), key: bed.key, token: bed.token, dataDir: bed.dataDir }));
  await ctl.call('PUT', '/groups/web', {
    rules: [
      { id: 'web-tcp', direction: 'ingress', ethertype: 'IPv4', protocol: 'tcp', portRangeMin: 7000, portRangeMax: 7000 },
      { id: 'web-out', direction: 'egress', ethertype: 'IPv4' },
    ],
  });
  await ctl.call('PUT', '/groups/client', { rules: [{ id: 'c-out', direction: 'egress', ethertype: 'IPv4' }] });
  await ctl.call('PUT', '/ports/pa', port(a, ['client']));
  await ctl.call('PUT', '/ports/pb', port(b, ['web']));
  const file = path.join(bed.dataDir, 'network.log');
  const agent = bed.track(
    await startAgent({
      host,
      amqpUrl: bed.vhost.url(),
      trustedKeys: bed.key.publicKeyFile,
      netns: bed.topo.host.path,
      env: { SG_DATAPLANE: dataplane, SG_NETWORK_LOG: '1', SG_NETWORK_LOG_FILE: file },
    }),
  );
  await agentConnected(agent);
  const inKernel = async () => (await agent.status()).ports.every((p) => p.inKernel);
  const webLogs = async () =>
    ((await agent.status()) as unknown as { groups: { id: string; logs: number }[] }).groups.find((g) => g.id === 'web')?.logs;
  await waitFor('both ports filtered', inKernel);
  bed.topo.serve(b, 7000);
  const lines = () => (fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);

  // A log of the group, through the admin API: its port logs its connections.
  const refused = await ctl.call('PUT', '/logs/everything', { projectId: 'p', event: 'ALL' }).then(
    () => 'stored',
    (e: Error) => e.message,
  );
  t.regex(refused, /400 .*names neither a group/, 'the admin API has no projects: a log names a group or a port');
  await ctl.call('PUT', '/logs/log-1', { projectId: 'project-1', event: 'ACCEPT', resourceId: 'web' });
  await waitFor("the group's log on the host", async () => (await webLogs()) === 1 && (await inKernel()));
  t.true(bed.topo.tcp(a, b.ip4, 7000));
  const accepted = await waitFor(
    'the ACCEPT line',
    () => lines().find((l) => l.includes('action=ACCEPT')),
    20_000,
    () => agent.dump().slice(-2000),
  );
  t.regex(accepted, /project_id=project-1 log_resource_ids=\['log-1'\] vm_port=pb pkt=/);

  // Counters, through the command line.
  const counters = spawnSync(process.execPath, cliArgs(['status', '--counters']), {
    env: cliEnv(agent.metrics, bed.topo.host.path),
    encoding: 'utf8',
  });
  t.is(counters.status, 0, counters.stderr);
  t.regex(counters.stdout, /port pb\n(.*\n)*\s+ingress\s+rule web-tcp\s+packets=1 bytes=\d+/, counters.stdout);

  // Explain, from the agent's desired state.
  const explained = spawnSync(
    process.execPath,
    cliArgs(['explain', '--port', 'pb', '--ingress', '--src', a.ip4, '--proto', 'tcp', '--dport', '7000']),
    { env: cliEnv(agent.metrics, bed.topo.host.path), encoding: 'utf8' },
  );
  t.is(explained.status, 0, explained.stderr);
  t.regex(explained.stdout, /accepted by security-group rule web-tcp \(ingress\)/);
  const denied = spawnSync(
    process.execPath,
    cliArgs(['explain', '--port', 'pb', '--ingress', '--src', a.ip4, '--proto', 'udp', '--dport', '7000']),
    { env: cliEnv(agent.metrics, bed.topo.host.path), encoding: 'utf8' },
  );
  t.regex(denied.stdout, /dropped by default drop \(ingress\)/);
  // Neighbour discovery: an advertisement of the port's link-local address, at its MAC or another's.
  const lla = linkLocalFromMac(b.mac);
  const advert = (mac: string) =>
    spawnSync(
      process.execPath,
      cliArgs([
        'explain',
        '--port',
        'pb',
        '--egress',
        '--src',
        lla,
        '--dst',
        'ff02::1',
        '--icmp-type',
        '136',
        '--nd-target',
        lla,
        '--nd-lladdr',
        mac,
      ]),
      { env: cliEnv(agent.metrics, bed.topo.host.path), encoding: 'utf8' },
    );
  const own = advert(b.mac);
  t.is(own.status, 0, own.stderr);
  t.regex(own.stdout, /accepted by neighbour advertisement \(egress\)/);
  t.regex(advert(a.mac).stdout, /dropped by neighbour link-layer address guard \(egress\)/);

  // Trace: a packet sent while it runs, named by its rule.
  const trace = spawn(
    process.execPath,
    cliArgs(['trace', '--port', 'pb', '--ingress', '--src', a.ip4, '--proto', 'tcp', '--seconds', '20']),
    { env: cliEnv(agent.metrics, bed.topo.host.path) },
  );
  let traced = '';
  trace.stdout.on('data', (d: Buffer) => (traced += d.toString()));
  let said = '';
  trace.stderr.on('data', (d: Buffer) => (said += d.toString()));
  const ended = new Promise<number | null>((r) => trace.once('exit', r));
  await waitFor(
    'trace marking',
    () => said.includes('tracing'),
    30_000,
    () => said,
  );
  await waitFor(
    'a traced connection',
    () => {
      bed.topo.tcp(a, b.ip4, 7000);
      return traced.includes('security-group rule web-tcp');
    },
    30_000,
    () => traced + said,
  );
  trace.kill('SIGINT');
  t.is(await ended, 0, said);
  t.regex(traced, /ingress of port pb: rule \d+: security-group rule web-tcp → return/);

  // Disabled: the group carries the log no more, and the connection gives no line.
  await ctl.call('PUT', '/logs/log-1', { projectId: 'project-1', event: 'ACCEPT', resourceId: 'web', enabled: false });
  await waitFor('the log gone from the host', async () => (await webLogs()) === 0 && (await inKernel()));
  const before = lines().length;
  t.true(bed.topo.tcp(a, b.ip4, 7000));
  await ctl.call('PUT', '/logs/log-2', { projectId: 'project-1', event: 'DROP', targetId: 'pb' });
  await waitFor("the port's own log on the host", async () => (await webLogs()) === 1 && (await inKernel()));
  t.false(bed.topo.udp(a, b.ip4, 7001));
  await waitFor("the DROP line of the port's own log", () =>
    lines().some((l) => l.includes("action=DROP project_id=project-1 log_resource_ids=['log-2'] vm_port=pb")),
  );
  t.false(
    lines()
      .slice(before)
      .some((l) => l.includes('action=ACCEPT')),
    'no ACCEPT line once the log is disabled',
  );
}
