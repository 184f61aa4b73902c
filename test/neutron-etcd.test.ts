// Neutron mode on several machines: three sg-controllers in Neutron mode, each beside its own member of
// a three-member etcd cluster (test/helpers/etcd.ts) and sharing the store on it, fed by a real
// neutron-server (test/helpers/neutron-env.ts); an agent enforcing in a "compute host" namespace. The
// leader's machine (its controller and its etcd member, SIGKILL at once) dies during a burst of
// changes made through Neutron's API: another controller takes over, every change reaches the agent,
// its revisions never go back, and Neutron, the store and the kernel agree. The machines share the
// tests' one RabbitMQ node here; a machine's broker node going with it is test/lab.test.ts's case.
import test, { type ExecutionContext } from 'ava';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EtcdCluster } from './helpers/etcd.js';
import { kernelEtcdTest } from './helpers/store-gates.js';
import { Topology, type Vm } from './helpers/topology.js';
import { freePort } from './helpers/net.js';
import { waitFor } from './helpers/wait.js';
import { NeutronEnv } from './helpers/neutron-env.js';
import { rabbitmqctl } from './helpers/broker.js';
import { testBroker, type TestBroker } from './helpers/test-broker.js';
import { testKey, testToken, removeKeys, type TestKey } from './helpers/keys.js';
import { startAgent, agentConnected, type AgentProc } from './helpers/sg.js';
import { startProcess, stopProcess, type Running } from './helpers/processes.js';
import { deviceName } from '../src/neutron/translate.js';

const tag = randomBytes(3).toString('hex');
const sgVhost = `sgne-${tag}`;
const brokerUser = `sgctl-${tag}`;
const BROKER_PERMISSIONS = [
  '^(amq\\.gen-.*|q-agent-notifier-.*_fanout|neutron-vo-.*_fanout)$',
  '^amq\\.gen-.*$',
  '^(q-agent-notifier-.*_fanout|neutron-vo-.*_fanout|amq\\.gen-.*)$',
];
const HOST = `nehost-${tag}`;

let broker: TestBroker;
let env: NeutronEnv | undefined;
let etcd: EtcdCluster | undefined;
let key: TestKey | undefined;
let token: ReturnType<typeof testToken> | undefined;
let topo: Topology | undefined;
let agent: AgentProc | undefined;
let network = '';
let subnet = '';
let web = '';
const controllers: { proc?: Running; url: string }[] = [];

async function startController(i: number): Promise<void> {
  const port = await freePort();
  controllers[i] = {
    url: `http://127.0.0.1:${port}`,
    proc: startProcess('src/cli/sg-controller.ts', [], {
      SG_SOURCE: 'neutron',
      SG_NEUTRON_URL: env!.apiUrl,
      SG_NEUTRON_TRANSPORT_URL: broker.url(env!.vhost, brokerUser, `pw-${tag}`).replace('amqp://', 'rabbit://'),
      SG_AMQP_URL: broker.url(sgVhost),
      SG_STORE: 'etcd',
      // Its own machine's member first; the client uses any.
      SG_ETCD_ENDPOINTS: [etcd!.endpoints[i], ...etcd!.endpoints.filter((_, j) => j !== i)].join(','),
      SG_ETCD_PREFIX: `/sg-${tag}/`,
      SG_HTTP_LISTEN: `127.0.0.1:${port}`,
      SG_SIGNING_KEY_FILE: key!.privateKeyFile,
      SG_HTTP_TOKEN_FILE: token!.file,
      SG_LOG_LEVEL: 'info',
    }),
  };
  await waitFor(
    `controller ${i}`,
    async () => {
      if (controllers[i]!.proc!.exited) throw new Error(`exited:\n${controllers[i]!.proc!.dump()}`);
      return (await fetch(`${controllers[i]!.url}/healthz`)).ok;
    },
    120_000,
  );
}

const health = async (i: number) => (await (await fetch(`${controllers[i]!.url}/healthz`)).json()) as { leader: boolean };
const leaderOf = async (among: number[]) => {
  for (const i of among)
    if (
      await health(i).then(
        (h) => h.leader,
        () => false,
      )
    )
      return i + 1;
  return 0;
};

test.before(async () => {
  if (!kernelEtcdTest.runs) return;
  broker = await testBroker();
  etcd = await EtcdCluster.start(3);
  env = await NeutronEnv.start({ hosts: [HOST], rabbit: broker });
  rabbitmqctl(broker.node, ['add_vhost', sgVhost]);
  rabbitmqctl(broker.node, ['set_permissions', '-p', sgVhost, 'guest', '.*', '.*', '.*']);
  rabbitmqctl(broker.node, ['add_user', brokerUser, `pw-${tag}`]);
  rabbitmqctl(broker.node, ['set_permissions', '-p', env.vhost, brokerUser, ...BROKER_PERMISSIONS]);
  key = testKey();
  token = testToken();
  network = (await env.create('network', { name: `net-${tag}`, 'provider:network_type': 'flat', 'provider:physical_network': 'physnet1' }))
    .id;
  subnet = (await env.create('subnet', { network_id: network, cidr: '10.100.0.0/16', ip_version: 4, enable_dhcp: false, gateway_ip: null }))
    .id;
  web = (await env.create('security_group', { name: `web-${tag}` })).id;
  await env.create('security_group_rule', { security_group_id: web, direction: 'ingress', ethertype: 'IPv4', remote_group_id: web });
  topo = new Topology();
  for (let i = 0; i < 3; i++) await startController(i);
  agent = await startAgent({
    host: HOST,
    amqpUrl: broker.url(sgVhost),
    trustedKeys: key.publicKeyFile,
    netns: topo.host.path,
    env: { SG_FULL_SYNC_INTERVAL_MS: '0' },
  });
  await agentConnected(agent);
});

test.after.always(async () => {
  for (const c of controllers) await stopProcess(c.proc);
  await stopProcess(agent);
  topo?.destroy();
  await env?.stop();
  await etcd?.stop();
  if (broker) {
    spawnSync('rabbitmqctl', ['-n', broker.node, 'delete_vhost', sgVhost], { stdio: 'ignore' });
    spawnSync('rabbitmqctl', ['-n', broker.node, 'delete_user', brokerUser], { stdio: 'ignore' });
  }
  removeKeys(key);
  token?.remove();
});

const ip = (n: number) => `10.100.${n >> 8}.${n & 255}`;

async function createPort(n: number, bound: boolean): Promise<string> {
  const p = await env!.create('port', {
    network_id: network,
    mac_address: `02:00:00:01:${(n >> 8).toString(16).padStart(2, '0')}:${(n & 255).toString(16).padStart(2, '0')}`,
    fixed_ips: [{ subnet_id: subnet, ip_address: ip(n) }],
    security_groups: [web],
    device_owner: 'compute:nova',
    ...(bound ? { 'binding:host_id': HOST } : {}),
  });
  return p.id;
}

/** The agent's kernel set of web's IPv4 members. */
async function kernelMembers(): Promise<string[]> {
  const set = (await agent!.status()).sets.find((s) => s.name.startsWith('sg4-'));
  if (!set) return [];
  return topo!.host
    .exec('ipset', ['save', set.name])
    .split('\n')
    .filter((l) => l.startsWith('add '))
    .map((l) => l.split(' ')[2]!)
    .sort();
}

async function neutronMembers(): Promise<string[]> {
  const ports = (await env!.list('port')) as unknown as { security_groups: string[]; fixed_ips: { ip_address: string }[] }[];
  return ports
    .filter((p) => p.security_groups.includes(web))
    .flatMap((p) => p.fixed_ips.map((f) => f.ip_address))
    .sort();
}

async function assertNoDrift(t: ExecutionContext, via: number): Promise<void> {
  const want = await neutronMembers();
  await waitFor('the kernel set equals Neutron', async () => JSON.stringify(await kernelMembers()) === JSON.stringify(want), 90_000).catch(
    () => undefined,
  );
  t.deepEqual(await kernelMembers(), want, 'the kernel set holds exactly the members Neutron has');
  const stored = (await (
    await fetch(`${controllers[via]!.url}/groups/${web}`, { headers: { authorization: `Bearer ${token!.token}` } })
  ).json()) as { members: string[]; membersRevision: number };
  t.deepEqual([...stored.members].sort(), want, 'the store agrees');
  await waitFor(
    'the agent at the store revision',
    async () => (await agent!.status()).groups.find((g) => g.id === web)?.membersRevision === stored.membersRevision,
    30_000,
  ).catch(() => undefined);
  t.is(
    (await agent!.status()).groups.find((g) => g.id === web)?.membersRevision,
    stored.membersRevision,
    'the agent holds the store revision',
  );
}

kernelEtcdTest.serial(
  "Neutron mode, three controllers on a shared etcd store: the leader's machine killed during a burst of Neutron changes, " +
    'another takes over, zero drift',
  async (t) => {
    // A VM of web on the agent's host: the agent needs web's members.
    const own = await createPort(1, true);
    const vm: Vm = topo!.addVm(1);
    const name = deviceName(own);
    topo!.host.exec('ip', ['link', 'set', vm.device, 'down']);
    topo!.host.exec('ip', ['link', 'set', vm.device, 'name', name]);
    topo!.host.exec('ip', ['link', 'set', name, 'up']);
    await waitFor('the agent filters its port', async () => (await kernelMembers()).includes(ip(1)), 60_000);
    const leader = await waitFor('a leader', () => leaderOf([0, 1, 2]), 60_000);
    const victim = leader - 1;
    const seen: number[] = [];
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const r = await agent!.status().then(
          (s) => s.groups.find((g) => g.id === web)?.membersRevision ?? 0,
          () => undefined,
        );
        if (r !== undefined) seen.push(r);
        await new Promise((res) => setTimeout(res, 50));
      }
    })();
    let made = 0;
    const burst = (async () => {
      for (let n = 10; n < 40; n++) {
        await createPort(n, false);
        made++;
      }
    })();
    await waitFor('the burst under way', () => made >= 8, 60_000);
    const killedAt = Date.now();
    await stopProcess(controllers[victim]!.proc, 'SIGKILL');
    await etcd!.kill(victim);
    t.teardown(() => etcd!.restart(victim));
    const next = await waitFor('another controller leads', () => leaderOf([0, 1, 2].filter((i) => i !== victim)), 60_000);
    t.log(`controller ${next} leads ${Date.now() - killedAt} ms after machine ${leader} was killed`);
    await burst;
    await assertNoDrift(t, next - 1);
    sampling = false;
    await sampler;
    const drops = seen.flatMap((r, i) => (i > 0 && r < seen[i - 1]! ? [`${seen[i - 1]} → ${r}`] : []));
    t.deepEqual(drops, [], 'the revision the agent holds never went back');
    await etcd!.restart(victim);
    await startController(victim);
    await env!.create('port', { network_id: network, fixed_ips: [{ subnet_id: subnet, ip_address: ip(99) }], security_groups: [web] });
    await assertNoDrift(t, victim);
  },
);
