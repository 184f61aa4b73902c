// The README's main job: a local end-to-end run. A RabbitMQ node of its own, the controller and two
// agents as separate processes, each agent enforcing in its own "compute host" namespace with VMs on
// a bridge. Set up as a deployment is: a signing key pair (the controller signs, agents verify), a
// broker user per role and per host with only the permissions of its role, and a bearer token for the
// admin API. Groups and ports are created through the controller's HTTP API; the demo then shows the
// sets the agents made, checks real traffic, and removes everything it created (the RabbitMQ node
// included; the machine's own node, if it runs one, is not touched).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Topology, type Vm } from '../test/helpers/topology.js';
import { startRabbitNode, type OwnRabbitNode } from '../test/helpers/rabbit-node.js';
import { freePort } from '../test/helpers/net.js';
import { NFT } from '../test/helpers/backends.js';

const repo = path.resolve(__dirname, '..');
const tag = randomBytes(2).toString('hex');
const vhost = `sgdemo-${tag}`;
let rabbit: OwnRabbitNode | undefined;
const amqpUrl = (user: string, password: string) =>
  `amqp://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${rabbit!.port}/${vhost}`;
const secrets = fs.mkdtempSync(path.join(os.tmpdir(), 'sg-demo-secrets-'));
const procs: ChildProcess[] = [];
const step = (s: string) => console.log(`\n== ${s}`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function start(script: string, args: string[], env: Record<string, string>): void {
  procs.push(
    spawn(process.execPath, ['--import', 'tsx', path.join(repo, script), ...args], {
      cwd: repo,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'ignore', 'inherit'],
    }),
  );
}
async function until(what: string, f: () => Promise<boolean> | boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await Promise.resolve(f()).catch(() => false))) {
    if (Date.now() > end) throw new Error(`demo: timed out waiting for ${what}`);
    await sleep(200);
  }
}

/** `sg-controller <args>` (the deployment tools: keygen, broker-user). */
function sgController(args: string[], input?: string): string {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'src/cli/sg-controller.ts'), ...args], {
    cwd: repo,
    encoding: 'utf8',
    ...(input !== undefined ? { input } : {}),
  });
  if (r.status !== 0) throw new Error(`sg-controller ${args[0]}: ${r.stderr || r.stdout}`);
  return r.stdout.trim();
}

/** A broker user with the permissions of its role (and host), password from a random secret. */
function brokerUser(role: 'controller' | 'agent', user: string, host?: string): string {
  const password = randomBytes(16).toString('hex');
  console.log(
    sgController(
      ['broker-user', role, user, ...(host ? ['--host', host] : []), '--vhost', vhost, '--node', rabbit!.node, '--password-stdin'],
      `${password}\n`,
    ),
  );
  return amqpUrl(user, password);
}

async function main(topos: Topology[]): Promise<void> {
  step('RabbitMQ: a node of its own for the demo');
  rabbit = await startRabbitNode({
    name: 'sgdemo',
    what: "the demo's RabbitMQ node",
    conf: ({ port }) => `listeners.tcp.default = 127.0.0.1:${port}\n`,
  });
  spawnSync('rabbitmqctl', ['-n', rabbit.node, 'add_vhost', vhost], { stdio: 'ignore' });
  console.log(`broker up (${rabbit.node}, port ${rabbit.port}); demo vhost ${vhost}`);

  step('trust: a signing key pair, broker users per role, an API token');
  console.log(sgController(['keygen', '--out', path.join(secrets, 'keys')]));
  const signingKey = path.join(secrets, 'keys', 'signing-key.pem');
  const publicKey = path.join(
    secrets,
    'keys',
    fs.readdirSync(path.join(secrets, 'keys')).find((f) => f.endsWith('.pub'))!,
  );
  const token = randomBytes(24).toString('hex');
  const tokenFile = path.join(secrets, 'api-token');
  fs.writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 });
  const controllerUrl = brokerUser('controller', `sg-controller-${tag}`);

  step('controller (sg-controller) with its admin API');
  const httpPort = await freePort();
  const api = `http://127.0.0.1:${httpPort}`;
  start('src/cli/sg-controller.ts', [], {
    SG_AMQP_URL: controllerUrl,
    SG_HTTP_LISTEN: `127.0.0.1:${httpPort}`,
    SG_HTTP_TOKEN_FILE: tokenFile,
    SG_SIGNING_KEY_FILE: signingKey,
    SG_DATA_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'sg-demo-')),
    SG_LOG_LEVEL: 'warn',
  });
  await until('controller', async () => ((await (await fetch(`${api}/healthz`)).json()) as { connected: boolean }).connected);
  console.log(api);
  const unauthenticated = await fetch(`${api}/groups`);
  console.log(`GET /groups without the token -> ${unauthenticated.status}`);

  step('two compute hosts (namespaces with a bridge), VMs attached by veth');
  const [hostA, hostB] = topos as [Topology, Topology];
  const a1 = hostA.addVm(1);
  const a2 = hostA.addVm(2);
  const b3 = hostB.addVm(3);
  for (const vm of [a1, a2]) console.log(`host-a: ${vm.name} ${vm.ip4} on ${vm.device}`);
  console.log(`host-b: ${b3.name} ${b3.ip4} on ${b3.device}`);

  step(
    'an agent (sg-agent run) per host: host-a on the iptables backend (ipsets + iptables chains), host-b on nftables (netlink, no process)',
  );
  const metrics: string[] = [];
  for (const [name, topo] of [
    ['host-a', hostA],
    ['host-b', hostB],
  ] as const) {
    const listen = `127.0.0.1:${await freePort()}`;
    metrics.push(listen);
    const url = brokerUser('agent', `sg-agent-${name}-${tag}`, `${name}-${tag}`);
    start('src/cli/sg-agent.ts', ['run'], {
      SG_AGENT_HOST: `${name}-${tag}`,
      SG_AMQP_URL: url,
      SG_TRUSTED_KEYS: publicKey,
      SG_NETNS: topo.host.path,
      SG_METRICS_LISTEN: listen,
      SG_LOG_LEVEL: 'warn',
      SG_DATAPLANE: name === 'host-a' ? 'iptables' : 'nftables',
    });
  }
  for (const m of metrics)
    await until('agent', async () => ((await (await fetch(`http://${m}/status`)).json()) as { connected: boolean }).connected);

  const put = async (p: string, body: unknown) => {
    const r = await fetch(`${api}${p}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify(body),
    });
    if (!r.ok) throw new Error(`PUT ${p}: ${r.status} ${await r.text()}`);
    console.log(`PUT ${p} -> ${r.status}`);
  };
  const inKernel = async (m: string, id: string) =>
    ((await (await fetch(`http://${m}/status`)).json()) as { ports: { id: string; inKernel: boolean }[] }).ports.some(
      (p) => p.id === id && p.inKernel,
    );
  const port = (vm: Vm, host: string, groups: string[]) => ({
    host: `${host}-${tag}`,
    device: vm.device,
    mac: vm.mac,
    fixedIps: [vm.ip4],
    securityGroups: groups,
  });

  step('groups and ports through the API: "web" admits its own members; a1 and a2 are in it, b3 is not');
  await put('/groups/web', {
    rules: [
      { id: 'web-in', direction: 'ingress', ethertype: 'IPv4', remoteGroupId: 'web' },
      { id: 'web-out', direction: 'egress', ethertype: 'IPv4' },
    ],
  });
  await put('/groups/default-out', { rules: [{ id: 'out', direction: 'egress', ethertype: 'IPv4' }] });
  await put('/ports/a1', port(a1, 'host-a', ['web']));
  await put('/ports/a2', port(a2, 'host-a', ['web']));
  await put('/ports/b3', port(b3, 'host-b', ['default-out']));
  // Traffic flows before any rule exists, so wait for the agent's state, not for a ping.
  const setSizes = async (m: string) =>
    ((await (await fetch(`http://${m}/status`)).json()) as { sets: { size: number }[] }).sets.map((s) => s.size);
  await until('host-a in sync', async () => (await setSizes(metrics[0]!)).includes(2));

  step('sets on host-a (ipset list, inside its namespace)');
  console.log(hostA.host.exec('ipset', ['list']).trim());
  const ok1 = hostA.ping(a1, a2.ip4);
  console.log(`a1 -> a2 (both in web): ${ok1 ? 'admitted' : 'BLOCKED'}`);
  await until('b3 filtered on host-b', () => inKernel(metrics[1]!, 'b3'));
  // Group sets of the nftables backend are g4-/g6-<hash> (docs/firewall.md); the shared ones are not groups'.
  const setsB = hostB.host
    .exec(NFT, ['list', 'sets'])
    .split('\n')
    .filter((l) => /\bset g[46]-/.test(l))
    .map((l) => l.trim().replace(/ \{$/, ''));
  console.log(
    `group sets on host-b (nft list sets), which has no port in web and so was told nothing about it: ${setsB.join(', ') || '(none)'}`,
  );

  step('traffic check on host-a: a4 is not in web, then joins it');
  const extra = hostA.addVm(4);
  await put('/ports/a4', port(extra, 'host-a', ['default-out']));
  // A drop proves something only once a4's own filter is in the kernel.
  await until('a4 filtered on host-a', () => inKernel(metrics[0]!, 'a4'));
  const out1 = hostA.ping(extra, a2.ip4);
  console.log(`a4 -> a2 (a4 not in web): ${out1 ? 'ADMITTED (wrong)' : 'blocked'}`);
  await put('/ports/a4', port(extra, 'host-a', ['default-out', 'web']));
  await until('a4 in the web set', async () => (await setSizes(metrics[0]!)).includes(3));
  const out2 = hostA.ping(extra, a2.ip4);
  console.log(`a4 joins web -> a2: ${out2 ? 'admitted' : 'BLOCKED (wrong)'} (a member delta; no iptables rule of a2 changed)`);

  step('agent status (sg-agent status) of host-a');
  const st = spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'src/cli/sg-agent.ts'), 'status'], {
    cwd: repo,
    env: { ...process.env, SG_METRICS_LISTEN: metrics[0]! },
    encoding: 'utf8',
  });
  console.log(st.stdout.trim());

  if (unauthenticated.status !== 401) throw new Error('demo: the API answered without the token');
  if (!(ok1 && !out1 && out2 && setsB.length === 0)) throw new Error('demo: traffic check failed');
  console.log('\ndemo: OK');
}

const topos = [new Topology(), new Topology()];
main(topos)
  .catch((e) => {
    console.error(e);
    process.exitCode = 1;
  })
  .finally(() => {
    step('cleanup');
    for (const p of procs) p.kill('SIGTERM');
    for (const t of topos) t.destroy();
    rabbit?.stop();
    fs.rmSync(secrets, { recursive: true, force: true });
    console.log('namespaces, processes, the RabbitMQ node (its vhost and users with it) and keys removed');
  });
